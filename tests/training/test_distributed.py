"""Data-parallel training (:mod:`dahash.training.distributed`): N processes compute the loss, the
gradients and the trained weights of one process with the whole batch.

Two gloo processes on CPU, started the way torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT): first one step of a DAH head with BatchNorm against the single-process
step, then ``torchrun --nproc-per-node 2 -m dahash train`` against ``dahash train``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tiny_runs import free_port
from dahash.cli import main
from dahash.losses import DAHLoss
from dahash.models import DAHHead
from dahash.training.distributed import Distributed, GlobalBatchNorm, Shard, global_batchnorm, local_batchnorm

N_CLASSES, K, DIM, BITS = 5, 3, 12, 8

if not torch.distributed.is_available():  # pragma: no cover - every torch wheel on PyPI has it
    pytest.skip("torch was built without torch.distributed", allow_module_level=True)


def _env(rank: int, world: int, port: int) -> dict[str, str]:
    return {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}


# ----------------------------------------------------------------------------------- the shard

@pytest.mark.parametrize("n_source, n_target, world", [(15, 15, 2), (15, 15, 4), (10, 7, 3), (3, 3, 2)])
def test_shard_deals_every_row_once_and_order_restores_the_batch(n_source: int, n_target: int, world: int) -> None:
    shard = Shard(n_source, n_target, world)
    held = np.concatenate([shard.rows(r) for r in range(world)])
    assert sorted(held.tolist()) == list(range(n_source + n_target))
    np.testing.assert_array_equal(held[shard.order()], np.arange(n_source + n_target))
    assert sum(shard.sizes()) == n_source + n_target and max(shard.sizes()) - min(shard.sizes()) <= 2
    # Each rank's rows are its source rows, then its target rows.
    for r in range(world):
        rows = shard.rows(r)
        assert (rows[: len(shard.source_rows(r))] < n_source).all() and (rows[len(shard.source_rows(r)):] >= n_source).all()


def test_round_robin_gives_every_rank_every_class_when_k_allows() -> None:
    labels = np.repeat(np.arange(N_CLASSES), 4)  # the K-per-class layout, K = 4
    shard = Shard(len(labels), len(labels), 2)
    for r in range(2):
        assert np.bincount(labels[shard.source_rows(r)], minlength=N_CLASSES).tolist() == [2] * N_CLASSES


def test_global_batchnorm_swaps_back_and_forth_with_the_same_state() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Sequential(nn.Conv2d(6, 3, 1), nn.BatchNorm2d(3)))
    net[1].lr_mult = 0.1
    reference = nn.BatchNorm1d(6)
    reference.load_state_dict(net[1].state_dict())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    converted = global_batchnorm(net, Distributed(0, 1, 0))
    assert isinstance(converted[1], GlobalBatchNorm) and isinstance(converted[2][1], GlobalBatchNorm)
    assert converted[1].lr_mult == 0.1
    # Without a process group (one process) it is plain BatchNorm, in training and in eval mode.
    x = torch.randn(8, 6)
    for mode in (True, False):
        converted[1].train(mode), reference.train(mode)
        torch.testing.assert_close(converted[1](x), reference(x))
    back = local_batchnorm(converted)
    assert type(back[1]) is nn.BatchNorm1d and type(back[2][1]) is nn.BatchNorm2d and back[1].lr_mult == 0.1
    assert back.state_dict().keys() == before.keys()
    torch.testing.assert_close(back[1].running_mean, reference.running_mean)


# ------------------------------------------------------------------- one step, two processes

STEP = textwrap.dedent("""
    import sys
    import torch
    from torch.nn.parallel import DistributedDataParallel
    from dahash.losses import DAHLoss
    from dahash.models import DAHHead
    from dahash.training.distributed import Shard, gather_rows, global_batchnorm, init_distributed, shutdown

    folder = sys.argv[1]
    ctx = init_distributed(torch.device("cpu"))
    batch = torch.load(folder + "/batch.pt")
    torch.manual_seed(0)
    model = global_batchnorm(DAHHead(batch["x"].shape[1], bits=batch["bits"], hidden=(16, 16)), ctx)
    net = DistributedDataParallel(model)
    shard = Shard(batch["n_source"], len(batch["x"]) - batch["n_source"], ctx.world_size)
    out = net(batch["x"][torch.from_numpy(shard.rows(ctx.rank))])
    u = gather_rows(out.u, shard, ctx)
    taps = {k: gather_rows(v, shard, ctx) for k, v in out.taps.items()}
    terms = DAHLoss(batch["n_classes"])(u, taps, batch["labels"], batch["n_source"],
                                        generator=torch.Generator().manual_seed(1))
    terms["total"].backward()
    torch.save({"terms": {k: v.item() for k, v in terms.items()},
                "grads": {n: p.grad for n, p in model.named_parameters()},
                "buffers": dict(model.named_buffers())}, f"{folder}/rank{ctx.rank}.pt")
    shutdown(ctx)
""")


def test_two_processes_compute_the_loss_and_gradients_of_the_whole_batch(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n_source = N_CLASSES * K  # 15: the two ranks hold 8 + 8 and 7 + 7 rows
    labels = torch.from_numpy(np.repeat(np.arange(N_CLASSES), K))
    centers = rng.normal(size=(N_CLASSES, DIM)) * 2
    x = np.concatenate([centers[labels.numpy()], centers[rng.integers(0, N_CLASSES, n_source)] + 0.5])
    x = torch.from_numpy((x + rng.normal(size=x.shape)).astype(np.float32))
    torch.save({"x": x, "labels": labels, "n_source": n_source, "n_classes": N_CLASSES, "bits": BITS},
               tmp_path / "batch.pt")

    # One process, the whole batch.
    torch.manual_seed(0)
    model = DAHHead(DIM, bits=BITS, hidden=(16, 16))
    out = model(x)
    terms = DAHLoss(N_CLASSES)(out.u, out.taps, labels, n_source, generator=torch.Generator().manual_seed(1))
    terms["total"].backward()

    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", STEP, str(tmp_path)], env=_env(r, 2, port),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    for p in procs:
        output = p.communicate(timeout=120)[0]
        assert p.returncode == 0, output
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for name, value in terms.items():
            assert got["terms"][name] == pytest.approx(value.item(), rel=1e-5, abs=1e-4), name
        assert terms["mmd"].item() != 0 and terms["entropy"].item() != 0  # every term takes part
        for name, param in model.named_parameters():
            # float32 sums in another order agree to ~1e-7 of the layer's largest gradient. fc8's
            # bias feeds BatchNorm, so its exact gradient is 0 and what both runs hold is rounding.
            layer = name.rsplit(".", 1)[0]
            scale = max(float(p.grad.abs().max()) for n, p in model.named_parameters() if n.startswith(layer + "."))
            torch.testing.assert_close(got["grads"][name], param.grad, rtol=1e-5, atol=1e-5 * scale, msg=name)
        for name, buffer in model.named_buffers():
            torch.testing.assert_close(got["buffers"][name], buffer, rtol=1e-5, atol=1e-6, msg=name)


# ------------------------------------------------------------------ torchrun -m dahash train

def _task(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    means = rng.normal(size=(N_CLASSES, 24)) * 3
    paths = []
    for name, offset in (("source", 0.0), ("target", 0.5)):
        y = np.repeat(np.arange(N_CLASSES), 30)
        X = means[y] + rng.normal(size=(len(y), 24)) + offset
        path = folder / f"{name}.npz"
        np.savez(path, X=X.astype(np.float32), y=y, classes=np.array(list("abcde")))
        paths.append(path)
    return paths[0], paths[1]


def _train_args(source: Path, target: Path, out: Path) -> list[str]:
    # 3 epochs of 10 steps of 15 + 15 rows. Training amplifies rounding: in this run, initial weights
    # perturbed by 1e-7 (relative) end 2e-5 away and move the logged losses by 6e-5 (relative); at
    # lr 1e-2 by 3e-4. Hence lr 1e-3 and tolerances of 2e-4: a wrong gradient is off by far more.
    return ["train", "--gamma", "5000", "--source-features", str(source), "--target-features", str(target), "--bits", "16",
            "--hidden", "32", "32", "--k", str(K), "--epochs", "3", "--lr-start", "0.001", "--lr-end", "0.0001",
            "--num-threads", "1", "--schedule", "paper", "--out", str(out), "--quiet"]


def _torchrun(args: list[str], port: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "dahash", *args],
                          env=env, capture_output=True, text=True, timeout=300)


def test_torchrun_two_processes_train_the_single_process_model(tmp_path: Path) -> None:
    source, target = _task(tmp_path)
    assert main(_train_args(source, target, tmp_path / "one")) == 0
    done = _torchrun(_train_args(source, target, tmp_path / "two"), free_port())
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("results written to") == 1  # rank 0 reports, rank 1 stays quiet

    def history(run: Path) -> list[dict[str, float]]:
        import csv

        with open(run / "history.csv") as f:
            return [{k: float(v) for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]

    one, two = history(tmp_path / "one"), history(tmp_path / "two")
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=2e-4, abs=1e-3), (key, a, b)
    weights = [torch.load(tmp_path / run / "model.pt", weights_only=False)["model"] for run in ("one", "two")]
    for name, value in weights[0].items():
        scale = float(value.float().abs().max()) or 1.0
        torch.testing.assert_close(weights[1][name].float(), value.float(), rtol=2e-4, atol=2e-4 * scale,
                                   msg=name)
    results = [json.loads((tmp_path / run / "results.json").read_text())["metrics"] for run in ("one", "two")]
    assert results[1]["world_size"] == 2
    assert results[1]["target_accuracy"] == pytest.approx(results[0]["target_accuracy"], abs=1.0)

    # Started again on the finished run without --resume: every rank stops with rank 0's error.
    again = _torchrun(_train_args(source, target, tmp_path / "two"), free_port())
    assert again.returncode != 0
    assert "already holds a run" in again.stdout + again.stderr


def test_torchrun_fine_tunes_backbone_and_head_with_batch_wide_batchnorm(tmp_path: Path) -> None:
    """The image path: each rank decodes and augments its rows of every batch; EfficientNet's ~50
    BatchNorms use the statistics of the whole batch. Stochastic depth draws per rank, so this run
    is not compared number for number with one process."""
    from test_finetune import _tree

    _tree(tmp_path / "images")
    out = tmp_path / "run"
    done = _torchrun(["train", "--gamma", "5000", "--finetune", "--data-root", str(tmp_path / "images"), "--source", "photos",
                      "--target", "sketches", "--bits", "8", "--hidden", "16", "16", "--k", "2", "--epochs", "1",
                      "--num-workers", "0", "--device", "cpu", "--extract-batch-size", "4", "--num-threads", "1",
                      "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--quiet"], free_port())
    assert done.returncode == 0, done.stdout + done.stderr
    state = torch.load(out / "model.pt", weights_only=False)
    assert "backbone" in state and all(torch.isfinite(v.float()).all() for v in state["backbone"].values())
    metrics = json.loads((out / "results.json").read_text())["metrics"]
    assert metrics["world_size"] == 2 and metrics["n_source"] == 4
