"""Tests for the ``dahash`` command: one-line errors with exit code 2, and help."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_errors import one_line_error  # tests/ is on sys.path (no __init__.py)
from dahash.cli import main


def _write(path: Path, n: int = 12, d: int = 6, classes: int = 3, seed: int = 0, **extra) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {"X": rng.normal(size=(n, d)).astype(np.float32), "y": np.arange(n) % classes}
    arrays.update(extra)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def _train_args(source: Path, target: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--gamma", "5000", "--source-features", str(source), "--target-features", str(target), "--out", str(out),
            "--epochs", "1", "--hidden", "8", "8", "--bits", "8", "--k", "2", "--num-threads", "1",
            "--schedule", "paper", "--quiet", *extra]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return _write(tmp_path / "source.npz")


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return _write(tmp_path / "target.npz", seed=1)


def test_missing_feature_file(tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_such_features.npz"
    code = main(_train_args(source, missing, tmp_path / "run"))
    line = one_line_error(capsys, code)
    assert str(missing) in line and "not found" in line


def test_npz_without_labels(tmp_path: Path, target: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path / "unlabeled.npz", y=None)
    code = main(_train_args(bad, target, tmp_path / "run"))
    line = one_line_error(capsys, code)
    assert str(bad) in line and "missing array 'y'" in line


def test_nan_features(tmp_path: Path, target: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X = np.random.default_rng(0).normal(size=(12, 6)).astype(np.float32)
    X[4, 2] = np.nan
    bad = _write(tmp_path / "nan.npz", X=X)
    code = main(_train_args(bad, target, tmp_path / "run"))
    line = one_line_error(capsys, code)
    assert str(bad) in line and "NaN" in line and "row 4" in line


def test_target_class_not_in_source(tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = _write(tmp_path / "target4.npz", classes=4, seed=2)
    code = main(_train_args(source, extra, tmp_path / "run"))
    line = one_line_error(capsys, code)
    assert str(extra) in line and "not in source" in line and "'3'" in line


def test_dimension_mismatch(tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wide = _write(tmp_path / "wide.npz", d=7)
    line = one_line_error(capsys, main(_train_args(source, wide, tmp_path / "run")))
    assert "dimension 7" in line


def test_out_is_required(source: Path, target: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--source-features", str(source), "--target-features", str(target)])
    assert "--out" in one_line_error(capsys, code)


def test_missing_config_file(tmp_path: Path, source: Path, target: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    code = main(_train_args(source, target, tmp_path / "run", "--config", str(tmp_path / "absent.yaml")))
    assert "absent.yaml: config file not found" in one_line_error(capsys, code)


def test_invalid_setting(tmp_path: Path, source: Path, target: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(_train_args(source, target, tmp_path / "run", "--k", "0"))
    assert "k must be positive" in one_line_error(capsys, code)


def test_evaluate_without_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", "--run", str(tmp_path)])
    line = one_line_error(capsys, code)
    assert "model.pt" in line and "no trained model" in line


def test_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--bitz", "3"])
    assert info.value.code == 2
    assert "--bitz" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["evaluate", "--help"], ["demo", "--help"]])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dahash")
    if argv[0] == "train":
        for flag in ("--resume", "--config", "--bits", "--hidden", "--mmd-layers", "--feature-norm"):
            assert flag in out


def test_successful_train_prints_summary(tmp_path: Path, source: Path, target: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    threads = torch.get_num_threads()
    try:
        code = main(_train_args(source, target, tmp_path / "run"))
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0
    assert "target_accuracy" in out and f"{tmp_path / 'run'}/results.json" in out
    assert (tmp_path / "run" / "results.json").is_file()


def test_module_entry_point_error(tmp_path: Path) -> None:
    """``python -m dahash`` itself: one line on stderr, exit status 1 (a runtime error: missing data), no traceback."""
    missing = tmp_path / "gone.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "dahash", "train", "--source-features", str(missing),
                           "--target-features", str(missing), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"dahash: error: {missing}: file not found"


def test_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` of a subcommand ends each option's help with its default (config flags from the
    TrainConfig field, other options from argparse); the command list says train takes images."""
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "train DAH on source and target feature files or image folders" in " ".join(capsys.readouterr().out.split())
    for argv, expected in ((["train"], ("--epochs EPOCHS epochs; one epoch is one pass over the source (default: 300)",
                                        "--mmd-layers MMD_LAYERS [MMD_LAYERS ...] layers the MK-MMD aligns "
                                        "(default: fc6 fc7 fc8)")),
                           (["search"], ("--top-k TOP_K hits per query (default 10)",)),
                           (["serve"], ("--max-concurrent MAX_CONCURRENT searches encoded at once; more wait for "
                                        "a slot (default 16)",)),
                           (["select"], ("--criterion CRITERION the label-free rule: paper, domain, source, dev, iw, snd, "
                                         "entropy, mixval, mano (default paper; docs/selection.md)",))):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for line in expected:
            assert line in text, line
    with pytest.raises(SystemExit):
        main(["index", "build", "--help"])
    assert "--backend {faiss,milvus} faiss: an index directory in this process (default); milvus" in " ".join(
        capsys.readouterr().out.split())


def test_the_parser_loads_neither_scikit_learn_nor_skada() -> None:
    """``dahash --help`` and every command but select and reproduce start without them (skada's
    import alone switches on scikit-learn's metadata routing and takes seconds)."""
    code = ("import sys; from dahash.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('sklearn', 'skada') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]"


def test_version_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"dahash {importlib.metadata.version('dahash')}"
    # A runtime error (data that is not there) exits 1, a usage error (a setting's value) 2, argparse's own 2.
    missing = str(tmp_path / "gone.npz")
    assert "file not found" in one_line_error(capsys, main(_train_args(Path(missing), Path(missing), tmp_path / "r")), 1)
    assert "bits must be positive" in one_line_error(
        capsys, main(_train_args(Path(missing), Path(missing), tmp_path / "r", "--bits", "0")), 2)
    with pytest.raises(SystemExit) as info:
        main(["train", "--no-such-flag"])
    assert info.value.code == 2


def test_progress_bars_only_on_a_terminal_unless_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = _write(tmp_path / "s.npz"), _write(tmp_path / "t.npz", seed=1)
    # capsys's stderr is no terminal: no bar (no carriage-return lines in a redirected log) ...
    assert main([a for a in _train_args(source, target, tmp_path / "a") if a != "--quiet"]) == 0
    assert "\r" not in capsys.readouterr().err
    # ... unless --progress asks for one.
    assert main([a for a in _train_args(source, target, tmp_path / "b", "--progress") if a != "--quiet"]) == 0
    assert "step" in capsys.readouterr().err


def test_json_summaries_of_train_and_select(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    source, target = _write(tmp_path / "s.npz"), _write(tmp_path / "t.npz", seed=1)
    capsys.readouterr()
    assert main(_train_args(source, target, tmp_path / "run", "--json")) == 0
    data = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
    assert data["out"] == str(tmp_path / "run") and data["selection"] is None
    assert data["metrics"] == {k: v for k, v in saved.items() if k != "pr_curve"}
    assert main(["select", "--source-features", str(source), "--target-features", str(target), "--epochs", "1",
                 "--hidden", "8", "8", "--bits", "8", "--k", "2", "--num-threads", "1", "--grid", "gamma=0,10",
                 "--out", str(tmp_path / "sel"), "--json", "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {"out": str(tmp_path / "sel"), **json.loads((tmp_path / "sel" / "selection.json").read_text())}
