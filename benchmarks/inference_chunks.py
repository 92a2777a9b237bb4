"""Images/s of the traced EfficientNet-Lite inference module on batches of 16 run in chunks of 1, 2, 4,
8 and 16 images (``dahash.images.backbones.InChunks``; ``CPU_CHUNK`` is what dahash uses), in one
lane of 2 torch threads (the issue's model-only reference) and in two lanes of 1 (``extract_features``
and ``dahash serve`` on 2 cores).

For each layout the chunk sizes run alternately, ``--repeats`` times each; the table gives the
median img/s and its ratio to chunks of 16 (the whole batch at once). It also prints how far the
features of a chunked batch are from those of the whole batch, on 1 and on 2 threads
(convolutions may round differently by batch size and thread count).

Usage: python benchmarks/inference_chunks.py [--backbone efficientnet_lite0] [--repeats 3] [--out benchmarks/results] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, write_results  # noqa: E402
from traced_inference import rate  # noqa: E402

from dahash.experiments.tables import markdown_table  # noqa: E402
from dahash.images.backbones import (  # noqa: E402
    CPU_CHUNK,
    DEFAULT_BACKBONE,
    InChunks,
    inference_model,
    load_backbone,
    traced_for_cpu,
)

REPO = Path(__file__).resolve().parents[1]
BATCH = 16
CHUNKS = (1, 2, 4, 8, 16)
# (lanes, torch threads per lane)
LAYOUTS = [(1, 2), (2, 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--quick", action="store_true", help="one repeat, fewer batches")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    n_batches = 1 if args.quick else 4

    started = time.perf_counter()
    line = machine(torch=torch.__version__)
    print(line, flush=True)
    backbone = load_backbone(args.backbone)
    crop = backbone.preprocessing.crop
    traced = traced_for_cpu(inference_model(backbone.model), crop)
    nets = {chunk: InChunks(traced, chunk) for chunk in CHUNKS}
    torch.manual_seed(0)
    x = torch.randn(BATCH, 3, crop, crop).contiguous(memory_format=torch.channels_last)
    # The kernels oneDNN picks depend on the thread count, and so does the rounding.
    gaps: dict[tuple[int, int], float] = {}
    threads_before = torch.get_num_threads()
    with torch.no_grad():
        for threads in dict.fromkeys(t for _, t in LAYOUTS):
            torch.set_num_threads(threads)
            whole = nets[BATCH](x)
            scale = float(whole.abs().max())
            for chunk, net in nets.items():
                gaps[threads, chunk] = float((net(x) - whole).abs().max())
            print(f"largest feature difference to the whole batch on {threads} thread(s): "
                  + ", ".join(f"chunks of {c}: {gaps[threads, c]:.2g}" for c in CHUNKS)
                  + f" (features up to {scale:.3g})", flush=True)
    torch.set_num_threads(threads_before)

    rows = []
    for lanes, threads in LAYOUTS:
        rates: dict[int, list[float]] = {chunk: [] for chunk in CHUNKS}
        for _ in range(repeats):
            for chunk, net in nets.items():
                rates[chunk].append(rate(net, x, lanes, threads, n_batches, busy=False))
        whole_rate = statistics.median(rates[BATCH])
        for chunk in CHUNKS:
            median = statistics.median(rates[chunk])
            rows.append({"backbone": args.backbone, "lanes": lanes, "threads_per_lane": threads, "batch": BATCH,
                         "chunk": chunk, "img_per_s": median, "over_whole_batch": median / whole_rate,
                         "all": rates[chunk], "max_feature_difference": gaps[threads, chunk]})
            print(f"{lanes} lane(s) x {threads} thread(s), chunks of {chunk}: {median:.1f} img/s "
                  f"({median / whole_rate:.2f}x the whole batch)", flush=True)
    wall = time.perf_counter() - started
    table = markdown_table(
        ["lanes x torch threads", "chunk", "img/s", "÷ whole batch", "largest feature difference"],
        [[f"{r['lanes']} x {r['threads_per_lane']}", f"{r['chunk']}{' (dahash)' if r['chunk'] == CPU_CHUNK else ''}",
          f"{r['img_per_s']:.1f}", f"{r['over_whole_batch']:.2f}", f"{r['max_feature_difference']:.2g}"]
         for r in rows])
    text = (f"# Batches of {BATCH} in chunks ({args.backbone}, fused, traced)\n\n{line}\n\n"
            f"Median of {repeats} alternating runs of {n_batches} batches each; features up to {scale:.3g}.\n\n"
            f"{table}\nWall time {wall:.0f} s.\n")
    write_results(args.out, f"inference_chunks_{args.backbone}", text, rows)
    print("\n" + table)
    print(f"wall time {wall:.0f} s; written to {Path(args.out) / f'inference_chunks_{args.backbone}.md'}")


if __name__ == "__main__":
    main()
