"""The cell lock and staged directories of ``dahash.locks``: one holder at a time, a dead holder's lock
taken over, a finished directory never recomputed and never seen half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dahash.locks import OWNER, DirectoryLock, compute_once, machine_id, process_alive


def test_one_holder_at_a_time_and_release_frees_it(tmp_path: Path) -> None:
    first, second = DirectoryLock(tmp_path / "cell.lock"), DirectoryLock(tmp_path / "cell.lock")
    assert first.try_acquire() and not second.try_acquire()
    owner = json.loads((tmp_path / "cell.lock" / OWNER).read_text())
    assert (owner["host"], owner["pid"], owner["token"]) == (machine_id(), os.getpid(), first.token)
    second.release()  # not the holder: nothing happens
    assert (tmp_path / "cell.lock").is_dir() and not second.try_acquire()
    first.release()
    assert not (tmp_path / "cell.lock").exists() and second.try_acquire()
    second.release()


def test_a_dead_holders_lock_is_taken_over_here_and_a_silent_one_after_the_timeout(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not process_alive(dead.pid) and process_alive(os.getpid())
    lock = tmp_path / "cell.lock"
    lock.mkdir()
    (lock / OWNER).write_text(json.dumps({"host": machine_id(), "pid": dead.pid, "token": "old"}))
    taker = DirectoryLock(lock)
    assert taker.try_acquire()
    assert json.loads((lock / OWNER).read_text())["token"] == taker.token
    assert [p.name for p in tmp_path.iterdir()] == ["cell.lock"]  # the stale one is gone
    taker.release()
    # A holder on another machine: alive as far as this one can tell, until its heartbeat is too old.
    lock.mkdir()
    (lock / OWNER).write_text(json.dumps({"host": "elsewhere/1/1", "pid": 1, "token": "remote"}))
    assert not DirectoryLock(lock, stale_after_s=60).try_acquire()
    os.utime(lock / OWNER, (time.time() - 120, time.time() - 120))
    late = DirectoryLock(lock, stale_after_s=60)
    assert late.try_acquire()
    late.release()


def test_the_holder_keeps_its_lock_fresh(tmp_path: Path) -> None:
    lock = DirectoryLock(tmp_path / "cell.lock", heartbeat_s=0.05, stale_after_s=0.5)
    assert lock.try_acquire()
    os.utime(tmp_path / "cell.lock" / OWNER, (0, 0))
    time.sleep(0.3)
    assert time.time() - (tmp_path / "cell.lock" / OWNER).stat().st_mtime < 0.5
    assert not DirectoryLock(tmp_path / "cell.lock", stale_after_s=0.5).try_acquire()
    lock.release()


def _done(directory: Path) -> dict | None:
    result = directory / "result.json"
    return json.loads(result.read_text()) if result.exists() else None


def test_compute_once_stages_renames_and_waits_for_another_holder(tmp_path: Path) -> None:
    cell, calls = tmp_path / "cells" / "seed0", []

    def compute(staging: Path) -> dict:
        calls.append(staging)
        assert staging == cell.with_name("seed0.partial") and not cell.exists()
        time.sleep(0.3)  # long enough for the second caller to find the lock held
        (staging / "result.json").write_text(json.dumps({"value": len(calls)}))
        return {"value": len(calls)}

    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(
        compute_once(cell, lambda: _done(cell), compute, poll_s=0.02))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [{"value": 1}, {"value": 1}]
    assert sorted(p.name for p in cell.parent.iterdir()) == ["seed0"]
    assert compute_once(cell, lambda: _done(cell), compute) == {"value": 1} and len(calls) == 1


def test_a_killed_holder_leaves_its_staging_folder_for_the_next_one(tmp_path: Path) -> None:
    """What a lost worker wrote is resumed from, never read as a finished cell; a directory an older
    dahash left unfinished in place is resumed from too."""
    cell = tmp_path / "seed0"

    def interrupted(staging: Path) -> dict:
        (staging / "checkpoint").write_text("epoch 3")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compute_once(cell, lambda: _done(cell), interrupted)
    assert not cell.exists() and _done(cell) is None and not (tmp_path / "seed0.lock").exists()

    def resumed(staging: Path) -> dict:
        (staging / "result.json").write_text(json.dumps({"from": (staging / "checkpoint").read_text()}))
        return _done(staging)

    assert compute_once(cell, lambda: _done(cell), resumed) == {"from": "epoch 3"}
    old = tmp_path / "old"
    old.mkdir()
    (old / "checkpoint").write_text("epoch 7")
    assert compute_once(old, lambda: _done(old), resumed) == {"from": "epoch 7"}
    assert _done(old) == {"from": "epoch 7"} and not (tmp_path / "old.partial").exists()
