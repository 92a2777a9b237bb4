"""A directory computed once, whoever computes it: a lock that works on a shared filesystem, and the
directory written in a staging folder and renamed into place when it is whole.

Several drivers, or an engine that resubmits a job, may start the same cell of an experiment grid
on different machines that share ``--out`` over NFS, Lustre or GPFS. ``fcntl`` locks are not
reliable there, but creating a directory is atomic on every one of them, and so is renaming
one. The holder of a lock keeps a file in it fresh (a heartbeat); a lock whose holder died is
taken over at once on the holder's own machine (its process is gone) and after
``stale_after_s`` without a heartbeat from anywhere else.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TypeVar

from dahash.errors import DahashError
from dahash.io import write_json

T = TypeVar("T")

#: How often a holder touches its lock, and how long without a touch makes a lock stale. NFS clients
#: cache file times for up to a minute (acregmax), so a holder alive elsewhere must not look dead sooner.
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0
OWNER = "owner.json"


def machine_id() -> str:
    """This machine (and PID namespace): its host name, boot id and the namespace's inode, so that a
    process id read from a lock is checked only where it means the same process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # macOS: no /proc
        boot, namespace = "", 0
    return f"{socket.gethostname()}/{boot}/{namespace}"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # The state is the field after the parenthesised command name.
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class DirectoryLock:
    """An exclusive lock on ``path`` (a directory it creates), safe across machines on a shared filesystem."""

    def __init__(self, path: str | os.PathLike, *, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S) -> None:
        self.path = Path(path)
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.token = uuid.uuid4().hex
        self._stop: threading.Event | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free or stale; False when a live holder has it."""
        for _ in range(2):
            try:
                os.mkdir(self.path)
            except FileExistsError:
                if not self._take_over_if_stale():
                    return False
                continue
            write_json(self.path / OWNER, {"host": machine_id(), "pid": os.getpid(), "token": self.token,
                                           "started": time.time()})
            self._stop = threading.Event()
            threading.Thread(target=self._beat, args=(self._stop,), daemon=True, name="dahash-lock").start()
            return True
        return False

    def release(self) -> None:
        """Give the lock back (only if it is still this holder's)."""
        if self._stop is None:
            return
        self._stop.set()
        self._stop = None
        if self._owner().get("token") == self.token:
            self._remove(self.path)

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path / OWNER)
            except OSError:  # taken over, or the filesystem hiccuped: the next beat tries again
                pass

    def _owner(self, path: Path | None = None) -> dict:
        try:
            return json.loads(((path or self.path) / OWNER).read_text())
        except (OSError, ValueError):
            return {}

    def stale(self) -> bool:
        """Whether the lock's holder is gone: its process is dead on this machine, or it has not
        touched the lock in ``stale_after_s``."""
        owner = self._owner()
        try:
            # Without an owner file yet, the directory's own time: a holder writes it just after mkdir.
            touched = (self.path / OWNER).stat().st_mtime if owner else self.path.stat().st_mtime
        except OSError:
            return False
        if time.time() - touched > self.stale_after_s:
            return True
        return owner.get("host") == machine_id() and not process_alive(int(owner.get("pid", os.getpid())))

    def _take_over_if_stale(self) -> bool:
        """Move a stale lock aside (one rename: of two takers, one wins); True when it is gone."""
        if not self.stale():
            return False
        judged = self._owner().get("token")
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True  # another taker moved it first
        except OSError:
            return False
        if self._owner(aside).get("token") != judged:
            # A new holder took the lock between the check and the rename: give it back.
            try:
                os.rename(aside, self.path)
            except OSError:
                pass
            return False
        self._remove(aside)
        return True

    @staticmethod
    def _remove(path: Path) -> None:
        aside = path.with_name(f"{path.name}.gone-{uuid.uuid4().hex}")
        try:
            os.rename(path, aside)  # the name is free at once, whatever rmtree meets on NFS
        except OSError:
            return
        shutil.rmtree(aside, ignore_errors=True)

    @contextmanager
    def held(self, poll_s: float = 0.5, stop_waiting: Callable[[], bool] = lambda: False) -> Iterator[bool]:
        """Wait for the lock and hold it inside the block (True); False without the lock when
        ``stop_waiting()`` turns true first (the holder finished the work)."""
        while not self.try_acquire():
            if stop_waiting():
                yield False
                return
            time.sleep(poll_s)
        try:
            yield True
        finally:
            self.release()


def compute_once(directory: str | os.PathLike, done: Callable[[], T | None], compute: Callable[[Path], T], *,
                 heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S,
                 poll_s: float = 0.5) -> T:
    """``done()`` when ``directory`` is finished, else ``compute(staging)`` under ``directory``'s lock,
    then ``staging`` renamed to ``directory``: it appears whole or not at all.

    ``staging`` (``<directory>.partial``) survives a killed holder, so the next one resumes what it
    left (a deep run's checkpoint); a caller that finds another holder at work waits and returns its
    result. A directory an older dahash left unfinished in place becomes the staging folder.
    """
    final = Path(directory)
    result = done()
    if result is not None:
        return result
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = DirectoryLock(final.with_name(final.name + ".lock"), heartbeat_s=heartbeat_s, stale_after_s=stale_after_s)
    with lock.held(poll_s, stop_waiting=lambda: done() is not None) as mine:
        result = done()
        if not mine or result is not None:
            if result is None:
                raise DahashError(f"{final}: finished by another process but unreadable")
            return result
        staging = final.with_name(final.name + ".partial")
        if final.exists():
            if staging.exists():
                shutil.rmtree(final)
            else:
                os.rename(final, staging)
        staging.mkdir(exist_ok=True)
        result = compute(staging)
        os.rename(staging, final)
    return result
