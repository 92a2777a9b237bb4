"""``dahash reproduce`` on a Dask LocalCluster, a local Ray runtime and submitit's local executor: the
same results as the local pool, a worker killed mid-cell, and two drivers on one --out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dahash.cli import main
from dahash.executors import ExecutorConfig
from dahash.experiments import reproduce as rep
from dahash.experiments.reproduce import ReproduceConfig

METHODS = ["CORAL", "DAH"]
TASKS = ["amazon:webcam", "W:D"]
CELLS = [f"cells/{m}/{t}/seed0" for m in METHODS for t in ("A_W", "W_D")]


def _config(root: Path, out: Path) -> ReproduceConfig:
    """2 tasks x 2 methods, one seed: a shallow cell and a 4-epoch deep cell (checkpointed every epoch) per task."""
    return ReproduceConfig(data_root=str(root), out=str(out), dataset="office31", methods=list(METHODS),
                           tasks=list(TASKS), seeds=1, bits=8, cache_dir=str(root.parent / "cache"),
                           overrides={"epochs": 4, "hidden": [16, 16], "k": 2})


def _cli_args(root: Path, out: Path, cache: Path | None = None) -> list[str]:
    return ["reproduce", "--data-root", str(root), "--dataset", "office31", "--methods", *METHODS, "--tasks", *TASKS,
            "--seeds", "1", "--bits", "8", "--cache-dir", str(cache or root.parent / "cache"), "--set", "epochs=4",
            "hidden=[16,16]", "k=2", "--out", str(out), "--quiet", "--json"]


def _results(out: Path) -> dict[str, dict]:
    """Every cell's metrics but its training time, and the accuracy table (accuracy.csv); a cell that is
    not whole fails here."""
    results: dict = {"accuracy.csv": (out / "accuracy.csv").read_text()}
    for cell in CELLS:
        saved = json.loads((out / cell / "results.json").read_text())
        assert saved["config"].get("out", str(out / cell)) == str(out / cell)
        results[cell] = {k: v for k, v in saved["metrics"].items() if k != "train_seconds"}
    assert not list(out.glob("cells/*/*/*.partial")) and not list(out.glob("cells/*/*/*.lock"))
    return results


@pytest.fixture(scope="module")
def local(tiny_office31: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The local pool's results and table, one cell at a time on one thread: what every engine must give."""
    out = tmp_path_factory.mktemp("local") / "out"
    rep.reproduce(_config(tiny_office31, out), progress=False, executor=ExecutorConfig(cpus=1))
    return _results(out)


@pytest.mark.integration
def test_dask_gives_the_local_results_even_when_a_worker_is_killed_mid_cell(
        tiny_office31: Path, tmp_path: Path, local: dict[str, dict], capsys: pytest.CaptureFixture[str]) -> None:
    """A 2-process LocalCluster through the CLI; the first deep cell's worker is killed once it has a
    checkpoint: the scheduler reruns the cell on the restarted worker, which takes the dead holder's lock
    and resumes from the staging folder. The tables are the local pool's."""
    out, killed, stop = tmp_path / "out", [], threading.Event()

    def kill_first_deep_cell() -> None:
        while not stop.is_set():
            for staging in out.glob("cells/DAH/*/seed0.partial"):
                owner = staging.with_name("seed0.lock") / "owner.json"
                if (staging / "checkpoint.pt").exists() and owner.exists():
                    pid = json.loads(owner.read_text())["pid"]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_first_deep_cell, daemon=True)
    watcher.start()
    try:
        assert main([*_cli_args(tiny_office31, out), "--executor", "dask", "--workers", "2", "--cpus-per-cell", "1"]) == 0
    finally:
        stop.set()
    summary = json.loads(capsys.readouterr().out)
    assert killed and killed[0] != os.getpid() and (summary["cells"], summary["computed"]) == (4, 4)
    assert _results(out) == local
    assert "on the dask executor" in (out / "accuracy.md").read_text()


@pytest.mark.integration
def test_ray_and_submitit_give_the_local_results(tiny_office31: Path, tmp_path: Path,
                                                 local: dict[str, dict]) -> None:
    """A local Ray runtime (each cell's threads: the CPUs Ray assigned it) and submitit's local
    executor (its jobs' logs under OUT/slurm); a rerun of a finished grid computes nothing."""
    pytest.importorskip("ray")
    ray_out = tmp_path / "ray"
    summary = rep.reproduce(_config(tiny_office31, ray_out), progress=False,
                            executor=ExecutorConfig("ray", workers=2, cpus=1))
    assert summary["computed"] == 4 and _results(ray_out) == local
    slurm_out = tmp_path / "slurm"
    slurm = ExecutorConfig("slurm", cpus=1, submitit_cluster="local")
    assert rep.reproduce(_config(tiny_office31, slurm_out), progress=False, executor=slurm)["computed"] == 4
    assert _results(slurm_out) == local
    assert len(list(slurm_out.glob("slurm/*/*_log.out"))) == 4
    assert rep.reproduce(_config(tiny_office31, slurm_out), progress=False, executor=slurm)["computed"] == 0


DRIVER = """
import json, os, sys
from dahash.experiments import reproduce as rep
real = rep.run_cell
def counted(cell, threads=1):
    with open(sys.argv[2], "a") as log:
        log.write(f"{os.getpid()} {cell.method} {cell.source} {cell.target}\\n")
    return real(cell, threads)
rep.run_cell = counted
from dahash.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.integration
def test_two_drivers_on_one_out_compute_each_cell_once(tiny_office31: Path, tmp_path: Path,
                                                       local: dict[str, dict]) -> None:
    """Two ``dahash reproduce`` started at once on one --out and one empty feature cache: both extract
    the features into it side by side, every cell is computed by one of them, and both print the whole table."""
    out, log, cache = tmp_path / "out", tmp_path / "computed.log", tmp_path / "cache"
    args = [sys.executable, "-c", DRIVER, "", str(log), *_cli_args(tiny_office31, out, cache), "--cpus-per-cell", "1"]
    drivers = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [d.communicate(timeout=300) for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], [o[1][-2000:] for o in outputs]
    computed = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert sorted(cell for _, cell in computed) == sorted(f"{m} {s} {t}" for m in METHODS
                                                          for s, t in (("A", "W"), ("W", "D")))
    summaries = [json.loads(o[0]) for o in outputs]
    assert [s["cells"] for s in summaries] == [4, 4] and sum(s["computed"] for s in summaries) >= 4
    assert _results(out) == local
    assert len(list(cache.rglob("*.npy"))) == 3 * 18 and not list(cache.rglob("*.tmp"))  # whole entries only
