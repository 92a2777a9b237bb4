"""``dahash reproduce`` on a tiny generated image dataset: every method, the table, resume."""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dahash.experiments import reproduce as rep
from dahash.cli import main
from dahash.errors import ConfigError, DahashError
from dahash.runs.estimator import DAH
from dahash.training.methods import DEEP_METHODS, method_config
from dahash.experiments.cell_results import read_cells
from dahash.runs import tuning
from dahash.experiments.catalog import (ALL_METHODS, DEEP, METHODS, SELECTED, SELECTION_BUDGET, SELECTION_GRIDS,
                                       SHALLOW)
from dahash.experiments.reproduce import ReproduceConfig, domain_code, plan_cells, resolve_tasks, with_selected
from dahash.shallow import api as shallow_api


class Interrupted(Exception):
    """Stands for the user's Ctrl-C (a real KeyboardInterrupt would also stop pytest)."""


def _config(root: Path, out: Path, **extra) -> ReproduceConfig:
    values = dict(data_root=str(root), out=str(out), dataset="office31", tasks=["amazon:webcam", "W:D"], seeds=2,
                  bits=8, cache_dir=str(root.parent / "cache"), overrides={"epochs": 3, "hidden": [16, 16], "k": 2},
                  # 18 images per domain: subspaces of at most 17 dimensions.
                  shallow_params={"GFK": {"n_components": 5}, "TCA": {"n_components": 5}, "JDA": {"n_components": 5},
                                  "SA": {"n_components": 5}})
    values.update(extra)
    return ReproduceConfig(**values)


def test_every_method_runs_and_the_table_has_the_papers_layout(tiny_office31: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    computed: list[tuple[str, str, int]] = []
    real, stop = rep.run_cell, [True]

    def counting(cell: rep.Cell, threads: int = 1) -> dict:
        computed.append((cell.method, cell.source, cell.seed))
        if len(computed) == 7 and stop and stop.pop():
            raise Interrupted  # the user stops it midway, once
        return real(cell, threads)

    monkeypatch.setattr(rep, "run_cell", counting)
    config = _config(tiny_office31, tmp_path / "out")
    with pytest.raises(Interrupted):
        rep.reproduce(config, progress=False)
    assert len(computed) == 7
    first = list(computed)
    computed.clear()
    summary = rep.reproduce(_config(tiny_office31, tmp_path / "out"), progress=False)
    # 2 tasks x (shallow x 1 seed + deep and DAH-sel x 2 seeds) cells; the 6 finished ones are not redone.
    n_cells = 2 * (len(SHALLOW) + 2 * (len(DEEP) + 1))
    assert summary["cells"] == n_cells and summary["computed"] == n_cells - 6 == len(computed)
    assert not set(first[:6]) & set(computed) and first[6] in computed

    table = (tmp_path / "out" / "accuracy.md").read_text()
    assert "| Method | A→W | W→D | Avg |" in table
    rows = list(csv.reader(open(tmp_path / "out" / "accuracy.csv")))
    ours = [r for r in rows[1:] if r[0] == "ours"]
    assert [r[1] for r in ours] == list(METHODS)
    for row in ours:
        values = [float(v.split(" ± ")[0]) for v in row[2:]]
        assert all(0 <= v <= 100 for v in values)
        assert values[-1] == pytest.approx(np.mean(values[:-1]), abs=0.011)
        assert (" ± " in row[2]) == (row[1] not in SHALLOW)
    # The paper's Table 2 rows for the same tasks, beside ours, Avg over the same columns.
    published = {r[1]: r for r in rows if r[0] == "published"}
    assert published["DAH (published)"][2:4] == ["68.30", "98.80"]
    assert float(published["DAH (published)"][4]) == pytest.approx((68.30 + 98.80) / 2, abs=0.01)
    assert "Published" in table and (tmp_path / "out" / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    # mAP only for the methods with hash codes, each cell's own value averaged over seeds.
    map_rows = list(csv.reader(open(tmp_path / "out" / "map.csv")))
    hashing = [m for m in METHODS if m not in SHALLOW and DEEP_METHODS[SELECTED.get(m, m)].get("head", "hash") == "hash"]
    assert [r[0] for r in map_rows[1:]] == hashing
    noda = [float(r.split(" ± ")[0]) for r in map_rows[1 + hashing.index("NoDA")][1:3]]
    cell_maps = [[json.loads(p.read_text())["metrics"]["map"]
                  for p in sorted((tmp_path / "out" / "cells" / "NoDA" / task).glob("seed*/results.json"))]
                 for task in ("A_W", "W_D")]
    assert all(len(v) == 2 for v in cell_maps)
    assert noda == pytest.approx([np.mean(v) for v in cell_maps], abs=6e-4)
    # The paired comparison with NoDA: DAH's mean difference over the 2 tasks x 2 seeds, by hand from the cells.
    def accuracies(method: str) -> list[float]:
        return [json.loads((tmp_path / "out" / "cells" / method / task / f"seed{k}" / "results.json").read_text())
                ["metrics"]["target_accuracy"] for task in ("A_W", "W_D") for k in (0, 1)]

    paired = {r[0]: r for r in csv.reader(open(tmp_path / "out" / "paired.csv"))}
    assert paired["method"][1:] == ["mean [95 % interval] vs NoDA", "ahead / behind vs NoDA"]
    gaps = np.subtract(accuracies("DAH"), accuracies("NoDA"))
    assert paired["DAH"][1].startswith(f"{gaps.mean():+.2f} [") and paired["DAH"][2].endswith("of 4")
    assert paired["NoDA"][1:] == ["", ""] and paired["GFK"][2].endswith("of 2")  # one shallow run per task
    assert len(read_cells(tmp_path / "out" / "cells.csv")) == summary["cells"]
    # Colour is the class: the methods must do far better than chance (33 %). (Three epochs on
    # 18 images are no test of the deep methods' learning; tests/training covers that.)
    average = {r[1]: float(r[-1].split(" ± ")[0]) for r in ours}
    assert min(average["GFK"], average["CORAL"], average["Deep"]) > 80

    # A third run computes nothing; the CLI prints the same table.
    computed.clear()
    assert main(["reproduce", "--data-root", str(tiny_office31), "--dataset", "office31", "--tasks", "amazon:webcam",
                 "W:D", "--seeds", "2", "--bits", "8", "--cache-dir", str(tiny_office31.parent / "cache"),
                 "--set", "epochs=3", "hidden=[16,16]", "k=2", "--shallow-set", "GFK.n_components=5",
                 "tca.n_components=5", "JDA.n_components=5", "SA.n_components=5", "--out", str(tmp_path / "out"), "--quiet",
                 "--json"]) == 0
    assert computed == []
    data = json.loads(capsys.readouterr().out)  # --json: the summary for scripts, not the tables
    assert data["out"] == str(tmp_path / "out") and data["cells"] == n_cells and data["computed"] == 0
    # --config reads back the reproduce.yaml it wrote: the same settings, so nothing to compute again ...
    saved = tmp_path / "saved.yaml"
    shutil.copyfile(tmp_path / "out" / "reproduce.yaml", saved)
    assert main(["reproduce", "--config", str(saved), "--quiet", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cells"] == n_cells and again["computed"] == 0 and computed == []
    # ... and a flag given beside it wins: one task of the two.
    assert main(["reproduce", "--config", str(saved), "--tasks", "W:D", "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cells"] == n_cells // 2 and computed == []


def test_tasks_cells_and_bad_settings(tiny_office31: Path, tmp_path: Path) -> None:
    assert domain_code("Real World") == "Rw" and domain_code("caltech10") == "C" and domain_code("mine") == "mine"
    assert len(resolve_tasks(ReproduceConfig(data_root=str(tiny_office31), out="x", dataset="office-caltech"))) == 12
    assert resolve_tasks(ReproduceConfig(data_root=str(tiny_office31), out="x"))[0] == ("amazon", "dslr")
    cells = plan_cells(_config(tiny_office31, tmp_path, methods=["coral", "dah"], tasks=["A:W"], seeds=3))
    assert [(c.method, c.seed) for c in cells] == [("CORAL", 0), ("DAH", 0), ("DAH", 1), ("DAH", 2)]
    with pytest.raises(ConfigError, match="unknown method"):
        _config(tiny_office31, tmp_path, methods=["DAH", "SVM"]).validate()
    with pytest.raises(ConfigError, match="SOURCE:TARGET"):
        _config(tiny_office31, tmp_path, tasks=["amazon"]).validate()
    with pytest.raises(ConfigError, match="dataset must be one of"):
        _config(tiny_office31, tmp_path, dataset="office-31").validate()
    with pytest.raises(ConfigError, match="unknown setting"):
        rep.reproduce(_config(tiny_office31, tmp_path / "bad", methods=["DAH"], overrides={"epoch": 3}), progress=False)


def test_office_home_shows_tables_3_and_5_once_each() -> None:
    md, rows = rep._published(ReproduceConfig(data_root=".", out=".", dataset="office-home"), ["Ar→Cl", "Cl→Ar"])
    names = [r[0] for r in rows]
    assert names.count("DAN (published)") == 1 and "DAH-64 (published)" not in names
    assert rows[names.index("DAH-128 (published)")][1:] == ["32.58", "35.72", f"{(32.58 + 35.72) / 2:.2f}"]
    assert "Table 3" in md and "Table 5" in md and "Avg is over the tasks shown" in md
    assert rep._published(ReproduceConfig(data_root=".", out=".", dataset="office-caltech"), ["A→W"]) == ("", [])


def test_selected_method_is_chosen_per_task_without_target_labels(tiny_office31: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    grid = [{"gamma": 0.0}, {"gamma": 50.0, "mmd_estimator": "balanced"}]
    config = _config(tiny_office31, tmp_path / "out", methods=["DAH-sel"], tasks=["A:W"], seeds=2,
                     selection_grids={"DAH": grid}, shallow_params={})
    seen = []
    real = rep.select_config

    def spy(base, grid_, **kwargs):
        seen.append(base)
        return real(base, grid_, **kwargs)

    monkeypatch.setattr(rep, "select_config", spy)
    rep.reproduce(config, progress=False)
    assert len(seen) == 1 and seen[0].seed == 0 and seen[0].gamma == 5000.0  # DAH's preset, then the grid
    selection = json.loads((tmp_path / "out" / "selection" / "DAH-sel" / "A_W" / "selection.json").read_text())
    assert [c["params"] for c in selection["candidates"]] == grid
    assert all(set(c) >= {"source_val_accuracy", "domain_error", "dev", "iw", "snd", "entropy"}
               for c in selection["candidates"])
    chosen = selection["best_params"]
    assert "| DAH-sel | A→W | " + ", ".join(f"{k}={v}" for k, v in chosen.items()) in (
        tmp_path / "out" / "selected.md").read_text()
    for seed in (0, 1):
        run = json.loads((tmp_path / "out" / "cells" / "DAH-sel" / "A_W" / f"seed{seed}" / "results.json").read_text())
        assert {k: run["config"][k] for k in chosen} == chosen and run["config"]["seed"] == seed
    # A rerun selects and trains nothing; another grid in the same --out is refused.
    seen.clear()
    assert rep.reproduce(config, progress=False)["computed"] == 0 and seen == []
    with pytest.raises(DahashError, match="holds a selection made with other settings"):
        rep.reproduce(_config(tiny_office31, tmp_path / "out", methods=["DAH-sel"], tasks=["A:W"], seeds=2,
                              selection_grids={"DAH": [{"gamma": 1.0}]}, shallow_params={}), progress=False)


def _watch(estimator, calls: list) -> object:
    """``estimator`` with every fit, score and predict call it receives recorded in ``calls``."""
    for name in ("fit", "score", "predict", "predict_proba", "predict_log_proba", "predict_features"):
        if hasattr(estimator, name):
            real = getattr(estimator, name)

            @functools.wraps(real)  # the signature too, which metadata routing reads
            def call(*args, _real=real, _name=name, **kwargs):
                calls.append((type(estimator).__name__, _name, args, kwargs))
                return _real(*args, **kwargs)

            setattr(estimator, name, call)
    return estimator


def test_shallow_and_deep_methods_get_the_same_selection_without_target_labels(
        tiny_office31: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dahash.images.features import image_feature_sets

    calls: list = []
    pipeline, from_config = shallow_api.make_shallow_pipeline, DAH.from_config.__func__
    watched = lambda *a, **k: _watch(pipeline(*a, **k), calls)  # noqa: E731
    # The selection builds pipelines through runs.tuning's import, the cells through the shallow API's.
    monkeypatch.setattr(tuning, "make_shallow_pipeline", watched)
    monkeypatch.setattr(shallow_api, "make_shallow_pipeline", watched)
    monkeypatch.setattr(DAH, "from_config", classmethod(lambda cls, *a, **k: _watch(from_config(cls, *a, **k), calls)))
    config = _config(tiny_office31, tmp_path / "out", methods=["GFK", "GFK-sel", "DAN-sel"], tasks=["A:W"])
    rep.reproduce(config, progress=False)

    out = tmp_path / "out"
    chosen = {}
    for method in ("GFK-sel", "DAN-sel"):
        selection = json.loads((out / "selection" / method / "A_W" / "selection.json").read_text())
        # Each method's own grid, every candidate recorded; the same rule and source split for both.
        assert [c["params"] for c in selection["candidates"]] == SELECTION_GRIDS[SELECTED[method]]
        assert selection["criterion"] == "paper"
        assert (selection["split"]["val_fraction"], selection["split"]["seed"]) == (0.2, 0)
        chosen[method] = selection["best_params"]
    gfk = json.loads((out / "selection" / "GFK-sel" / "A_W" / "selection.json").read_text())["candidates"]
    # 14 source-train rows: d = 10 fits, larger subspaces fail and stay in the table with their reason.
    assert chosen["GFK-sel"] == {"n_components": 10}
    assert all("rank" in c["errors"]["fit"] and c["domain_error"] is None for c in gfk[1:])
    run = json.loads((out / "cells" / "GFK-sel" / "A_W" / "seed0" / "results.json").read_text())
    assert run["config"]["params"] == {"n_components": 10} and not (out / "cells" / "GFK-sel" / "A_W" / "seed1").exists()
    for seed in (0, 1):
        run = json.loads((out / "cells" / "DAN-sel" / "A_W" / f"seed{seed}" / "results.json").read_text())
        assert run["config"]["gamma"] == chosen["DAN-sel"]["gamma"] and run["config"]["head"] == "softmax"
    selected = (out / "selected.md").read_text()
    assert "| GFK-sel | A→W | n_components=10 | 7 (6 failed) |" in selected
    assert f"| DAN-sel | A→W | gamma={chosen['DAN-sel']['gamma']} | 5 |" in selected
    settings = (out / "settings.md").read_text()
    assert "| GFK | A→W | 0 | n_components=5 | fixed |" in settings  # --shallow-set, as the fixed row ran
    assert "| GFK-sel | A→W | 0 | n_components=10 | chosen without target labels" in settings
    assert f"| DAN-sel | A→W | 0, 1 | gamma={chosen['DAN-sel']['gamma']}, " in settings
    assert [r[1] for r in csv.reader(open(out / "accuracy.csv")) if r[0] == "ours"] == config.methods

    # No estimator, shallow or deep, selecting or fitting a cell, ever received the target's labels.
    _, target = image_feature_sets(str(tiny_office31), "A", "W", backbone=config.backbone,
                                   cache_dir=config.cache_dir, progress=False)
    truths = [np.asarray(target.y), np.asarray(target.classes)[target.y]]
    kinds = {(kind, name) for kind, name, _, _ in calls}
    assert {("Pipeline", "fit"), ("Pipeline", "predict"), ("Pipeline", "predict_proba"), ("DAH", "fit"),
            ("DAH", "score"), ("DAH", "predict_proba")} <= kinds
    # GFK: 7 candidates and the GFK and GFK-sel cells; DAN: 5 candidates.
    assert [sum(k == kind and n == "fit" for k, n, _, _ in calls) for kind in ("Pipeline", "DAH")] == [9, 5]
    for kind, name, args, kwargs in calls:
        values = {**dict(enumerate(args[1:], 1)), **{k: v for k, v in kwargs.items() if k != "X"}}
        for key, value in values.items():
            value = np.asarray(value)
            for truth in truths:
                assert not (value.ndim == 1 and len(value) >= len(truth)
                            and np.array_equal(value[-len(truth):], truth)), (kind, name, key)
        if name == "fit":
            y, domain = np.asarray(args[1] if len(args) > 1 else kwargs["y"]), np.asarray(kwargs["sample_domain"])
            assert (domain < 0).sum() == len(target.y) and (y[domain < 0] == -1).all(), kind


def test_every_grid_holds_the_fixed_setting_within_one_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "CORAL" not in SELECTION_GRIDS and set(SELECTED) <= set(ALL_METHODS)
    for method, grid in SELECTION_GRIDS.items():
        assert 1 <= len(grid) <= SELECTION_BUDGET, method
        fixed = (shallow_api.make_adapter(method.lower()).get_params() if method in SHALLOW
                 else method_config(method, {}).to_dict())
        assert any(all(fixed[k] == v for k, v in c.items()) for c in grid), method
    with pytest.raises(ConfigError, match="has 8 candidates; the budget is at most 7"):
        ReproduceConfig(data_root=".", out=".", selection_grids={"GFK": {"n_components": list(range(1, 9))}}).validate()
    with pytest.raises(ConfigError, match="CORAL's paper tunes nothing"):
        ReproduceConfig(data_root=".", out=".", selection_grids={"CORAL": [{"reg": 2.0}]}).validate()
    with pytest.raises(ConfigError, match="unknown parameter"):
        ReproduceConfig(data_root=".", out=".", selection_grids={"TCA": [{"m": 10}]}).validate()
    # reproduce.yaml of older versions named DAH-sel's grid selection_grid.
    old = ReproduceConfig(data_root=".", out=".", selection_grid=[{"gamma": 1.0}])
    assert old.selection_grids["DAH"] == [{"gamma": 1.0}] and old.selection_grids["DAN"] == SELECTION_GRIDS["DAN"]
    assert "selection_grid" not in dataclasses.asdict(old)

    seen = []

    def fake(config: ReproduceConfig, progress: bool, executor: object = None) -> dict:
        seen.append(config)
        return {"table": "", "cells": 0, "computed": 0, "seconds": 0.0}

    monkeypatch.setattr(rep, "reproduce", fake)
    args = ["reproduce", "--data-root", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]
    assert main(args) == 0 and seen[-1].methods == list(METHODS)  # fixed rows and DAH-sel
    assert main([*args, "--select-all", "--select-grid", "dan-sel.gamma=0.5,1", "gamma=0,500"]) == 0
    assert seen[-1].methods == with_selected(METHODS) and len(seen[-1].methods) == len(ALL_METHODS)
    grids = seen[-1].selection_grids
    assert grids["DAN"] == [{"gamma": 0.5}, {"gamma": 1}] and grids["DAH"] == [{"gamma": 0}, {"gamma": 500}]
    assert grids["GFK"] == SELECTION_GRIDS["GFK"]
    assert main([*args, "--methods", "coral", "dan", "--select-all"]) == 0
    assert seen[-1].methods == ["CORAL", "DAN", "DAN-sel"]


def test_a_task_typed_by_name_or_code_is_one_cell(tiny_office31: Path, tmp_path: Path) -> None:
    """``--tasks amazon:webcam`` and then every task into the same --out: the A->W cell is reused,
    not refused as a run with other settings."""
    assert rep.resolve_tasks(_config(tiny_office31, tmp_path, tasks=["amazon:Webcam", "d:a", "list.txt:W"])) == [
        ("A", "W"), ("D", "A"), ("list.txt", "W")]
    first = rep.reproduce(_config(tiny_office31, tmp_path / "out", methods=["CORAL"], tasks=["amazon:webcam"]),
                          progress=False)
    results = tmp_path / "out" / "cells" / "CORAL" / "A_W" / "seed0" / "results.json"
    written = results.stat().st_mtime_ns
    everything = rep.reproduce(_config(tiny_office31, tmp_path / "out", methods=["CORAL"], tasks=None),
                               progress=False)
    assert results.stat().st_mtime_ns == written
    assert (first["cells"], first["computed"]) == (1, 1) and (everything["cells"], everything["computed"]) == (6, 5)


def test_shallow_cells_and_selections_say_which_images_they_skipped(tiny_office31: Path, tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """An unreadable image is one warning per cell and selection (the dahash logger; the CLI prints it on
    stderr), and the list is in its folder."""
    root = tmp_path / "office31"
    shutil.copytree(tiny_office31, root)
    broken = root / "amazon" / "images" / "mug" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    rep.reproduce(_config(root, tmp_path / "out", methods=["CORAL", "SA-sel"], tasks=["A:W"], seeds=1,
                          selection_grids={"SA": [{"n_components": 3}, {"n_components": 5}]}, shallow_params={}),
                  progress=False)
    lines = [r.getMessage() for r in caplog.records if "could not be read" in r.getMessage()]
    assert len(lines) == 3  # the CORAL cell, the SA selection and the SA-sel cell
    assert all(line.startswith(f"1 image(s) could not be read and were skipped (first: {broken}: ") for line in lines)
    assert all(r.levelname == "WARNING" for r in caplog.records if "could not be read" in r.getMessage())
    for folder in ("cells/CORAL/A_W/seed0", "selection/SA-sel/A_W", "cells/SA-sel/A_W/seed0"):
        with open(tmp_path / "out" / folder / "skipped_images.csv") as f:
            assert [row["path"] for row in csv.DictReader(f)] == [str(broken)]
