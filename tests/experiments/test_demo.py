"""The offline demo end to end, shortened: tables, plots, resumability, and real learning."""

import json

import numpy as np
import pytest

from dahash.experiments.demo import METHODS, demo_config, prepare_data, run_demo, summarize
from dahash.runs.run import run


def test_summarize_mean_and_sample_std():
    runs = {"DAH": [{"target_accuracy": a, "target_accuracy_codes": a, "map": a / 100} for a in (60.0, 62.0, 64.0)]}
    header, rows = summarize(runs)
    assert header[:2] == ["method", "seeds"]
    assert rows[0][:3] == ["DAH", "3", "62.0 ± 2.0"]
    assert rows[0][4] == "0.620 ± 0.020"


def test_short_demo_writes_table_plots_and_skips_finished_runs(tmp_path, capsys):
    results = run_demo(out=tmp_path, seeds=2, epochs=2, progress=False)
    assert set(results) == set(METHODS) and all(len(r) == 2 for r in results.values())
    table = (tmp_path / "demo_results.md").read_text()
    assert "| NoDA | 2 |" in table and "| DAH | 2 |" in table
    for png in ("pr_curve.png", "digits.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "DAH" / "seed1" / "results.json").read_text())
    assert saved["config"]["gamma"] == 5000.0 and saved["config"]["seed"] == 1
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
