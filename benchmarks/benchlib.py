"""What every benchmark script here shares: the machine line, timing, log-log exponents and result files."""

from __future__ import annotations

import csv
import os
import platform
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(**versions: str) -> str:
    """CPU, cores, memory, Python and numpy (plus ``versions``), and the load average now: the
    figures of a run mean little without them."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    extra = "".join(f", {name} {value}" for name, value in versions.items())
    load = os.getloadavg()[0]
    return (f"{cpu_name()}, {os.cpu_count()} cores, {memory:.0f} GiB; Python {platform.python_version()}, "
            f"numpy {np.__version__}{extra}; load average at start {load:.2f}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (torchrun and servers started by the benchmarks)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """(fn(), seconds)."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def best_of(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """The fastest of ``repeats`` timed calls after ``warmup`` untimed ones, in seconds: the
    minimum is the figure least disturbed by other work on a shared machine."""
    for _ in range(warmup):
        fn()
    return min(timed(fn)[1] for _ in range(repeats))


def exponent(sizes: Sequence[float], values: Sequence[float]) -> float:
    """The slope of log(value) against log(size): how a cost grows with the size (1 = linear)."""
    return float(np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(values, float)), 1)[0])


def write_results(out: str | os.PathLike, name: str, markdown: str, rows: list[dict[str, Any]]) -> None:
    """``out/name.md`` and ``out/name.csv`` (written whole, then renamed into place)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    md = folder / f"{name}.md"
    tmp = md.with_suffix(".md.tmp")
    tmp.write_text(markdown)
    os.replace(tmp, md)
    if rows:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        tmp = folder / f"{name}.csv.tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, keys)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, folder / f"{name}.csv")
