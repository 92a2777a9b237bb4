"""Tests of label-free model selection (dahash.runs.selection, ``dahash select``): the choice rules on
hand-made score tables, target labels never reaching an estimator, the files written, the CLI
end to end, and finite scores for DAH and a shallow skada pipeline on tiny shifted data."""

from __future__ import annotations

import csv
import inspect
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from cli_errors import one_line_error  # tests/ is on sys.path (no __init__.py)

from dahash import DAH
from dahash.cli import main
from dahash.errors import ConfigError, DahashError
from dahash.runs.selection import (
    ACCURACY_GUARD,
    CRITERIA,
    SCORES,
    Selection,
    choose,
    domain_classifier_error,
    expand_grid,
    parse_grid,
    select_setting,
)
from dahash.training.config import TrainConfig
from shifted_task import CLASSES, TINY, shifted_task  # tests/ is on sys.path (no __init__.py)

NAN = math.nan


def _table(**columns: list[float]) -> list[dict[str, Any]]:
    """Candidates with the given score columns (the others NaN)."""
    n = len(next(iter(columns.values())))
    return [{"index": i, "params": {"i": i}, **{s: NAN for s in SCORES},
             **{k: v[i] for k, v in columns.items()}} for i in range(n)]


# ----------------------------------------------------------------------------- rules


def test_paper_rule_largest_domain_error_within_one_point() -> None:
    # Candidate 2 has the largest domain error but is 5 points below the best source accuracy.
    table = _table(source_val_accuracy=[90.0, 89.5, 85.0, 90.0], domain_error=[10.0, 20.0, 40.0, 20.0])
    best, rule = choose(table, "paper")
    assert best == 1  # 1 and 3 tie on domain error: the first in grid order wins
    assert "within 1 point" in rule and "3 candidate(s)" in rule
    assert ACCURACY_GUARD == 1.0


def test_paper_rule_counts_an_error_above_chance_by_its_distance_from_chance() -> None:
    # 56 % out-of-fold error is a classifier 6 points from chance; 49 % is 1 point from it.
    table = _table(source_val_accuracy=[95.8, 95.8, 95.8], domain_error=[4.5, 56.0, 49.4])
    best, rule = choose(table, "paper")
    assert best == 2 and "closest to chance (49.40 %)" in rule
    assert choose(_table(source_val_accuracy=[90.0, 90.0], domain_error=[45.0, 54.0]), "paper")[0] == 1


def test_interrupted_selection_keeps_finished_candidates_and_load_rechooses(tmp_path: Path) -> None:
    class Interrupted(Exception):
        """Stands for the user's Ctrl-C."""

    Xs, ys, Xt, _ = shifted_task()
    fits: list[dict] = []
    stop = [True]

    def make(params: dict) -> DAH:
        fits.append(params)
        if len(fits) == 2 and stop and stop.pop():
            raise Interrupted  # the user stops it while the second candidate trains
        return DAH(**{**TINY, "epochs": 2, **params})

    grid = {"gamma": [0.0, 10.0]}
    with pytest.raises(Interrupted):
        select_setting(make, grid, Xs, ys, Xt, out=tmp_path / "sel", progress=False)
    assert [p.name for p in sorted((tmp_path / "sel" / "candidates").iterdir())] == ["000.json", "000.target.npy"]
    fits.clear()
    selection = select_setting(make, grid, Xs, ys, Xt, out=tmp_path / "sel", progress=False)
    assert fits == [{"gamma": 10.0}]  # only the unfinished candidate trained again
    assert [c["params"] for c in selection.candidates] == [{"gamma": 0.0}, {"gamma": 10.0}]
    # Selection.load applies today's rule to the recorded scores and rewrites the files if it changed.
    data = json.loads((tmp_path / "sel" / "selection.json").read_text())
    data["best_index"], data["rule"] = 1 - data["best_index"], "an older rule"
    (tmp_path / "sel" / "selection.json").write_text(json.dumps(data))
    loaded = Selection.load(tmp_path / "sel")
    assert loaded.best_index == selection.best_index and loaded.rule == selection.rule
    assert json.loads((tmp_path / "sel" / "selection.json").read_text())["best_index"] == selection.best_index
    fits.clear()
    select_setting(make, grid, Xs, ys, Xt, out=tmp_path / "sel", progress=False, seed=1)
    assert len(fits) == 2  # another split (seed) reuses nothing


def test_paper_rule_guard_boundary_and_nans() -> None:
    assert choose(_table(source_val_accuracy=[90.0, 89.0], domain_error=[1.0, 2.0]), "paper")[0] == 1
    assert choose(_table(source_val_accuracy=[90.0, 88.99], domain_error=[1.0, 2.0]), "paper")[0] == 0
    # A failed candidate (NaN accuracy) is never chosen, and cannot set the bar.
    assert choose(_table(source_val_accuracy=[NAN, 70.0, 69.5], domain_error=[50.0, 1.0, 3.0]), "paper")[0] == 2
    # No domain error among the eligible: the best source accuracy.
    best, rule = choose(_table(source_val_accuracy=[70.0, 80.0], domain_error=[NAN, NAN]), "paper")
    assert best == 1 and "no candidate" in rule
    with pytest.raises(DahashError, match="no candidate has a finite source_val_accuracy"):
        choose(_table(source_val_accuracy=[NAN, NAN]), "paper")


@pytest.mark.parametrize("criterion", ["dev", "iw", "snd", "entropy", "mixval", "mano"])
def test_scorer_rules_take_the_largest_value(criterion: str) -> None:
    # skada's scorers are greater-is-better: DEV and entropy come negated, so -0.1 beats -0.5.
    table = _table(**{criterion: [-0.5, -0.1, NAN, -0.1, -0.3]}, source_val_accuracy=[99.0, 1.0, 50.0, 2.0, 3.0])
    best, rule = choose(table, criterion)
    assert best == 1 and rule.startswith(criterion)
    with pytest.raises(DahashError, match=f"no candidate has a finite {criterion}"):
        choose(_table(**{criterion: [NAN, NAN]}), criterion)


def test_source_rule_and_the_paper_rule_without_its_guard() -> None:
    table = _table(source_val_accuracy=[90.0, 80.0, NAN], domain_error=[30.0, 49.0, 50.0])
    assert choose(table, "source")[0] == 0
    assert choose(table, "paper")[0] == 0  # 80 is more than a point below 90: only candidate 0 is eligible
    best, rule = choose(table, "domain")  # every candidate with a source accuracy: 49 % is closest to chance
    assert best == 1 and "among every candidate" in rule
    # Distance from chance, both sides: 55 % beats 40 %.
    assert choose(_table(source_val_accuracy=[1.0, 1.0], domain_error=[40.0, 55.0]), "domain")[0] == 1


def test_schedule_rule_keeps_the_first_unless_beaten_beyond_two_standard_errors() -> None:
    # 80 % on 100 rows: a standard error of 4 points, so the margin is 8.
    assert choose(_table(source_val_accuracy=[80.0, 82.0, 88.0]), "schedule", n_val=100)[0] == 0
    best, rule = choose(_table(source_val_accuracy=[80.0, 88.5, 95.0]), "schedule", n_val=100)
    assert best == 2 and "by more than 8.00 points" in rule
    # On 400 rows the margin halves: 84.1 beats 80 + 4.
    assert choose(_table(source_val_accuracy=[80.0, 84.1]), "schedule", n_val=400)[0] == 1
    # Never under one point, even at 100 % (zero variance) or on many rows.
    assert choose(_table(source_val_accuracy=[99.0, 99.9]), "schedule", n_val=100_000)[0] == 0
    assert choose(_table(source_val_accuracy=[99.0, 100.0]), "schedule", n_val=100_000)[0] == 0
    assert choose(_table(source_val_accuracy=[98.0, 99.1]), "schedule", n_val=100_000)[0] == 1
    # A failed first candidate: the best of the others; a failed other is never chosen.
    assert choose(_table(source_val_accuracy=[NAN, 60.0, 70.0]), "schedule", n_val=50)[0] == 2
    assert choose(_table(source_val_accuracy=[60.0, NAN]), "schedule", n_val=50)[0] == 0
    with pytest.raises(DahashError, match="needs the number of held-out source rows"):
        choose(_table(source_val_accuracy=[60.0]), "schedule")


def test_schedule_rule_compares_the_same_held_out_rows_when_it_has_them() -> None:
    # 100 held-out rows; the first candidate right on rows 0-79. Beside it: 3 more right and none fewer
    # (+3 points; paired SE sqrt((0.03 - 0.03^2) / 100) = 1.706 points, margin 3.41), 5 more and none fewer
    # (+5; SE 2.179, margin 4.36) and 10 more but 5 fewer (+5; SE sqrt((0.15 - 0.05^2) / 100) = 3.841, margin 7.68).
    def rows(right: set[int]) -> str:
        return "".join("1" if r in right else "0" for r in range(100))

    first = set(range(80))
    correct = [rows(first), rows(first | set(range(80, 83))), rows(first | set(range(80, 85))),
               rows(first - set(range(5)) | set(range(80, 90)))]
    table = _table(source_val_accuracy=[80.0, 83.0, 85.0, 85.0])
    for record, text in zip(table, correct):
        record["source_val_correct"] = text
    best, rule = choose(table, "schedule", n_val=100)
    assert best == 2 and "by more than 4.36 points" in rule and "1 of 3 beat it" in rule
    # Without the rows (records saved before they were kept): the first's binomial margin, 8 points.
    for record in table:
        del record["source_val_correct"]
    assert choose(table, "schedule", n_val=100)[0] == 0
    # Ties among those that beat it go to the earlier candidate.
    table = _table(source_val_accuracy=[50.0, 90.0, 90.0])
    for record, text in zip(table, [rows(set(range(50))), rows(set(range(90))), rows(set(range(10, 100)))]):
        record["source_val_correct"] = text
    assert choose(table, "schedule", n_val=100)[0] == 1


def test_unknown_criterion() -> None:
    with pytest.raises(ConfigError, match="criterion must be one of 'paper', 'domain', 'source', 'dev', 'iw', 'snd', "
                                          "'entropy', 'mixval', 'mano', 'schedule', got 'acc'"):
        choose(_table(source_val_accuracy=[1.0]), "acc")
    assert CRITERIA == ("paper", "domain", "source", "dev", "iw", "snd", "entropy", "mixval", "mano")


def test_grid_expansion_and_parsing() -> None:
    assert expand_grid({"gamma": [0, 5], "epochs": [1, 2]}) == [
        {"gamma": 0, "epochs": 1}, {"gamma": 0, "epochs": 2}, {"gamma": 5, "epochs": 1}, {"gamma": 5, "epochs": 2}]
    assert expand_grid([{"gamma": 1}, {"eta": 0}]) == [{"gamma": 1}, {"eta": 0}]
    assert parse_grid(["gamma=0,0.5, 5000", "hidden=[16,16],[32, 8]", "feature_norm=l2,none"]) == {
        "gamma": [0, 0.5, 5000], "hidden": [[16, 16], [32, 8]], "feature_norm": ["l2", "none"]}
    for bad, message in [(["gamma"], "expected KEY=V1,V2"), (["gamma="], "no values for 'gamma'"),
                         (["gamma=1,,2"], "an empty value"), (["gamma=1", "gamma=2"], "given twice")]:
        with pytest.raises(ConfigError, match=message):
            parse_grid(bad)
    for bad in ({}, {"gamma": []}, {"gamma": 5}, []):
        with pytest.raises(ConfigError):
            expand_grid(bad)


def test_domain_classifier_error() -> None:
    rng = np.random.default_rng(0)
    same = domain_classifier_error(rng.normal(size=(60, 4)), rng.normal(size=(40, 4)), seed=0)
    apart = domain_classifier_error(rng.normal(size=(60, 4)), rng.normal(size=(40, 4)) + 5, seed=0)
    assert 30 < same <= 70 and apart == 0.0


# ----------------------------------------------------------------------------- target labels never read


class SpyDAH(DAH):
    """DAH recording the arguments of every call selection makes."""

    calls: list[tuple[str, dict[str, Any]]] = []

    def _record(self, name: str, **arrays: Any) -> None:
        SpyDAH.calls.append((name, {k: v for k, v in arrays.items() if v is not None}))

    def fit(self, X, y, sample_domain=None):
        self._record("fit", X=X, y=y, sample_domain=sample_domain)
        return super().fit(X, y, sample_domain)

    def score(self, X, y, sample_weight=None, sample_domain=None, *, allow_source=False):
        self._record("score", X=X, y=y, sample_weight=sample_weight, sample_domain=sample_domain)
        return super().score(X, y, sample_weight, sample_domain, allow_source=allow_source)

    def predict_proba(self, X, sample_domain=None, *, allow_source=False, codes=False):
        self._record("predict_proba", X=X, sample_domain=sample_domain)
        return super().predict_proba(X, sample_domain, allow_source=allow_source, codes=codes)

    def predict_log_proba(self, X, sample_domain=None, *, allow_source=False):
        self._record("predict_log_proba", X=X, sample_domain=sample_domain)
        return super().predict_log_proba(X, sample_domain, allow_source=allow_source)

    def predict(self, X, sample_domain=None, *, allow_source=False, codes=False):
        self._record("predict", X=X, sample_domain=sample_domain)
        return super().predict(X, sample_domain, allow_source=allow_source, codes=codes)

    def predict_features(self, X):
        self._record("predict_features", X=X)
        return super().predict_features(X)


def test_target_labels_never_reach_an_estimator() -> None:
    assert list(inspect.signature(select_setting).parameters)[:5] == ["make_estimator", "grid", "Xs", "ys", "Xt"]
    Xs, ys, Xt, yt = shifted_task()
    SpyDAH.calls = []
    selection = select_setting(lambda p: SpyDAH(**{**TINY, "epochs": 2, **p}), {"gamma": [0.0, 10.0]}, Xs, ys, Xt,
                               progress=False)
    assert len(selection.candidates) == 2
    names = {name for name, _ in SpyDAH.calls}
    assert {"fit", "score", "predict_proba", "predict_log_proba", "predict", "predict_features"} <= names
    true_labels = [yt, np.searchsorted(CLASSES, yt)]  # as given, and as the selector's 0..C-1 codes
    fits = 0
    for name, args in SpyDAH.calls:
        if name == "fit":
            fits += 1
            target = np.asarray(args["sample_domain"]) < 0
            assert target.sum() == len(Xt) and (np.asarray(args["y"])[target] == -1).all()
        for key, value in args.items():
            if key == "X":
                continue
            value = np.asarray(value)
            for truth in true_labels:
                assert not (value.shape == truth.shape and np.array_equal(value, truth)), (name, key)
                assert not (len(value) >= len(truth) and np.array_equal(value[-len(truth):], truth)), (name, key)
    assert fits == 2


# ----------------------------------------------------------------------------- results


def test_finite_scores_for_every_candidate_on_a_shifted_task(tmp_path: Path) -> None:
    Xs, ys, Xt, _ = shifted_task(shift=1.5)
    selection = select_setting(lambda p: DAH(**{**TINY, **p}), {"gamma": [0.0, 100.0], "epochs": [2, 4]},
                               Xs, ys, Xt, out=tmp_path, progress=False, seed=1)
    assert [c["params"] for c in selection.candidates] == [
        {"gamma": 0.0, "epochs": 2}, {"gamma": 0.0, "epochs": 4}, {"gamma": 100.0, "epochs": 2},
        {"gamma": 100.0, "epochs": 4}]
    for c in selection.candidates:
        assert all(math.isfinite(c[s]) for s in SCORES), c
        assert c["errors"] == {} and c["fit_seconds"] > 0
        # Which of the 10 held-out rows it got right, the accuracy's own count (what the stage's rule pairs).
        right = c["source_val_correct"]
        assert len(right) == 10 and set(right) <= {"0", "1"}
        assert right.count("1") * 10.0 == pytest.approx(c["source_val_accuracy"])
    assert selection.best_params == selection.candidates[selection.best_index]["params"]
    assert selection.split == {"n_source_train": 38, "n_source_val": 10, "n_target": 32, "n_classes": 4,
                               "val_fraction": 0.2, "seed": 1}


def test_files_written_with_failures_as_null(tmp_path: Path) -> None:
    Xs, ys, Xt, _ = shifted_task()
    # bits=0 fails in fit (ConfigError): the candidate stays, with NaN scores and the reason.
    selection = select_setting(lambda p: DAH(**{**TINY, "epochs": 2, **p}), [{"bits": 8}, {"bits": 0}],
                               Xs, ys, Xt, criterion="snd", out=tmp_path / "sel", progress=False)
    assert selection.best_index == 0 and selection.criterion == "snd"
    failed = selection.candidates[1]
    assert "bits must be positive, got 0" in failed["errors"]["fit"]
    assert all(math.isnan(failed[s]) for s in SCORES)

    def no_nan(text: str) -> None:
        raise AssertionError(f"non-strict JSON constant {text}")

    data = json.loads((tmp_path / "sel" / "selection.json").read_text(), parse_constant=no_nan)
    assert data["best_index"] == 0 and data["best_params"] == {"bits": 8} and data["criterion"] == "snd"
    assert data["candidates"][1]["snd"] is None and "rule" in data
    with open(tmp_path / "sel" / "selection.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["bits"] for r in rows] == ["8", "0"] and [r["chosen"] for r in rows] == ["1", "0"]
    assert rows[1]["snd"] == "" and "bits must be positive" in rows[1]["errors"]
    assert float(rows[0]["snd"]) == pytest.approx(selection.candidates[0]["snd"])
    md = (tmp_path / "sel" / "selection.md").read_text()
    assert "| # | bits | src val acc % |" in md and "Chosen: candidate 0, bits=8." in md
    assert "candidate 1, fit: ConfigError" in md
    assert not [p for p in (tmp_path / "sel").iterdir() if p.name.startswith(".")]  # no temporary files left


def test_every_fit_failing_is_an_error() -> None:
    Xs, ys, Xt, _ = shifted_task()
    with pytest.raises(DahashError, match="every candidate failed to fit; the first: ConfigError: DAH parameters: bits must"):
        select_setting(lambda p: DAH(**{**TINY, **p}), {"bits": [0, -1]}, Xs, ys, Xt, progress=False)


def test_generic_skada_pipeline() -> None:
    from dahash.shallow.api import make_shallow_pipeline

    Xs, ys, Xt, _ = shifted_task()
    selection = select_setting(lambda p: make_shallow_pipeline("coral", classifier="logreg", **p),
                               {"reg": [0.1, 1.0]}, Xs, ys, Xt, criterion="entropy", progress=False)
    for c in selection.candidates:
        for name in ("source_val_accuracy", "domain_error", "dev", "snd", "entropy"):
            assert math.isfinite(c[name]), (name, c["errors"])
        assert math.isnan(c["iw"]) and "sample_weight" in c["errors"]["iw"]  # the pipeline's score takes none


# ----------------------------------------------------------------------------- CLI


def _files(tmp_path: Path) -> tuple[Path, Path]:
    Xs, ys, Xt, yt = shifted_task()
    source, target = tmp_path / "source.npz", tmp_path / "target.npz"
    np.savez(source, X=Xs, y=np.searchsorted(CLASSES, ys), classes=CLASSES)
    np.savez(target, X=Xt, y=np.searchsorted(CLASSES, yt), classes=CLASSES)  # labels in the file: dropped
    return source, target


def _select_args(source: Path, target: Path, *extra: str) -> list[str]:
    return ["select", "--source-features", str(source), "--target-features", str(target), "--epochs", "2",
            "--hidden", "8", "8", "--bits", "8", "--k", "2", "--feature-norm", "standardize", "--num-threads", "1",
            "--quiet", *extra]


def test_cli_select_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = _files(tmp_path)
    seen = []
    fit = DAH.fit

    def spy(self, X, y, sample_domain=None):
        seen.append((np.asarray(y), np.asarray(sample_domain)))
        return fit(self, X, y, sample_domain)

    monkeypatch.setattr(DAH, "fit", spy)
    out = tmp_path / "sel"
    code = main(_select_args(source, target, "--grid", "gamma=0,10", "--grid", "eta=0,1", "--out", str(out)))
    stdout = capsys.readouterr().out
    assert code == 0
    assert len(seen) == 4 and all((y[d < 0] == -1).all() and (d < 0).sum() == 32 for y, d in seen)
    for name in ("selection.json", "selection.csv", "selection.md", "config.yaml"):
        assert (out / name).exists(), name
    data = json.loads((out / "selection.json").read_text())
    assert [c["params"] for c in data["candidates"]] == [
        {"gamma": 0, "eta": 0}, {"gamma": 0, "eta": 1}, {"gamma": 10, "eta": 0}, {"gamma": 10, "eta": 1}]
    assert "| # | gamma | eta |" in stdout and f"chosen: candidate {data['best_index']}" in stdout
    chosen = TrainConfig.from_dict(yaml.safe_load((out / "config.yaml").read_text()))
    assert chosen.out is None and chosen.epochs == 2 and chosen.hidden == [8, 8]
    assert {"gamma": chosen.gamma, "eta": chosen.eta} == data["best_params"]
    assert chosen.source_features == str(source) and chosen.target_features == str(target)


@pytest.mark.parametrize(("extra", "message"), [
    (["--grid", "gamma_typo=0,1"], "grid key 'gamma_typo' is not a training setting"),
    (["--grid", "gamma="], "--grid 'gamma=': no values for 'gamma'"),
    (["--grid", "gamma=0,-1"], "gamma must be >= 0, got -1.0"),
    (["--grid", "source_features=a.npz"], "grid key 'source_features' names data or files"),
    (["--grid", "gamma=0,1", "--criterion", "accuracy"], "criterion must be one of 'paper'"),
    (["--grid", "gamma=0,1", "--val-fraction", "1.5"], "val_fraction must be a number strictly between 0 and 1"),
    (["--method", "Deep"], "method Deep has no default grid; give at least one --grid"),
])
def test_cli_select_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                           message: str) -> None:
    source, target = _files(tmp_path)
    line = one_line_error(capsys, main(_select_args(source, target, "--out", str(tmp_path / "sel"), *extra)))
    assert message in line
    assert not (tmp_path / "sel").exists()  # nothing trained, nothing written


def test_cli_select_needs_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = _files(tmp_path)
    assert "--out DIR is required" in one_line_error(capsys, main(_select_args(source, target, "--grid", "gamma=0")))
