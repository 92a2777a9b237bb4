"""End-to-end fine-tuning on a GPU: NoDA and DAH on one Office-Caltech-10 task, images/s and peak memory.

Usage: python benchmarks/finetune_gpu.py [--data-root ../shared/data/office_caltech_10] [--task A:W]
       [--epochs 300] [--methods NoDA DAH] [--out runs/finetune_gpu] [--set KEY=VALUE ...]

Exits with status 0 and a message on a machine without CUDA. Every setting is the library's
default (the paper's schedule: 300 epochs, lr 1e-4 -> 1e-5, backbone at x0.1) unless given with --set.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
METHODS = {"NoDA": {"gamma": 0.0, "eta": 0.0}, "DAH": {}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "office_caltech_10"))
    parser.add_argument("--task", default="A:W")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", default=str(REPO / "runs" / "finetune_gpu"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides (YAML values)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print(f"no CUDA GPU visible to torch {torch.__version__}: nothing to measure (this benchmark needs a GPU)")
        return 0
    from dahash.config import TrainConfig
    from dahash.evaluate import run

    source, target = args.task.split(":")
    world = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's processes, one GPU each
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    base = TrainConfig.from_dict({"data_root": os.path.abspath(args.data_root), "source": source, "target": target,
                                  "finetune": True, "device": "cuda", "epochs": args.epochs,
                                  "num_workers": min(16, max(1, (os.cpu_count() or 1) // world)), "extract_batch_size": 128,
                                  **overrides}, source="--set")
    if world > 1:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{torch.cuda.get_device_name(0)} x {world}, torch {torch.__version__}, {os.cpu_count()} CPU cores; "
              f"{args.task}, {args.epochs} epochs, backbone {base.backbone}, amp {base.amp}, "
              f"compile {base.compile}")
    rows: list[dict] = []
    for method in args.methods:
        config = replace(base, out=str(Path(args.out) / method), **METHODS[method])
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        metrics = run(config, resume=True, progress=False)
        wall = time.perf_counter() - t0
        if metrics is None:  # a torchrun rank other than 0: rank 0 reports
            continue
        with open(Path(config.out) / "history.csv") as f:
            history = list(csv.DictReader(f))
        # Images per epoch: every step holds n_classes * k source and as many target images.
        per_epoch = -(-metrics["n_source"] // (metrics["n_classes"] * config.k)) * 2 * metrics["n_classes"] * config.k
        seconds = [float(h["seconds"]) for h in history]
        steady = seconds[1:] or seconds  # the first epoch includes worker start-up and cuDNN autotuning
        rows.append({"method": method, "target_accuracy": metrics["target_accuracy"],
                     "target_accuracy_codes": metrics["target_accuracy_codes"], "map": metrics["map"],
                     "train_images_per_s": per_epoch / (sum(steady) / len(steady)),
                     "train_seconds": sum(seconds), "wall_seconds": wall,
                     "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30, "gpus": world})
        print(json.dumps(rows[-1]), flush=True)
    if not rows:
        return 0
    print("\n| method | target acc. (%) | acc., codes (%) | mAP | train images/s | train time (s) | peak GPU memory (GiB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['target_accuracy']:.2f} | {r['target_accuracy_codes']:.2f} | {r['map']:.3f} | "
              f"{r['train_images_per_s']:.0f} | {r['train_seconds']:.0f} | {r['peak_gpu_memory_gib']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
