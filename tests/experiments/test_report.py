"""``dahash analyze`` on a reproduce output and on a single run: A-distance table and figures."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from dahash.experiments.report import analyze, run_label
from dahash.cli import main
from dahash.errors import DahashError
from dahash.training.methods import DEEP_METHODS, method_config
from dahash.experiments.reproduce import ReproduceConfig, reproduce


@pytest.fixture(scope="module")
def reproduced(tiny_office31: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("reproduced")
    reproduce(ReproduceConfig(data_root=str(tiny_office31), out=str(out), dataset="office31", methods=["Deep", "DAN", "DAH"],
                              tasks=["A:W"], seeds=1, bits=8, cache_dir=str(tiny_office31.parent / "cache"),
                              overrides={"epochs": 2, "hidden": [16, 16], "k": 2}), progress=False)
    torch.set_num_threads(threads)
    return out


def test_analyze_a_reproduce_output(reproduced: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "--run", str(reproduced), "--out", str(tmp_path), "--quiet"]) == 0
    rows = list(csv.reader(open(tmp_path / "a_distance.csv")))
    assert rows[0] == ["Task", "Backbone", "Deep", "DAN", "DAH"] and rows[1][0] == "A→W"
    # The 16-wide fc7 of a 2-epoch head and the 1,280-d backbone features: finite, in [-0.5, 2].
    assert all(-0.5 <= float(v) <= 2.0 for v in rows[1][1:])
    for name in ("a_distance.png", "tsne_Backbone_A_W.png", "tsne_Deep_A_W.png", "tsne_DAN_A_W.png", "tsne_DAH_A_W.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name
    assert "Proxy A-distance" in capsys.readouterr().out


def test_analyze_one_run_and_bad_runs(reproduced: Path, tmp_path: Path) -> None:
    result = analyze(reproduced / "cells" / "DAN" / "A_W" / "seed0", tmp_path / "one", progress=False)
    assert list(result["a_distance"]["A→W"]) == ["Backbone", "DAN"]
    with pytest.raises(DahashError, match="neither a 'dahash reproduce' output"):
        analyze(tmp_path, tmp_path / "x", progress=False)
    with pytest.raises(DahashError, match="t-SNE task"):
        analyze(reproduced, tmp_path / "y", tsne_task="W:A", progress=False)
    with pytest.raises(DahashError, match="no finished Deep, DAN or DAH run"):
        analyze(reproduced, tmp_path / "z", seed=4, progress=False)


def test_run_labels_name_every_method() -> None:
    assert {m: run_label(method_config(m, {})) for m in DEEP_METHODS} == {m: m for m in DEEP_METHODS}
