"""The paper's procedure as the default: a method's tuned setting, when not given, is chosen per task without
target labels (``dahash train``, ``DAH(gamma="auto")``), recorded in the run, and a given value trains alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from cli_errors import one_line_error  # tests/ is on sys.path (no __init__.py)
from dahash import DAH
from dahash.cli import main
from dahash.runs.estimator import PARAMETERS
from dahash.runs.loading import load_run
from dahash.errors import ConfigError
from dahash.runs.selection import PREDICTIONS
from dahash.executors import ExecutorConfig
from dahash.runs import tuning
from dahash.runs.tuning import fit_predict_selected, select_config
from dahash.training.config import TrainConfig
from dahash.training.methods import method_config
from dahash.shallow import fit_predict_shallow
from dahash import selection_grids
from dahash.selection_grids import (
    GAMMA_GRIDS,
    SCHEDULE_GRID,
    SCHEDULED_METHODS,
    SELECTION_GRIDS,
    TUNED_SETTING,
    auto_grid,
    auto_schedule,
)
from shifted_task import CLASSES, TINY, shifted_task  # tests/ is on sys.path (no __init__.py)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    Xs, ys, Xt, yt = shifted_task()
    source, target = tmp_path / "source.npz", tmp_path / "target.npz"
    np.savez(source, X=Xs, y=np.searchsorted(CLASSES, ys), classes=CLASSES)
    np.savez(target, X=Xt, y=np.searchsorted(CLASSES, yt), classes=CLASSES)
    return source, target


def _train_args(source: Path, target: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--source-features", str(source), "--target-features", str(target), "--epochs", "2",
            "--hidden", "8", "8", "--bits", "8", "--k", "2", "--feature-norm", "standardize", "--num-threads", "1",
            "--no-hidden-bn", "--quiet", "--out", str(out), *extra]


def test_auto_grid_is_the_sel_rows_grid_filtered_by_what_is_given() -> None:
    assert auto_grid("DAH") == SELECTION_GRIDS["DAH"] and len(auto_grid("DAH")) == 7
    assert auto_grid("DAH", {"mmd_estimator": "authors"}) == [
        {"gamma": 0.0}, *({"gamma": g, "mmd_estimator": "authors"} for g in (500.0, 5000.0, 50000.0))]
    assert auto_grid("DAH-cw") == [{"gamma": 0.0}, *({"gamma": g, "mmd_estimator": "class-weighted"}
                                                      for g in (500.0, 5000.0, 50000.0))]
    assert auto_grid("DAN") == SELECTION_GRIDS["DAN"] and auto_grid("DANN") == SELECTION_GRIDS["DANN"]
    assert auto_grid("NoDA") == [] and auto_grid("Deep") == []
    assert set(TUNED_SETTING) == {*GAMMA_GRIDS, "DANN"}


def test_train_without_gamma_selects_records_and_trains_the_choice(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    source, target = _files(tmp_path)
    out = tmp_path / "run"
    assert main(_train_args(source, target, out)) == 0
    selection = json.loads((out / "selection" / "selection.json").read_text())
    assert [c["params"] for c in selection["candidates"]] == SELECTION_GRIDS["DAH"]
    assert all((out / "selection" / "candidates" / PREDICTIONS.format(index=i)).exists() for i in range(7))
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert {k: config[k] for k in selection["best_params"]} == selection["best_params"]
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["gamma"] == selection["best_params"]["gamma"]
    assert "gamma chosen without target labels among 7 candidates: gamma=" in capsys.readouterr().out
    # A finished run with its choice: evaluate and load_run read the chosen setting from config.yaml.
    assert main(["evaluate", "--run", str(out)]) == 0
    model, loaded, _ = load_run(out)
    assert loaded.gamma == selection["best_params"]["gamma"]
    # --resume reads the saved config.yaml, whose gamma is given: nothing is selected again.
    before = (out / "selection" / "selection.json").read_bytes()
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    assert (out / "selection" / "selection.json").read_bytes() == before


#: Two cheap candidates for the tests in place of SCHEDULE_GRID's; the second trains longer and faster, with the
#: regularised hidden layers.
TINY_SCHEDULES = [{"lr_start": 1e-4, "lr_end": 1e-5, "epochs": 2, "hidden_bn": False, "hidden_dropout": 0.0},
                  {"lr_start": 1e-1, "lr_end": 1e-2, "epochs": 4, "hidden_bn": True, "hidden_dropout": 0.5}]


def test_auto_schedule_runs_only_for_the_hash_head_without_a_given_schedule() -> None:
    assert auto_schedule("DAH", {}) == SCHEDULE_GRID and len(SCHEDULE_GRID) <= selection_grids.SELECTION_BUDGET
    # The paper's, which the rule favours, first: TrainConfig's defaults.
    assert SCHEDULE_GRID[0] == {"lr_start": 1e-4, "lr_end": 1e-5, "epochs": 300, "hidden_bn": False,
                                "hidden_dropout": 0.0}
    assert {k: TrainConfig().to_dict()[k] for k in SCHEDULE_GRID[0]} == SCHEDULE_GRID[0]
    assert len({tuple(c.items()) for c in SCHEDULE_GRID}) == len(SCHEDULE_GRID)
    assert all(auto_schedule(m, {}) for m in SCHEDULED_METHODS)
    assert auto_schedule("DAH", {}, "paper") == [] and auto_schedule("DANN", {}) == []
    # A group with a setting given trains as given; the other group is still chosen.
    heads = [{"hidden_bn": False, "hidden_dropout": 0.0}, {"hidden_bn": True, "hidden_dropout": 0.5}]
    for given in ("epochs", "lr_start", "lr_end"):
        assert auto_schedule("NoDA", {given: 1}) == heads
    schedules = [{k: c[k] for k in ("lr_start", "lr_end", "epochs")} for c in SCHEDULE_GRID[:3]]
    assert auto_schedule("NoDA", {"hidden_dropout": 0.2}) == schedules
    assert auto_schedule("NoDA", {"hidden_bn": True, "epochs": 5}) == []


def test_train_schedule_auto_chooses_on_held_out_source_then_gamma_at_that_schedule(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(selection_grids, "SCHEDULE_GRID", TINY_SCHEDULES)
    source, target = _files(tmp_path)
    out = tmp_path / "run"
    args = _train_args(source, target, out)
    del args[args.index("--epochs"):args.index("--epochs") + 2]
    args.remove("--no-hidden-bn")
    assert main(args) == 0  # --schedule auto, the default
    schedule = json.loads((out / "schedule" / "selection.json").read_text())
    assert [c["params"] for c in schedule["candidates"]] == TINY_SCHEDULES
    assert schedule["criterion"] == "schedule" and schedule["split"]["n_source_val"] > 0
    chosen = schedule["best_params"]
    # The gamma selection and the run train at the chosen schedule, recorded in config.yaml for resume.
    assert {k: yaml.safe_load((out / "selection" / "config.yaml").read_text())[k] for k in chosen} == chosen
    results = json.loads((out / "results.json").read_text())
    assert {k: results["config"][k] for k in chosen} == chosen
    assert "schedule chosen on held-out source among 2 candidates" in capsys.readouterr().out
    finished = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0  # a finished run: nothing again
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == finished
    # --schedule paper trains the paper's; a given length or rate trains as given, and with the hidden layers
    # given too nothing is chosen.
    assert main([*args[:-1], str(tmp_path / "paper"), "--method", "NoDA", "--schedule", "paper"]) == 0
    assert main([*args[:-1], str(tmp_path / "given"), "--method", "NoDA", "--epochs", "2", "--no-hidden-bn"]) == 0
    assert not (tmp_path / "paper" / "schedule").exists() and not (tmp_path / "given" / "schedule").exists()
    assert main([*args[:-1], str(tmp_path / "heads"), "--method", "NoDA", "--epochs", "2"]) == 0
    heads = json.loads((tmp_path / "heads" / "schedule" / "selection.json").read_text())
    assert [c["params"] for c in heads["candidates"]] == [{"hidden_bn": False, "hidden_dropout": 0.0},
                                                          {"hidden_bn": True, "hidden_dropout": 0.5}]
    assert yaml.safe_load((tmp_path / "heads" / "config.yaml").read_text())["epochs"] == 2


def test_the_training_stage_is_the_same_for_every_hash_head_method(tmp_path: Path) -> None:
    # It trains the source-only twin, whatever the method: benchmarks/own_features_table.py computes it once per
    # task and seed and copies its candidates to the other methods' runs.
    source, target = _files(tmp_path)
    records = {}
    for method in ("NoDA", "DAH", "DAH-e", "DAH-cw"):
        config = method_config(method, {"source_features": str(source), "target_features": str(target),
                                        "hidden": [8, 8], "bits": 8, "k": 2, "feature_norm": "standardize",
                                        "num_threads": 1, "gamma": 0.0 if method == "NoDA" else 500.0})
        stage = tuning.select_schedule(config, TINY_SCHEDULES, progress=False)
        records[method] = [{k: v for k, v in c.items() if k != "fit_seconds"} for c in stage.candidates]
    assert all(r == records["NoDA"] for r in records.values())


def test_estimator_schedule_auto_trains_the_choice_at_which_gamma_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selection_grids, "SCHEDULE_GRID", TINY_SCHEDULES)
    Xs, ys, Xt, _ = shifted_task()
    X = np.concatenate([Xs, Xt])
    y = np.r_[np.searchsorted(CLASSES, ys), -np.ones(len(Xt), int)]
    sd = np.r_[np.ones(len(Xs), int), -2 * np.ones(len(Xt), int)]
    tiny = {k: v for k, v in TINY.items() if k not in ("epochs", "lr_start", "lr_end", "hidden_bn")}
    model = DAH(**tiny, schedule="auto").fit(X, y, sample_domain=sd)
    assert [c["params"] for c in model.schedule_.candidates] == TINY_SCHEDULES
    chosen = model.schedule_.best_params
    assert {k: getattr(model.config_, k) for k in chosen} == chosen and model.epochs is None
    # The same model as the chosen schedule given: the stage changes nothing else.
    given = DAH(**tiny, **chosen).fit(X, y, sample_domain=sd)
    assert given.schedule_ is None
    np.testing.assert_array_equal(model.transform(Xt), given.transform(Xt))
    with pytest.raises(ConfigError, match="schedule must be one of 'paper', 'auto'"):
        DAH(**tiny, schedule="fast").fit(X, y, sample_domain=sd)


def test_a_given_gamma_trains_that_value_alone(tmp_path: Path) -> None:
    source, target = _files(tmp_path)
    out = tmp_path / "run"
    assert main(_train_args(source, target, out, "--gamma", "10")) == 0
    assert not (out / "selection").exists()
    assert yaml.safe_load((out / "config.yaml").read_text())["gamma"] == 10.0
    # A method that tunes nothing (NoDA) trains its preset at once.
    assert main(_train_args(source, target, tmp_path / "noda", "--method", "NoDA")) == 0
    assert not (tmp_path / "noda" / "selection").exists()


def test_an_interrupted_auto_run_resumes_its_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = _files(tmp_path)
    out = tmp_path / "run"
    fits = []
    fit = DAH.fit

    def stop_at_third(self, X, y, sample_domain=None):
        fits.append(self.gamma)
        if len(fits) == 3:
            raise KeyboardInterrupt
        return fit(self, X, y, sample_domain)

    monkeypatch.setattr(DAH, "fit", stop_at_third)
    assert main(_train_args(source, target, out)) == 130  # Ctrl-C: the CLI's exit code, nothing half-written
    monkeypatch.setattr(DAH, "fit", fit)
    assert sorted(p.name for p in (out / "selection" / "candidates").glob("*.json")) == ["000.json", "001.json"]
    assert not (out / "config.yaml").exists()
    seen = []
    monkeypatch.setattr(DAH, "fit", lambda self, X, y, sample_domain=None: seen.append(self.gamma)
                        or fit(self, X, y, sample_domain))
    assert main(_train_args(source, target, out, "--resume")) == 0
    assert len(seen) == 5  # the two finished candidates are kept
    assert (out / "results.json").exists()


def test_torchrun_asks_for_a_selection_first(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = _files(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    line = one_line_error(capsys, main(_train_args(source, target, tmp_path / "run")))
    assert "under torchrun, choose gamma first" in line and "dahash select --method DAH" in line
    assert not (tmp_path / "run" / "selection").exists()
    args = [a for a in _train_args(source, target, tmp_path / "run", "--gamma", "10") if a != "--no-hidden-bn"]
    line = one_line_error(capsys, main(args))
    assert "under torchrun, the training stage" in line and "--schedule paper" in line
    assert not (tmp_path / "run" / "schedule").exists()


def test_estimator_auto_selects_then_trains_every_row() -> None:
    Xs, ys, Xt, _ = shifted_task()
    X = np.concatenate([Xs, Xt])
    y = np.r_[np.searchsorted(CLASSES, ys), -np.ones(len(Xt), int)]
    sd = np.r_[np.ones(len(Xs), int), -2 * np.ones(len(Xt), int)]
    tiny = {k: v for k, v in TINY.items() if k != "gamma"}
    model = DAH(**tiny).fit(X, y, sample_domain=sd)
    assert model.gamma == "auto"  # scikit-learn's rule: fit never changes a parameter
    assert [c["params"] for c in model.selection_.candidates] == SELECTION_GRIDS["DAH"]
    best = model.selection_.best_params
    assert model.config_.gamma == best["gamma"]
    assert model.config_.mmd_estimator == best.get("mmd_estimator", model.config_.mmd_estimator)
    # The chosen setting, trained on every row, is exactly the model a given gamma trains.
    fixed = DAH(**tiny, **best).fit(X, y, sample_domain=sd)
    assert fixed.selection_ is None
    np.testing.assert_array_equal(model.encode(Xt), fixed.encode(Xt))
    # Parameters given narrow the candidates; a method that tunes no gamma selects nothing.
    narrowed = DAH(**tiny, mmd_estimator="authors").fit(X, y, sample_domain=sd)
    assert [c["params"].get("mmd_estimator", "authors") for c in narrowed.selection_.candidates] == ["authors"] * 4
    assert DAH(**tiny, method="NoDA").fit(X, y, sample_domain=sd).selection_ is None
    assert "gamma" in PARAMETERS


def test_a_shallow_method_with_its_setting_chosen_first() -> None:
    from shallow.shallow_synthetic import rotated_subspace

    Xs, ys, Xt, yt = rotated_subspace(0)
    predicted, selection = fit_predict_selected("sa", Xs, ys, Xt)
    assert [c["params"] for c in selection.candidates] == SELECTION_GRIDS["SA"]
    # Subspaces wider than the 30 features cannot be fitted: failed candidates, not a crash, never chosen.
    failed = [c["params"]["n_components"] for c in selection.candidates if c["errors"].get("fit")]
    assert failed == [40, 50, 70, 100] and selection.best_params["n_components"] <= 30
    # The prediction is exactly the shallow method's at the chosen setting.
    np.testing.assert_array_equal(predicted, fit_predict_shallow("sa", Xs, ys, Xt, **selection.best_params))
    with pytest.raises(ConfigError, match="method .coral. has no selection grid among the shallow methods; with one: GFK, TCA, JDA, SA, OT"):
        fit_predict_selected("coral", Xs, ys, Xt)


def test_threads_default_to_the_free_cores_and_are_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dahash.cores
    import dahash.runs.estimator

    monkeypatch.setattr(dahash.runs.estimator, "free_cores", lambda: 1)
    monkeypatch.setattr(dahash.cores, "free_cores", lambda: 1)
    Xs, ys, Xt, _ = shifted_task()
    X, y = np.concatenate([Xs, Xt]), np.r_[np.searchsorted(CLASSES, ys), -np.ones(len(Xt), int)]
    tiny = {k: v for k, v in TINY.items() if k != "num_threads"}
    assert DAH(**tiny).fit(X, y).config_.num_threads == 1
    assert DAH(**tiny, num_threads=2).fit(X, y).config_.num_threads == 2  # given: kept
    source, target = _files(tmp_path)
    args = [a for a in _train_args(source, target, tmp_path / "run", "--gamma", "10")]
    del args[args.index("--num-threads"):args.index("--num-threads") + 2]
    assert main(args) == 0
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["num_threads"] == 1



def test_select_fits_its_candidates_as_cells_of_an_executor(tmp_path: Path) -> None:
    """``select_config`` on an executor: each candidate a cell (its data read where it runs, its record saved under
    its lock), the same scores and choice as one after the other; a rerun sends no candidate again.
    (The engines' own processes are tested on reproduce's cells, tests/experiments/test_executors.py.)"""
    source, target = _files(tmp_path)
    config = TrainConfig(source_features=str(source), target_features=str(target), epochs=2, hidden=[8, 8], bits=8,
                         k=2, feature_norm="standardize", num_threads=1)
    grid = {"gamma": [0.0, 100.0]}

    def scores(out: Path) -> list:
        saved = json.loads((out / "selection.json").read_text())
        return [{k: v for k, v in c.items() if k != "fit_seconds"} for c in saved["candidates"]] + [saved["best_index"]]

    select_config(config, grid, out=tmp_path / "one", progress=False)
    sent: list[int] = []
    real = tuning.select_candidate

    def counted(index: int, threads: int, **kwargs: object) -> None:
        sent.append(index)
        real(index, threads, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tuning, "select_candidate", counted)
        select_config(config, grid, out=tmp_path / "cells", progress=False, executor=ExecutorConfig(cpus=1))
        assert sent == [0, 1] and scores(tmp_path / "cells") == scores(tmp_path / "one")
        candidates = tmp_path / "cells" / "candidates"
        assert sorted(p.name for p in candidates.iterdir() if p.suffix != ".npy") == ["000.json", "001.json"]
        select_config(config, grid, out=tmp_path / "cells", progress=False, executor=ExecutorConfig(cpus=1))
        assert sent == [0, 1]
    with pytest.raises(ConfigError, match="out is required"):
        select_config(config, grid, executor=ExecutorConfig())


def test_a_head_with_hidden_batchnorm_and_dropout_trains_saves_and_reloads(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    source, target = _files(tmp_path)
    out = tmp_path / "run"
    assert main(_train_args(source, target, out, "--method", "NoDA", "--hidden-bn", "--hidden-dropout", "0.5")) == 0
    model, config, _ = load_run(out)
    assert config.hidden_bn is True and config.hidden_dropout == 0.5
    assert model.bn6.running_mean.abs().sum() > 0 and model.drop.p == 0.5  # the trained statistics came back
    saved = json.loads((out / "results.json").read_text())["metrics"]
    assert main(["evaluate", "--run", str(out)]) == 0  # the reloaded model gives the saved results again
    again = json.loads((out / "results.json").read_text())["metrics"]
    assert (again["target_accuracy"], again["map"]) == (saved["target_accuracy"], saved["map"])
    line = one_line_error(capsys, main(_train_args(source, target, tmp_path / "bad", "--hidden-dropout", "1.5")))
    assert "hidden_dropout must be in [0, 1), got 1.5" in line
