"""Data-parallel head training on CPU: one process against torchrun with 2 processes (gloo), steps/s
and the agreement of the two runs' losses and weights.

Usage: python benchmarks/distributed.py [--data-root DIR] [--task A:W] [--epochs 20] [--k 5]
       [--cache-dir /tmp/dahash_cache] [--out benchmarks/results] [--quick]

Runs ``dahash train`` (head on cached efficientnet_lite0 features, the library's defaults: 64
bits, fc6/fc7 of 256) three ways: one process with 1 thread, one process with 2 threads, and
``torchrun --nproc-per-node 2`` with 1 thread per process. Epoch times come from each run's
history.csv (the first epoch, with its warm-up, left out). On two cores the distributed run
cannot be faster than two threads in one process: it shows what the gathers and the gradient
all-reduce cost. The loss and weight differences show how far float rounding carries: any change
of summation order (two threads instead of one, or two processes) starts at ~1e-7 and the
training amplifies it, so the epoch-1 column is the one that checks equivalence (the exact check
is tests/training/test_distributed.py).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import free_port, machine, write_results

REPO = Path(__file__).resolve().parents[1]



def history(run: Path) -> list[dict[str, float]]:
    with open(run / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "office_caltech_10"))
    parser.add_argument("--task", default="A:W")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--cache-dir", default=os.environ.get("DAHASH_CACHE", "/tmp/dahash_cache"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--quick", action="store_true", help="3 epochs")
    args = parser.parse_args()
    if args.quick:
        args.epochs = 3

    import torch

    from dahash.experiments.demo import markdown_table

    line = machine(torch=torch.__version__)
    print(line, flush=True)
    source, target = args.task.split(":")
    common = ["train", "--data-root", args.data_root, "--source", source, "--target", target, "--epochs",
              str(args.epochs), "--k", str(args.k), "--cache-dir", args.cache_dir, "--quiet"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    setups = [("1 process, 1 thread", [sys.executable, "-m", "dahash"], ["--num-threads", "1"]),
              ("1 process, 2 threads", [sys.executable, "-m", "dahash"], ["--num-threads", "2"]),
              ("torchrun, 2 processes x 1 thread",
               [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                "--master-port", str(free_port()), "-m", "dahash"], ["--num-threads", "1"])]
    rows, runs = [], {}
    with tempfile.TemporaryDirectory(prefix="dahash-ddp-bench-") as tmp:
        for name, launcher, extra in setups:
            out = Path(tmp) / name.replace(" ", "_").replace(",", "")
            t0 = time.perf_counter()
            subprocess.run([*launcher, *common, *extra, "--out", str(out)], check=True, env=env,
                           stdout=subprocess.DEVNULL, timeout=3600)
            wall = time.perf_counter() - t0
            hist = history(out)
            runs[name] = (hist, torch.load(out / "model.pt", weights_only=False)["model"])
            steady = [h["seconds"] for h in hist[1:]] or [hist[0]["seconds"]]
            rows.append({"setup": name, "epoch_s": float(np.median(steady)), "wall_s": wall,
                         "final_total_loss": hist[-1]["total"]})
            print(f"{name}: {rows[-1]['epoch_s'] * 1000:.0f} ms/epoch, wall {wall:.1f} s", flush=True)
    base_hist, base_model = runs[setups[0][0]]
    for row in rows:
        hist, model = runs[row["setup"]]
        row["speedup_vs_1_thread"] = rows[0]["epoch_s"] / row["epoch_s"]
        terms = [k for k in base_hist[0] if k not in ("seconds", "epoch", "lr")]
        row["epoch1_loss_rel_diff"] = max(abs(hist[0][k] - base_hist[0][k]) / max(abs(base_hist[0][k]), 1e-3)
                                          for k in terms)
        row["max_loss_rel_diff"] = max(abs(h[k] - b[k]) / max(abs(b[k]), 1e-3) for h, b in zip(hist, base_hist)
                                       for k in terms)
        row["max_weight_diff_rel"] = max(float((model[k].float() - v.float()).abs().max() / max(float(v.float().abs().max()), 1e-9))
                                         for k, v in base_model.items() if v.is_floating_point())
    table = markdown_table(["setup", "ms / epoch", "speed-up vs 1 thread", "wall s (incl. start-up, evaluation)",
                            "final loss", "rel. loss diff vs 1 thread, epoch 1", "same, any epoch",
                            "rel. weight diff vs 1 thread, end"],
                           [[r["setup"], f"{r['epoch_s'] * 1000:.0f}", f"{r['speedup_vs_1_thread']:.2f}x",
                             f"{r['wall_s']:.1f}", f"{r['final_total_loss']:.4g}", f"{r['epoch1_loss_rel_diff']:.1e}",
                             f"{r['max_loss_rel_diff']:.1e}", f"{r['max_weight_diff_rel']:.1e}"] for r in rows])
    text = (f"# Data-parallel head training on CPU\n\n{line}\n\n{args.task}, {args.epochs} epochs, k {args.k}, "
            f"library defaults otherwise (efficientnet_lite0 features from the cache).\n\n{table}\n")
    write_results(args.out, "distributed", text, rows)
    print("\n" + table)


if __name__ == "__main__":
    main()
