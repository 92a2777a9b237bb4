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
