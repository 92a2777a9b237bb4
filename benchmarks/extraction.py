"""Feature extraction throughput: images/s of the whole pipeline (hash, decode, preprocess, model) vs the model alone.

Extracts efficientnet_lite0 features of Office-Caltech-10 images with ``cache_dir=None`` (every
image decoded and run through the model) and reports, for exact and reduced JPEG decoding
(``decode``, docs/usage.md) and several (torch threads, DataLoader workers) settings:

* pipeline images/s (``dahash.images.extract.extract_features``) for several (torch threads,
  DataLoader workers, lanes) settings, against two model-only rates (``model_only_throughput``:
  random input, same batch size): the model on every torch thread (the reference the issue set)
  and the model in lanes of one thread each (the most the model alone does on these cores);
* decode + preprocess images/s in one process without the model (the data pipeline's own cost);
* how far the reduced features are from the exact ones (cosine similarity per image);
* exponents: pipeline time when the number of images doubles, model time when the batch doubles.

``--default-only`` times just the default pipeline (reduced decoding, one lane per torch thread),
its two model-only references and decoding alone (about a minute): for runs that alternate two
versions of the code.

Usage: python benchmarks/extraction.py [--quick | --default-only] [--out benchmarks/results]
       [--domains dslr webcam] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import best_of, exponent, machine, write_results  # noqa: E402

from dahash.images.backbones import DEFAULT_BACKBONE, load_backbone  # noqa: E402
from dahash.images.extract import extract_features, model_only_throughput  # noqa: E402
from dahash.images.loading import is_image_file  # noqa: E402
from dahash.images.preprocess import DECODE_MODES, eval_input  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def pipeline_run(paths, backbone, batch: int, workers: int, threads: int, lanes: int = 1) -> tuple[float, np.ndarray]:
    """(images/s, features) of one cold extract_features call."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    feats, kept, failures = extract_features(paths, backbone, cache_dir=None, batch_size=batch,
                                             num_workers=workers, progress=False, lanes=lanes)
    seconds = time.perf_counter() - t0
    assert len(kept) == len(paths) and not failures
    return len(paths) / seconds, feats


def pipeline_ips(paths, backbone, batch: int, workers: int, threads: int, lanes: int = 1) -> float:
    return pipeline_run(paths, backbone, batch, workers, threads, lanes)[0]


def model_ips(backbone, batch: int, threads: int, n_images: int, repeats: int, lanes: int = 1) -> float:
    torch.set_num_threads(threads)
    n_batches = max(1, n_images // (batch * lanes))
    return max(model_only_throughput(backbone, batch, n_batches, lanes=lanes) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="48 images, fewer settings (seconds)")
    parser.add_argument("--default-only", action="store_true",
                        help="only the default pipeline, its references and decoding alone (a minute)")
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
    modes = ["reduced"] if args.default_only else DECODE_MODES
    backbones = {mode: load_backbone(args.backbone, decode=mode) for mode in modes}
    backbone = backbones["reduced"]
    batch = args.batch_size
    model_images = 64 if args.quick else 320
    repeats = 1 if args.quick else 5
    lanes = default_threads  # extract_features' default on the CPU: one lane per torch thread
    # (torch threads, DataLoader workers, lanes): the default, the default before lanes (workers
    # feeding the model on every thread), decoding in the model's thread, one thread fed by workers.
    settings = [(default_threads, 2, lanes), (default_threads, 2, 1), (default_threads, 0, 1), (1, 2, 1)]
    if args.quick:
        settings = settings[:2]
    if args.default_only:
        settings = settings[:1]
    settings = list(dict.fromkeys(settings))
    rows: list[dict] = []

    # The data pipeline alone: decode + preprocess in this process.
    sub = paths[: min(len(paths), 96)]
    decode_ips = {}
    for mode, net in backbones.items():
        seconds = best_of(lambda: [eval_input(p, net.preprocessing) for p in sub],
                          repeats=2 if not args.quick else 1, warmup=0)
        decode_ips[mode] = len(sub) / seconds
        rows.append({"what": "decode+preprocess", "decode": mode, "images": len(sub), "images_per_s": decode_ips[mode]})

    # The two references: the model on every thread, and in lanes of one thread (its best on these cores).
    model_threads = {t: model_ips(backbone, batch, t, model_images, repeats) for t in dict.fromkeys(t for t, _, _ in settings)}
    model_lanes = model_ips(backbone, batch, default_threads, model_images, repeats, lanes=lanes)
    refs = (f"model-only, {default_threads} threads {model_threads[default_threads]:.1f} img/s; "
            f"model-only, {lanes} lanes of 1 thread {model_lanes:.1f} img/s")
    print(refs, flush=True)
    table = ["| decode | torch threads | workers | lanes | pipeline img/s | model-only img/s (same threads) "
             "| pipeline / model-only | pipeline / model-only in lanes |",
             "|---|---|---|---|---|---|---|---|"]
    results, features = {}, {}
    for threads, workers, n_lanes in settings:
        m = model_threads[threads]
        for mode, net in backbones.items():
            p, features[mode] = pipeline_run(paths, net, batch, workers, threads, n_lanes)
            results[(mode, threads, workers, n_lanes)] = (p, m)
            shown_workers = "-" if n_lanes > 1 else workers  # lanes decode in their own threads
            table.append(f"| {mode} | {threads} | {shown_workers} | {n_lanes} | {p:.1f} | {m:.1f} | {p / m:.0%} | "
                         f"{p / model_lanes:.0%} |")
            rows.append({"what": "pipeline", "decode": mode, "threads": threads, "workers": workers, "lanes": n_lanes,
                         "batch": batch, "images": len(paths), "pipeline_ips": p, "model_ips": m,
                         "model_lanes_ips": model_lanes})
            print(table[-1], flush=True)
    torch.set_num_threads(default_threads)
    after = results[("reduced", default_threads, 2, lanes)]
    if args.default_only:
        md = "\n".join([
            "# Feature extraction, the default pipeline only", "",
            f"{len(paths)} images ({' + '.join(args.domains)}), backbone {backbone.name}, batch {batch}, no cache.", "",
            f"Machine: {line}", "", refs + ".", "", *table, "",
            f"Decode + preprocess alone (one process, {len(sub)} images): reduced {decode_ips['reduced']:.1f} img/s.", "",
            f"Wall time {time.perf_counter() - t_start:.0f} s; load average at end {os.getloadavg()[0]:.2f}.", ""])
        print(md)
        write_results(args.out, "extraction_default", md, rows)
        return
    a, b = features["exact"], features["reduced"]
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    rows.append({"what": "reduced vs exact features", "cosine_min": float(cosine.min()),
                 "cosine_mean": float(cosine.mean())})

    # Scaling: pipeline time vs images (default setting), model time vs batch size.
    ns = [len(paths) // 4, len(paths) // 2, len(paths)]
    pipe_s = [len(paths[:n]) / pipeline_ips(paths[:n], backbone, batch, 2, default_threads, lanes) for n in ns]
    batches = [batch // 2, batch, batch * 2]
    batch_s = [b / model_ips(backbone, b, default_threads, model_images, repeats) for b in batches]
    e_images, e_batch = exponent(ns, pipe_s), exponent(batches, batch_s)
    for n, s in zip(ns, pipe_s):
        rows.append({"what": "scaling images", "images": n, "seconds": s})
    for b, s in zip(batches, batch_s):
        rows.append({"what": "scaling batch", "batch": b, "seconds_per_batch": s})
    rows.append({"what": "exponents", "pipeline_vs_images": e_images, "model_batch_time_vs_batch": e_batch})
    scale_md = ["| doubling | sizes | seconds | exponent |", "|---|---|---|---|",
                f"| images, pipeline ({lanes} lanes, the default) | {', '.join(map(str, ns))} | "
                f"{', '.join(f'{s:.2f}' for s in pipe_s)} | {e_images:.2f} |",
                f"| batch size, model-only time per batch | {', '.join(map(str, batches))} | "
                f"{', '.join(f'{s:.3f}' for s in batch_s)} | {e_batch:.2f} |"]
    before = results[("exact", default_threads, 2, 1)]
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
        refs + ".",
        "",
        *table,
        "",
        f"Decode + preprocess alone (one process, {len(sub)} images): exact {decode_ips['exact']:.1f} img/s, "
        f"reduced {decode_ips['reduced']:.1f} img/s ({decode_ips['reduced'] / decode_ips['exact']:.2f}x).",
        "",
        f"Before (exact decoding, {default_threads} threads fed by 2 workers) -> now (reduced decoding, {lanes} lanes): "
        f"{before[0]:.1f} -> {after[0]:.1f} img/s ({after[0] / before[0]:.2f}x); pipeline / model-only "
        f"{before[0] / before[1]:.0%} -> {after[0] / after[1]:.0%} ({after[0] / model_lanes:.0%} of the model in lanes). "
        f"Reduced vs exact features: cosine similarity at least {cosine.min():.4f}, "
        f"mean {cosine.mean():.4f}.",
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
