"""Atomic writes, and the temporaries a killed writer leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from dahash.io import atomic_path, remove_stale_temporaries, write_json


def test_a_killed_write_leaves_the_old_file_and_a_temporary_the_next_writer_removes(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    write_json(target, {"old": 1})
    script = ("import os, signal; from dahash.io import atomic_path\n"
              f"with atomic_path({str(target)!r}) as tmp:\n"
              "    open(tmp, 'w').write('{\"half')\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([sys.executable, "-c", script]).returncode == -signal.SIGKILL
    assert target.read_text().strip().startswith("{") and '"old": 1' in target.read_text()
    left = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].name.startswith(".results.json.")
    other = tmp_path / "notes.tmp"  # not one of atomic_path's: kept
    other.write_text("mine")
    assert remove_stale_temporaries(tmp_path) == left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp", "results.json"]
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_atomic_path_replaces_in_one_rename(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and not target.exists()
        tmp.write_text("done")
    assert target.read_text() == "done" and os.listdir(target.parent) == ["b.txt"]
