"""What a run tells its user: unreadable images are one line on stderr and a list in the run folder."""

from __future__ import annotations

import csv
import shutil
import warnings
from pathlib import Path

import pytest
from tiny_runs import tiny_train_args  # tests/ is on sys.path (no __init__.py)

from dahash.cli import main


@pytest.mark.parametrize("finetune", [False, True])
def test_unreadable_images_are_one_line_and_a_file(tiny_office31: Path, tmp_path: Path, finetune: bool,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    shutil.copytree(tiny_office31, root)
    broken = [root / "amazon" / "images" / "mug" / "broken.jpg", root / "webcam" / "images" / "pen" / "empty.jpg"]
    broken[0].write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    broken[1].write_bytes(b"")
    out = tmp_path / "run"
    argv = tiny_train_args(root, tmp_path / "cache", out)
    if finetune:
        argv += ["--finetune", "--epochs", "1", "--extract-batch-size", "8", "--num-workers", "0"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported by the run, not as a Python warning
        assert main(argv) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "could not be read" in line]
    assert len(err) == 1
    assert err[0].startswith("dahash: 2 image(s) could not be read and were skipped (first: ")
    assert err[0].endswith(f"; the list is in {out / 'skipped_images.csv'}")
    rows = list(csv.DictReader(open(out / "skipped_images.csv")))
    assert sorted(r["path"] for r in rows) == sorted(map(str, broken)) and all(r["reason"] for r in rows)


def test_a_run_killed_while_writing_its_results_resumes_to_complete_results(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by benchmarks/random_kills.py: killed after the first results.json but before the
    # training time was added, a reproduce cell looked finished and its table failed
    # (KeyError: 'train_seconds'). results.json is now written once, last.
    import json

    import numpy as np

    import dahash.runs.run as run_module
    from dahash.runs.run import run
    from dahash.training.config import TrainConfig

    rng = np.random.default_rng(0)
    for name, shift in (("s", 0.0), ("t", 0.5)):
        np.savez(tmp_path / f"{name}.npz", X=(rng.normal(size=(40, 8)) + shift).astype(np.float32),
                 y=np.arange(40) % 4)
    config = TrainConfig(source_features=str(tmp_path / "s.npz"), target_features=str(tmp_path / "t.npz"),
                         bits=8, hidden=[16, 16], epochs=2, out=str(tmp_path / "run"), num_threads=1)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "plot_pr_curves", killed)
    with pytest.raises(KeyboardInterrupt):
        run(config, progress=False)
    assert not (tmp_path / "run" / "results.json").exists()
    monkeypatch.undo()
    metrics = run(config, resume=True, progress=False)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
    assert saved["train_seconds"] == metrics["train_seconds"] > 0
    assert (tmp_path / "run" / "pr_curve.png").is_file() and (tmp_path / "run" / "results.csv").is_file()
