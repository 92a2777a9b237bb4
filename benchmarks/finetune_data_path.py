"""Fine-tuning's data path against the model alone: training images/s of the DataLoader workers
(``augment_on=workers``: decode and augment every draw on the CPU) and of the uint8 tensor cache on
the training device (``augment_on=device``), each as a ratio to the model-only training rate (the
same network, loss, batch and optimizer on random input already on the device), measured in one
run. On a GPU it also samples GPU utilisation (NVML through ``torch.cuda.utilization``).

Usage: python benchmarks/finetune_data_path.py [--device cuda] [--task A:W] [--epochs 3]
       [--per-class 0] [--out benchmarks/results]

Epoch 1 of each path is left out of its rate (worker start-up, cuDNN autotuning); the tensor cache's
one-time decoding is reported on its own. ``--per-class N`` trains on the first N images of every
class (for a quick CPU run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, write_results  # noqa: E402
from finetune_vs_frozen import subset_lists  # noqa: E402

from dahash.images.backbones import load_backbone  # noqa: E402
from dahash.images.tensor_cache import ImageTensorCache  # noqa: E402
from dahash.runs.data import prepare_image_domains  # noqa: E402
from dahash.training.config import TrainConfig  # noqa: E402
from dahash.training.finetune import build_network, finetune_model  # noqa: E402
from dahash.training.trainer import TrainBatch, fit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class Utilisation:
    """Mean GPU utilisation (%) sampled every 0.2 s while in use; None without a GPU or NVML."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples, self._stop = device, [], threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # noqa: BLE001 - no NVML (pynvml) here: utilisation is not reported
                return

    def __enter__(self) -> Utilisation:
        if self.device.type == "cuda":
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def images_per_epoch(config: TrainConfig, n_source: int, n_classes: int) -> int:
    """Every step holds n_classes * k source images and as many target images."""
    return -(-n_source // (n_classes * config.k)) * 2 * n_classes * config.k


def steady_rate(out: Path, per_epoch: int) -> float:
    """Images/s over the epochs after the first, from the run's history.csv."""
    import csv

    with open(out / "history.csv") as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    steady = seconds[1:] or seconds
    return per_epoch / (sum(steady) / len(steady))


def model_only(config: TrainConfig, n_classes: int, steps: int, device: torch.device) -> float:
    """Training images/s of the network and loss on random input already on the device."""
    backbone = load_backbone(config.backbone, config.weights, config.decode)
    net = build_network(config, backbone, n_classes)
    rows = n_classes * config.k
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2 * rows, 3, backbone.preprocessing.crop, backbone.preprocessing.crop, generator=generator)
    x = x.to(device)
    labels = torch.arange(rows) % n_classes
    timed = replace(config, out=None, epochs=2)

    def batches(epoch: int):
        for _ in range(steps):
            yield TrainBatch(x, labels, rows)

    t0 = []

    def batches_timed(epoch: int):
        if epoch == 1:  # the first epoch warms up (allocator, cuDNN autotuning)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0.append(time.perf_counter())
        yield from batches(epoch)

    fit(timed, net, batches_timed, steps, n_classes, device=device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * 2 * rows / (time.perf_counter() - t0[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "office_caltech_10"))
    parser.add_argument("--task", default="A:W")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=0, help="first N images of every class (0: all)")
    parser.add_argument("--num-workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args()
    device = torch.device(args.device)
    source, target = args.task.split(":")
    work = Path(tempfile.mkdtemp(prefix="dahash-data-path-"))
    if args.per_class:
        source, target = subset_lists(args.data_root, source, target, args.per_class, work / "lists")
    base = TrainConfig(data_root=os.path.abspath(args.data_root), source=source, target=target, finetune=True,
                       device=args.device, epochs=args.epochs, num_workers=args.num_workers, seed=0).validate()
    line = machine(torch=torch.__version__, device=torch.cuda.get_device_name(device) if device.type == "cuda"
                   else "cpu", workers=str(args.num_workers))
    print(f"machine: {line}", flush=True)
    src, tgt, _ = prepare_image_domains(base, progress=False)
    n_classes = len(src.classes)
    per_epoch = images_per_epoch(base, len(src), n_classes)

    rows: list[dict] = []
    reference = model_only(base, n_classes, steps=max(3, -(-len(src) // (n_classes * base.k))), device=device)
    rows.append({"path": "model only", "images_per_s": reference, "ratio": 1.0, "gpu_utilisation": None})
    print(f"model only: {reference:.1f} img/s", flush=True)
    backbone = load_backbone(base.backbone, base.weights, base.decode)
    t0 = time.perf_counter()
    cache = ImageTensorCache([*src.paths, *tgt.paths], backbone.preprocessing, device, num_workers=args.num_workers,
                             progress=False)
    cache_seconds, cache_gib = time.perf_counter() - t0, cache.nbytes / 2**30
    del cache
    for path in ("workers", "device"):
        config = replace(base, augment_on=path, out=str(work / path))
        with Utilisation(device) as usage:
            finetune_model(config, src, tgt, load_backbone(base.backbone, base.weights, base.decode), progress=False)
        rate = steady_rate(work / path, per_epoch)
        rows.append({"path": f"augment_on={path}", "images_per_s": rate, "ratio": rate / reference,
                     "gpu_utilisation": usage.mean})
        print(f"augment_on={path}: {rate:.1f} img/s ({rate / reference:.0%} of model only)", flush=True)

    util = ["-" if r["gpu_utilisation"] is None else f"{r['gpu_utilisation']:.0f}%" for r in rows]
    table = ["| data path | training images/s | / model only | GPU utilisation |", "|---|---|---|---|",
             *(f"| {r['path']} | {r['images_per_s']:.1f} | {r['ratio']:.2f} | {u} |" for r, u in zip(rows, util))]
    md = "\n".join([
        "# Fine-tuning data path", "",
        f"{args.task}{f' ({args.per_class} images per class)' if args.per_class else ''}: {len(src)} source + "
        f"{len(tgt)} target images, {per_epoch} images per epoch, {args.epochs} epochs per path (the first left "
        f"out), backbone {base.backbone}, batch {2 * n_classes * base.k}, amp {base.amp} on {device}.", "",
        f"Machine: {line}", "", *table, "",
        f"Tensor cache: {cache_seconds:.1f} s to decode and resize the {len(src) + len(tgt)} images once, "
        f"{cache_gib:.2f} GiB on the device.", "",
    ])
    print(md)
    write_results(args.out, f"finetune_data_path_{device.type}", md, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
