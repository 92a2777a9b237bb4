"""How many CPU threads a job should use: the cores this process may run on, less those other
processes keep busy, shared among the job's parallel workers."""

from __future__ import annotations

import os

import numba
import torch
from threadpoolctl import threadpool_limits


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def free_cores(load: float | None = None) -> int:
    """Usable cores minus the 1-minute load average (``load``, else the system's), at least 1.

    On a 2-core machine with one busy job, 2 torch threads per run ran at a third of 1 thread's
    speed (benchmarks/README.md): threads must fit the cores that are actually free.
    """
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on Windows
            load = 0.0
    return max(1, usable_cores() - int(round(load)))


def threads_per_worker(workers: int, load: float | None = None) -> int:
    """Threads for each of ``workers`` parallel runs: the free cores shared evenly, at least 1."""
    return max(1, free_cores(load) // max(1, workers))


def use_threads(n: int) -> None:
    """Run this process's torch ops, compiled metric kernels (numba) and the BLAS and OpenMP pools numpy,
    scipy and scikit-learn call (threadpoolctl) on ``n`` threads."""
    # numba first: the first call starts its OpenMP threading layer, which resets the OpenMP
    # thread count torch reads, so torch set first would be back at every core.
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    # Not as a context: the limit stays for the process, as torch's does (shallow cells under
    # --workers N otherwise ran OpenBLAS on every core in every worker).
    threadpool_limits(limits=n)
    torch.set_num_threads(n)
