"""The offline demo end to end, shortened: tables, plots, resumability, and real learning."""

import csv
import json
import os

import numpy as np
import pytest

from dahash.experiments.demo import METHODS, demo_config, prepare_data, run_demo, summarize, summary_csv
from dahash.selection_grids import auto_grid
from dahash.runs.run import run


def test_summarize_mean_and_sample_std():
    runs = {"DAH": [{"target_accuracy": a, "target_accuracy_codes": a, "map": a / 100} for a in (60.0, 62.0, 64.0)]}
    header, rows = summarize(runs)
    assert header[:2] == ["method", "seeds"]
    assert rows[0][:3] == ["DAH", "3", "62.0 ± 2.0"]
    assert rows[0][4] == "0.620 ± 0.020"
    header, rows = summary_csv(runs)
    assert header == ["method", "seeds", "target_accuracy_mean", "target_accuracy_std", "target_accuracy_codes_mean",
                      "target_accuracy_codes_std", "map_mean", "map_std"]
    assert rows[0] == ["DAH", 3, 62.0, 2.0, 62.0, 2.0, 0.62, pytest.approx(0.02)]


def test_short_demo_writes_table_plots_and_skips_finished_runs(tmp_path, caplog):
    caplog.set_level("INFO", logger="dahash")
    results = run_demo(out=tmp_path, seeds=2, epochs=2, progress=False)
    assert set(results) == set(METHODS) and all(len(r) == 2 for r in results.values())
    printed = [r.getMessage() for r in caplog.records if r.name.startswith("dahash")]
    # What it does comes first (the dahash logger at INFO), before any run has finished.
    assert printed[0] == (f"demo: NoDA and DAH, 2 seed(s) each, 2 epochs, on 1000 printed -> 1797 handwritten "
                          f"digits, {min(2, os.cpu_count() or 1)} run(s) at a time; DAH's gamma chosen first among 7 "
                          f"candidates without target labels; results go to {tmp_path}/")
    rows = list(csv.DictReader(open(tmp_path / "demo_results.csv")))
    assert [r["method"] for r in rows] == list(METHODS)
    assert float(rows[1]["target_accuracy_mean"]) == pytest.approx(np.mean([r["target_accuracy"] for r in results["DAH"]]))
    table = (tmp_path / "demo_results.md").read_text()
    assert "| NoDA | 2 |" in table and "| DAH | 2 |" in table
    for png in ("pr_curve.png", "digits.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # DAH trains the setting its label-free selection chose, on every seed.
    selection = json.loads((tmp_path / "selection" / "selection.json").read_text())
    assert [c["params"] for c in selection["candidates"]] == auto_grid("DAH")
    for seed in (0, 1):
        saved = json.loads((tmp_path / "DAH" / f"seed{seed}" / "results.json").read_text())
        assert {k: saved["config"][k] for k in selection["best_params"]} == selection["best_params"]
        assert saved["config"]["seed"] == seed
    # The paired comparison: its mean is the mean of the per-seed differences.
    gaps = [d["target_accuracy"] - n["target_accuracy"] for d, n in zip(results["DAH"], results["NoDA"])]
    assert f"| accuracy (%) | {np.mean(gaps):+.1f} [" in table and "DAH - NoDA, paired by seed" in table
    noda = json.loads((tmp_path / "NoDA" / "seed0" / "results.json").read_text())
    assert noda["config"]["gamma"] == 0.0 and noda["config"]["eta"] == 0.0
    # A second call finds every run finished and reuses it unchanged.
    mtime = (tmp_path / "DAH" / "seed0" / "model.pt").stat().st_mtime_ns
    again = run_demo(out=tmp_path, seeds=2, epochs=2, progress=False)
    assert (tmp_path / "DAH" / "seed0" / "model.pt").stat().st_mtime_ns == mtime
    assert again["DAH"][0]["target_accuracy"] == results["DAH"][0]["target_accuracy"]


@pytest.mark.integration
def test_dah_learns_the_handwritten_target(tmp_path):
    # Real data: printed digits (source) to scikit-learn's handwritten digits (target).
    prepare_data(tmp_path)
    config = demo_config(tmp_path, epochs=40)
    config.out = str(tmp_path / "run")
    untrained = run(demo_config(tmp_path, epochs=1), progress=False)
    metrics = run(config, progress=False)
    assert metrics["source_accuracy"] > 95
    assert metrics["target_accuracy"] > 50  # chance is 10 %
    assert metrics["target_accuracy"] > untrained["target_accuracy"] + 10
    assert metrics["map"] > 0.5
    assert np.isfinite(metrics["target_accuracy_codes"])
