"""``dahash.executors`` without a cluster: bad settings as one-line errors, threads from a Slurm
allocation, the local pool in this process. (The engines themselves: tests/experiments/test_executors.py.)"""

from __future__ import annotations

import pytest

from dahash.cores import threads_per_worker
from dahash.errors import ConfigError
from dahash.executors import ExecutorConfig, allocated_threads, run_all


def _square(cell: int, threads: int) -> tuple[int, int]:
    return cell * cell, threads


def test_bad_settings_are_one_line_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    for config, message in ((ExecutorConfig("spark"), "executor must be one of local, dask, ray, slurm; got 'spark'"),
                            (ExecutorConfig(workers=0), "workers, cpus and slurm_time must be at least 1"),
                            (ExecutorConfig(cpus=0), "got workers=1, cpus=0"),
                            (ExecutorConfig("local", address="tcp://x:1"), "--executor-address is for dask and ray")):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            config.validate()
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ConfigError, match="sbatch, which is not on this machine's PATH"):
        ExecutorConfig("slurm").validate()
    ExecutorConfig("slurm", submitit_cluster="local").validate()


def test_threads_come_from_the_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")
    assert allocated_threads("slurm") == 6
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert allocated_threads("slurm", 3) == 3 and allocated_threads("slurm") == 1
    assert allocated_threads("local", 2) == 2


def test_the_local_pool_in_this_process_gives_every_result() -> None:
    threads = threads_per_worker(1)
    assert sorted(run_all(ExecutorConfig(), _square, [1, 2, 3])) == [(1, (1, threads)), (2, (4, threads)),
                                                                     (3, (9, threads))]
    assert list(run_all(ExecutorConfig(cpus=5), _square, [4])) == [(4, (16, 5))]
    assert list(run_all(ExecutorConfig(), _square, [])) == []

