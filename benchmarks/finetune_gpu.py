"""Fine-tuning on a GPU: NoDA and DAH on one Office-Caltech-10 task, end to end next to heads on frozen features.

Usage: python benchmarks/finetune_gpu.py [--data-root ../shared/data/office_caltech_10] [--task A:W]
       [--epochs 60] [--methods NoDA DAH] [--variants frozen-features finetune-fixed [finetune-old]]
       [--out runs/finetune_gpu] [--set KEY=VALUE ...]

Variants (benchmarks/finetune_vs_frozen.py, docs/finetuning.md): ``frozen-features`` trains the head
on the backbone's cached features; ``finetune-fixed`` trains backbone and head end to end with the
backbone's BatchNorms on their pretrained statistics and no stochastic depth (the defaults);
``finetune-old`` with batch statistics and stochastic depth (the behaviour before the fix). Every
run has the same epochs and seed; every other setting is the library's default unless given with
--set. Prints one JSON line per run and a table: source accuracy (eq. 6 on the source), target
accuracy, mAP, training images/s, time and peak GPU memory.

Exits with status 0 and a message on a machine without CUDA. Under torchrun (several GPUs), rank 0
reports.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_vs_frozen import METHODS, VARIANTS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "office_caltech_10"))
    parser.add_argument("--task", default="A:W")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--variants", nargs="+", default=["frozen-features", "finetune-fixed"], choices=list(VARIANTS))
    parser.add_argument("--out", default=str(REPO / "runs" / "finetune_gpu"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides (YAML values)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print(f"no CUDA GPU visible to torch {torch.__version__}: nothing to measure (this benchmark needs a GPU)")
        return 0
    from dahash.training.config import TrainConfig
    from dahash.runs.run import run

    source, target = args.task.split(":")
    world = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's processes, one GPU each
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    base = {"data_root": os.path.abspath(args.data_root), "source": source, "target": target, "device": "cuda",
            "epochs": args.epochs, "num_workers": min(16, max(1, (os.cpu_count() or 1) // world)),
            "extract_batch_size": 128, **overrides}
    if world > 1:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if main_rank:
        probe = TrainConfig.from_dict(base, source="--set")
        print(f"{torch.cuda.get_device_name(0)} x {world}, torch {torch.__version__}, {os.cpu_count()} CPU cores; "
              f"{args.task}, {args.epochs} epochs, backbone {probe.backbone}, amp {probe.amp}, "
              f"compile {probe.compile}", flush=True)
    rows: list[dict] = []
    for method in args.methods:
        for variant in args.variants:
            values = {**base, **METHODS[method], **VARIANTS[variant]}
            config = TrainConfig.from_dict(values, source="--set")
            config = replace(config, out=str(Path(args.out) / f"{method}-{variant}"))
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            metrics = run(config, resume=True, progress=False)
            wall = time.perf_counter() - t0
            if metrics is None:  # a torchrun rank other than 0: rank 0 reports
                continue
            with open(Path(config.out) / "history.csv") as f:
                history = list(csv.DictReader(f))
            seconds = [float(h["seconds"]) for h in history]
            steady = seconds[1:] or seconds  # the first epoch includes worker start-up and cuDNN autotuning
            images_per_s = None
            if config.finetune:
                # Images per epoch: every step holds n_classes * k source and as many target images.
                per_epoch = (-(-metrics["n_source"] // (metrics["n_classes"] * config.k))
                             * 2 * metrics["n_classes"] * config.k)
                images_per_s = per_epoch / (sum(steady) / len(steady))
            rows.append({"method": method, "variant": variant, "epochs": config.epochs,
                         "source_accuracy": metrics["source_accuracy"], "target_accuracy": metrics["target_accuracy"],
                         "target_accuracy_codes": metrics["target_accuracy_codes"], "map": metrics["map"],
                         "train_images_per_s": images_per_s, "train_seconds": sum(seconds), "wall_seconds": wall,
                         "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30, "gpus": world})
            print(json.dumps(rows[-1]), flush=True)
    if not rows:
        return 0
    print(f"\n{args.task}, {args.epochs} epochs, seed {base.get('seed', 0)}:")
    print("| method | training | source acc. (%) | target acc. (%) | acc., codes (%) | mAP | train images/s | "
          "train time (s) | wall (s) | peak GPU memory (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        speed = f"{r['train_images_per_s']:.0f}" if r["train_images_per_s"] else "-"
        print(f"| {r['method']} | {r['variant']} | {r['source_accuracy']:.2f} | {r['target_accuracy']:.2f} | "
              f"{r['target_accuracy_codes']:.2f} | {r['map']:.3f} | {speed} | {r['train_seconds']:.0f} | "
              f"{r['wall_seconds']:.0f} | {r['peak_gpu_memory_gib']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
