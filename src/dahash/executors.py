"""Where the cells of an experiment grid run: a process pool here, or a Dask, Ray or Slurm cluster.

Each engine gets the same thing, a top-level function and a list of picklable cells, and gives back
each cell's result as it finishes. Queueing, placement and resubmitting a lost job are the engine's
(Dask reschedules a task whose worker died, Ray retries it, Slurm requeues a preempted job through
submitit); dahash adds no scheduler of its own. The engines are optional extras, imported only when
chosen: ``dahash[dask]``, ``dahash[ray]``, ``dahash[slurm]``.

A cell runs on as many threads as its worker was given (:func:`allocated_threads`): Slurm's
``cpus-per-task``, the CPUs Ray assigned the task, a Dask worker's cores shared among its threads.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

from dahash.cores import threads_per_worker, usable_cores
from dahash.errors import ConfigError, DahashError

C = TypeVar("C")
R = TypeVar("R")

EXECUTORS = ("local", "dask", "ray", "slurm")
EXTRAS = {"dask": ("distributed", "dask"), "ray": ("ray", "ray"), "slurm": ("submitit", "slurm")}
# A Slurm array job is polled (one squeue/sacct call for all of it) this often, submitit's own rhythm.
SLURM_POLL_S = 10.0
LOCAL_POLL_S = 0.2


@dataclass
class ExecutorConfig:
    """Where cells run (``kind``: one of :data:`EXECUTORS`) and what each asks its engine for."""

    kind: str = "local"
    # tcp://scheduler:8786 for Dask, ray://head:10001 or auto for Ray; none: a cluster on this machine.
    address: str | None = None
    # Cells at once on this machine (the local pool, a LocalCluster, a local Ray runtime).
    workers: int = 1
    # Cores and GPUs each cell asks for: Ray's num_cpus/num_gpus, Slurm's cpus-per-task/gpus-per-node.
    cpus: int | None = None
    gpus: int = 0
    slurm_partition: str | None = None
    slurm_time: int = 60  # minutes
    slurm_mem: str | None = None
    slurm_account: str | None = None
    slurm_qos: str | None = None
    # submitit's job folder (scripts, stdout, stderr, pickled results); default OUT/slurm.
    log_dir: str | None = None
    # submitit's executor: "slurm", or "local" (jobs as processes on this machine, what the tests use).
    submitit_cluster: str = "slurm"

    def validate(self) -> "ExecutorConfig":
        if self.kind not in EXECUTORS:
            raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}; got {self.kind!r}")
        if self.workers < 1 or (self.cpus is not None and self.cpus < 1) or self.gpus < 0 or self.slurm_time < 1:
            raise ConfigError(f"workers, cpus and slurm_time must be at least 1 and gpus at least 0; got workers="
                              f"{self.workers}, cpus={self.cpus}, gpus={self.gpus}, slurm_time={self.slurm_time}")
        if self.address and self.kind in ("local", "slurm"):
            raise ConfigError(f"--executor-address is for dask and ray; the {self.kind} executor takes none")
        if self.kind == "slurm" and self.submitit_cluster == "slurm" and shutil.which("sbatch") is None:
            raise ConfigError("--executor slurm submits with sbatch, which is not on this machine's PATH; "
                              "run dahash on a Slurm login node")
        if self.kind in EXTRAS:
            module, extra = EXTRAS[self.kind]
            try:
                __import__(module)
            except ImportError as exc:
                raise ConfigError(f"--executor {self.kind} needs {module} ({exc}); install it: "
                                  f"pip install 'dahash[{extra}]'") from None
        return self


def run_all(config: ExecutorConfig, work: Callable[[C, int], R], cells: Sequence[C], *,
            describe: Callable[[C], str] = str, log_dir: str | os.PathLike = ".") -> Iterator[tuple[C, R]]:
    """``(cell, work(cell, threads))`` for every cell, in the order they finish, on ``config``'s engine.

    ``work`` must be a module-level function (engines pickle it by name) that is safe to start twice
    on one cell: an engine may rerun a cell whose worker was lost. The first failure stops the rest.
    """
    config.validate()
    if not cells:
        return iter(())
    runner = {"local": _local, "dask": _dask, "ray": _ray, "slurm": _slurm}[config.kind]
    return runner(config, work, list(cells), describe, Path(config.log_dir or Path(log_dir) / "slurm"))


def allocated_threads(kind: str, fallback: int | None = None) -> int:
    """The threads a cell may use on the worker running it: Slurm's ``SLURM_CPUS_PER_TASK``, the CPUs
    Ray assigned to this task, or a Dask worker's cores shared among its threads (each runs a cell);
    ``fallback`` (else 1) where the engine says nothing (submitit's local jobs)."""
    if kind == "slurm" and os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return max(1, int(os.environ["SLURM_CPUS_PER_TASK"]))
    if kind == "ray":
        import ray  # optional extra, on a Ray worker

        return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", fallback or 1)))
    if kind == "dask":
        from distributed import get_worker  # optional extra, on a Dask worker

        return max(1, usable_cores() // max(1, get_worker().state.nthreads))
    return max(1, fallback or 1)


def _on_worker(kind: str, work: Callable[[C, int], R], cell: C, threads: int | None) -> R:
    """Run one cell on the threads its worker was given (``threads`` when the driver knows better)."""
    return work(cell, threads or allocated_threads(kind))


def _failed(config: ExecutorConfig, cell: str, exc: BaseException) -> DahashError:
    if isinstance(exc, DahashError):
        return exc
    return DahashError(f"{cell} failed on the {config.kind} executor: {type(exc).__name__}: {exc}")


def _local(config: ExecutorConfig, work: Callable[[C, int], R], cells: list[C], describe: Callable[[C], str],
           log_dir: Path) -> Iterator[tuple[C, R]]:
    """``config.workers`` cells at a time in spawned processes (in this process when 1), each on the
    free cores shared among them."""
    threads = config.cpus or threads_per_worker(config.workers)
    if config.workers == 1:
        for cell in cells:
            yield cell, work(cell, threads)
        return
    with ProcessPoolExecutor(max_workers=config.workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(work, cell, threads): cell for cell in cells}
        try:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except BrokenProcessPool as exc:
                    # The pool resubmits nothing: what the lost worker held stays staged for the next run.
                    raise DahashError(f"a worker process died while running {describe(futures[future])} (killed, "
                                      "or out of memory); rerun the same command to finish the cells left") from exc
                yield futures[future], result
        except BaseException:
            # Stop at the first failure or Ctrl-C instead of running every queued cell first.
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _dask(config: ExecutorConfig, work: Callable[[C, int], R], cells: list[C], describe: Callable[[C], str],
          log_dir: Path) -> Iterator[tuple[C, R]]:
    """Cells as tasks of a Dask cluster (``config.address``), or of a ``LocalCluster`` of
    ``config.workers`` one-thread processes; a task whose worker dies is rerun by the scheduler."""
    from distributed import Client, LocalCluster  # optional extra
    from distributed import as_completed as dask_completed

    cluster = None
    if config.address:
        client = Client(config.address)
        threads = config.cpus
    else:
        cluster = LocalCluster(n_workers=config.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
        # The worker processes share this machine: its free cores, as the local pool would give them.
        threads = config.cpus or threads_per_worker(config.workers)
    run = uuid.uuid4().hex[:8]
    futures = {client.submit(_on_worker, "dask", work, cell, threads, pure=False,
                             key=f"dahash-{run}-{i}"): cell for i, cell in enumerate(cells)}
    try:
        for future in dask_completed(futures):
            cell = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - named and re-raised as one line
                raise _failed(config, describe(cell), exc) from exc
            yield cell, result
    finally:
        client.cancel(list(futures))
        client.close()
        if cluster is not None:
            cluster.close()


def _ray(config: ExecutorConfig, work: Callable[[C, int], R], cells: list[C], describe: Callable[[C], str],
         log_dir: Path) -> Iterator[tuple[C, R]]:
    """Cells as Ray tasks of ``config.cpus`` CPUs each, on the cluster at ``config.address`` or a local
    runtime of ``config.workers`` cells' CPUs; Ray retries a task whose worker died."""
    import ray  # optional extra

    started = not ray.is_initialized()
    cpus = config.cpus or (1 if config.address else threads_per_worker(config.workers))
    if started:
        if config.address:
            ray.init(address=config.address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(num_cpus=cpus * config.workers, num_gpus=config.gpus * config.workers or None,
                     include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    task = ray.remote(_on_worker).options(num_cpus=cpus, num_gpus=config.gpus, max_retries=3,
                                          retry_exceptions=False)
    pending = {task.remote("ray", work, cell, None): cell for cell in cells}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - named and re-raised as one line
                cause = getattr(exc, "cause", None) or exc
                raise _failed(config, describe(cell), cause) from exc
            yield cell, result
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


class SlurmCell:
    """One array task: runs a cell and, when Slurm preempts the job or its time runs out, asks
    submitit to requeue it (the cell resumes from what its staging folder holds)."""

    def __init__(self, work: Callable[[C, int], R], threads: int | None) -> None:
        self.work = work
        self.threads = threads

    def __call__(self, cell: C) -> R:
        return self.work(cell, allocated_threads("slurm", self.threads))

    def checkpoint(self, cell: C) -> Any:
        import submitit  # optional extra, inside the job

        return submitit.helpers.DelayedSubmission(self, cell)


def _slurm(config: ExecutorConfig, work: Callable[[C, int], R], cells: list[C], describe: Callable[[C], str],
           log_dir: Path) -> Iterator[tuple[C, R]]:
    """The cells as one Slurm job array through submitit (its ``SUBMITIT_EXECUTOR=local`` runs them as
    local processes instead); each task's output goes to ``log_dir/<job id>_<index>_log.out|err``."""
    import submitit  # optional extra

    executor = submitit.AutoExecutor(folder=str(log_dir / "%j"), cluster=config.submitit_cluster)
    local = config.submitit_cluster != "slurm"
    executor.update_parameters(name="dahash", timeout_min=config.slurm_time, cpus_per_task=config.cpus or 1,
                               gpus_per_node=config.gpus, slurm_partition=config.slurm_partition,
                               slurm_account=config.slurm_account, slurm_qos=config.slurm_qos,
                               slurm_mem=config.slurm_mem)
    # On a cluster the allocation says; local jobs share this machine's free cores.
    threads = None if not local else (config.cpus or threads_per_worker(config.workers))
    jobs = executor.map_array(SlurmCell(work, threads), cells)
    logging.getLogger(__name__).info("submitted %d cell(s) as job %s; logs in %s", len(jobs),
                                     jobs[0].job_id.split("_")[0], log_dir)
    by_job = {id(job): cell for job, cell in zip(jobs, cells)}
    try:
        for job in submitit.helpers.as_completed(jobs, poll_frequency=LOCAL_POLL_S if local else SLURM_POLL_S):
            cell = by_job[id(job)]
            try:
                result = job.result()
            except Exception as exc:  # noqa: BLE001 - named and re-raised as one line
                raise _failed(config, f"{describe(cell)} (job {job.job_id}, log {job.paths.stderr})", exc) from exc
            yield cell, result
    except BaseException:
        for job in jobs:
            if not job.done():
                job.cancel(check=False)
        raise
