"""Atomic file writes: a crash mid-write leaves the previous file intact, never a torn one."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import torch


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(folder: str | os.PathLike, older_than_s: float = 0.0) -> list[Path]:
    """Delete the temporaries :func:`atomic_path` left in ``folder`` when its process was killed
    mid-write (``.<name>.<random>.tmp``) and return them. Only a folder's single writer may call
    this, before it writes; where several may write, ``older_than_s`` spares those written since."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    stale = [p for p in folder.iterdir() if p.is_file() and p.name.startswith(".") and p.name.endswith(".tmp")
             and now - p.stat().st_mtime >= older_than_s]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _write_text(path: str | os.PathLike, writer: Callable[[IO[str]], None]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer(f)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    _write_text(path, lambda f: json.dump(obj, f, indent=2, sort_keys=False))


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV table, atomically."""
    def writer(f: IO[str]) -> None:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    _write_text(path, writer)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file, atomically."""
    _write_text(path, lambda f: f.write(text))


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
