"""Threads per parallel run from the cores that are free."""

from __future__ import annotations

import os

import numba
import pytest
import torch

from dahash import cores


@pytest.fixture
def four_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)


def test_free_cores_subtract_the_load(four_cores: None) -> None:
    assert cores.usable_cores() == 4
    assert [cores.free_cores(load) for load in (0.0, 0.4, 1.6, 3.0, 9.0)] == [4, 4, 2, 1, 1]


def test_threads_share_the_free_cores(four_cores: None) -> None:
    assert cores.threads_per_worker(1, load=0.0) == 4
    assert cores.threads_per_worker(2, load=0.0) == 2
    # One core busy elsewhere: two runs get one thread each, not two (oversubscription).
    assert cores.threads_per_worker(2, load=1.0) == 1
    assert cores.threads_per_worker(8, load=0.0) == 1


def test_the_system_load_is_read_when_none_is_given(four_cores: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (2.2, 0.0, 0.0))
    assert cores.free_cores() == 2


def test_use_threads_sets_torch_and_the_metric_kernels() -> None:
    before = numba.get_num_threads()
    try:
        cores.use_threads(1)
        assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
        cores.use_threads(10**6)  # more than numba started with: as many as it has
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS
    finally:
        numba.set_num_threads(before)


@pytest.mark.skipif(cores.usable_cores() < 2, reason="one core: every thread count is 1")
def test_one_thread_holds_in_a_fresh_process() -> None:
    # The first numba.set_num_threads starts numba's OpenMP layer, which reset torch to every
    # core: a run's --num-threads 1 trained on 2 threads in the first run of a process and on 1
    # after, so an interrupted run resumed to other weights (found by the suite loop of issue 17).
    import subprocess
    import sys

    code = ("import torch; from dahash.cores import use_threads; use_threads(1); "
            "import numba; print(torch.get_num_threads(), numba.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["1", "1"]


@pytest.mark.skipif(cores.usable_cores() < 2, reason="one core: every thread count is 1")
def test_use_threads_limits_blas_too() -> None:
    # Measured before: OpenBLAS stayed on every core after use_threads(1), so shallow cells in
    # parallel workers oversubscribed the cores. In a fresh process, as a worker is.
    import subprocess
    import sys

    code = ("import numpy, scipy.linalg; from threadpoolctl import threadpool_info; from dahash.cores import use_threads;"
            "use_threads(1); print(sorted({p['internal_api'] + ':' + str(p['num_threads']) for p in threadpool_info()}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    pools = eval(out.stdout)  # a list of "api:threads" strings
    assert any(p.startswith(("openblas:", "mkl:", "blis:")) for p in pools), pools
    assert all(p.endswith(":1") for p in pools), pools
