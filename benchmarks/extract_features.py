"""Feature extraction throughput: full pipeline (decode + preprocess + model) vs the model alone.

For every (torch threads, DataLoader workers) setting, extracts the features of one image domain
into a fresh temporary cache and reports images/s of the whole pipeline, the model-only
throughput on random input measured just before it with the same thread setting, their ratio,
and the time of a second, fully cached call.

Usage: python benchmarks/extract_features.py [DOMAIN_DIR] [--backbone efficientnet_lite0]
       [--batch-size 8 32] [--workers 0 1 2] [--threads 2 1] [--model-images 160]
DOMAIN_DIR defaults to ../shared/data/office_caltech_10/webcam relative to the repository root.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from dahash.images.backbones import DEFAULT_BACKBONE, load_backbone
from dahash.images.extract import extract_features, model_only_throughput
from dahash.images.loading import is_image_file

REPO = Path(__file__).resolve().parents[1]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domain", nargs="?", type=Path,
                        default=REPO.parent / "shared" / "data" / "office_caltech_10" / "webcam")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--model-images", type=int, default=160,
                        help="images per model-only measurement (after one warm-up batch)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    paths = sorted(p for p in args.domain.rglob("*") if p.is_file() and is_image_file(p))
    if not paths:
        raise SystemExit(f"{args.domain}: no images found")
    backbone = load_backbone(args.backbone, args.weights)
    print(f"{len(paths)} images from {args.domain}; backbone {backbone.name} ({backbone.weights_id}), "
          f"device {args.device}")
    print(f"machine: {_cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    print("| batch | torch threads | workers | pipeline img/s | model-only img/s | ratio | cached 2nd call (s) |")
    print("|---|---|---|---|---|---|---|")
    for batch in args.batch_size:
        for threads in args.threads:
            torch.set_num_threads(threads)
            for workers in args.workers:
                n_batches = max(1, args.model_images // batch)
                model_ips = model_only_throughput(backbone, batch, n_batches, device=args.device)
                with tempfile.TemporaryDirectory(prefix="dahash-bench-") as cache:
                    t0 = time.perf_counter()
                    feats, kept, failures = extract_features(paths, backbone, cache_dir=Path(cache),
                                                             batch_size=batch, num_workers=workers,
                                                             progress=False, device=args.device)
                    first = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    extract_features(paths, backbone, cache_dir=Path(cache), batch_size=batch,
                                     num_workers=workers, progress=False, device=args.device)
                    second = time.perf_counter() - t0
                pipe_ips = len(paths) / first
                print(f"| {batch} | {threads} | {workers} | {pipe_ips:.1f} | {model_ips:.1f} "
                      f"| {pipe_ips / model_ips:.0%} | {second:.2f} |", flush=True)
    print(f"features {feats.shape}, {len(failures)} unreadable; load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
