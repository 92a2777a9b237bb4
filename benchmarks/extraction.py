"""Feature extraction throughput: images/s of the whole pipeline (hash, decode, preprocess, model) vs the model alone.

Extracts efficientnet_lite0 features of Office-Caltech-10 images with ``cache_dir=None`` (every
image decoded and run through the model) and reports, for several (torch threads, DataLoader
workers) settings:

* pipeline images/s (``dahash.images.extract.extract_features``), model-only images/s
  (``model_only_throughput``: random input, same batch size and threads) and their ratio;
* decode + preprocess images/s in one process without the model (the data pipeline's own cost);
* "before" rows: the same with the unfused model, i.e. ``Backbone.inference`` replaced by
  the identity, which is what extraction ran before the profiling pass (BatchNorm folding);
* exponents: pipeline time when the number of images doubles, model time when the batch doubles.

Usage: python benchmarks/extraction.py [--quick] [--out benchmarks/results]
       [--domains dslr webcam] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import best_of, exponent, machine, write_results  # noqa: E402

from dahash.images.backbones import DEFAULT_BACKBONE, Backbone, load_backbone  # noqa: E402
from dahash.images.extract import extract_features, model_only_throughput  # noqa: E402
from dahash.images.loading import is_image_file, open_image  # noqa: E402
from dahash.images.preprocess import EvalTransform  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FUSED = Backbone.inference


def set_fused(on: bool) -> None:
    """Run extraction with the BatchNorm-folded model (after) or the model as loaded (before)."""
    Backbone.inference = FUSED if on else (lambda self: self.model)


def pipeline_ips(paths, backbone, batch: int, workers: int, threads: int) -> float:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    feats, kept, failures = extract_features(paths, backbone, cache_dir=None, batch_size=batch,
                                             num_workers=workers, progress=False)
    seconds = time.perf_counter() - t0
    assert len(kept) == len(paths) and not failures
    return len(paths) / seconds


def model_ips(backbone, batch: int, threads: int, n_images: int, repeats: int) -> float:
    torch.set_num_threads(threads)
    n_batches = max(1, n_images // batch)
    return max(model_only_throughput(backbone, batch, n_batches) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="48 images, fewer settings (seconds)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "office_caltech_10"))
    parser.add_argument("--domains", nargs="+", default=["dslr", "webcam"])
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward (dahash's default 16)")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    line = machine(torch=torch.__version__, default_threads=str(default_threads))
    print(f"machine: {line}")
    t_start = time.perf_counter()
    paths = sorted(p for d in args.domains for p in (Path(args.data_root) / d).rglob("*")
                   if p.is_file() and is_image_file(p))
    if args.quick:
        paths = paths[:48]
    backbone = load_backbone(args.backbone)
    batch = args.batch_size
    model_images = 64 if args.quick else 160
    repeats = 1 if args.quick else 3
    settings = [(default_threads, 2), (default_threads, 0), (1, 2), (1, 0)]
    if args.quick:
        settings = settings[:2]
    settings = list(dict.fromkeys(settings))
    rows: list[dict] = []

    # The data pipeline alone: decode + preprocess in this process.
    transform = EvalTransform(backbone.preprocessing)
    sub = paths[: min(len(paths), 96)]
    decode_s = best_of(lambda: [transform(open_image(p)) for p in sub], repeats=2 if not args.quick else 1,
                       warmup=0)
    decode_ips = len(sub) / decode_s
    rows.append({"what": "decode+preprocess", "images": len(sub), "images_per_s": decode_ips})

    table = ["| model | torch threads | workers | pipeline img/s | model-only img/s | pipeline / model-only |",
             "|---|---|---|---|---|---|"]
    results = {}
    for fused in (False, True):
        set_fused(fused)
        for threads in dict.fromkeys(t for t, _ in settings):
            m = model_ips(backbone, batch, threads, model_images, repeats)
            for t, workers in settings:
                if t != threads:
                    continue
                p = pipeline_ips(paths, backbone, batch, workers, threads)
                results[(fused, threads, workers)] = (p, m)
                name = "fused (after)" if fused else "unfused (before)"
                table.append(f"| {name} | {threads} | {workers} | {p:.1f} | {m:.1f} | {p / m:.0%} |")
                rows.append({"what": "pipeline", "fused": fused, "threads": threads, "workers": workers,
                             "batch": batch, "images": len(paths), "pipeline_ips": p, "model_ips": m})
                print(table[-1], flush=True)
    set_fused(True)
    torch.set_num_threads(default_threads)

    # Scaling: pipeline time vs images (default setting), model time vs batch size.
    ns = [len(paths) // 4, len(paths) // 2, len(paths)]
    pipe_s = [len(paths[:n]) / pipeline_ips(paths[:n], backbone, batch, 2, default_threads) for n in ns]
    batches = [batch // 2, batch, batch * 2]
    batch_s = [b / model_ips(backbone, b, default_threads, model_images, repeats) for b in batches]
    e_images, e_batch = exponent(ns, pipe_s), exponent(batches, batch_s)
    for n, s in zip(ns, pipe_s):
        rows.append({"what": "scaling images", "images": n, "seconds": s})
    for b, s in zip(batches, batch_s):
        rows.append({"what": "scaling batch", "batch": b, "seconds_per_batch": s})
    rows.append({"what": "exponents", "pipeline_vs_images": e_images, "model_batch_time_vs_batch": e_batch})
    scale_md = ["| doubling | sizes | seconds | exponent |", "|---|---|---|---|",
                f"| images, pipeline ({default_threads} threads, 2 workers) | {', '.join(map(str, ns))} | "
                f"{', '.join(f'{s:.2f}' for s in pipe_s)} | {e_images:.2f} |",
                f"| batch size, model-only time per batch | {', '.join(map(str, batches))} | "
                f"{', '.join(f'{s:.3f}' for s in batch_s)} | {e_batch:.2f} |"]
    before = results[(False, default_threads, 2)]
    after = results[(True, default_threads, 2)]
    wall = time.perf_counter() - t_start
    md = "\n".join([
        "# Feature extraction",
        "",
        f"{len(paths)} images ({' + '.join(args.domains)}), backbone {backbone.name}, batch {batch}, no cache. "
        f"Model-only: best of {repeats} runs of {max(1, model_images // batch) * batch} random images "
        "after one warm-up batch; pipeline: one cold call of extract_features.",
        "",
        f"Machine: {line}",
        "",
        *table,
        "",
        f"Decode + preprocess alone (one process, {len(sub)} images): {decode_ips:.1f} img/s.",
        "",
        f"Default setting ({default_threads} threads, 2 workers): pipeline {before[0]:.1f} -> {after[0]:.1f} img/s "
        f"({after[0] / before[0]:.2f}x), model-only {before[1]:.1f} -> {after[1]:.1f} img/s "
        f"({after[1] / before[1]:.2f}x) from BatchNorm folding.",
        "",
        *scale_md,
        "",
        f"Wall time {wall:.0f} s; load average at end {os.getloadavg()[0]:.2f}.",
        "",
    ])
    print(md)
    write_results(args.out, "extraction_quick" if args.quick else "extraction", md, rows)


if __name__ == "__main__":
    main()
