"""Traced against eager inference: images/s of EfficientNet-Lite0's fused inference copy run eagerly
and traced by TorchScript (``dahash.images.backbones.traced_for_cpu``), alone and beside a busy
Python thread.

Both modules are checked to give the same outputs bit for bit first. Then, for batch 1 and 16,
for one lane of 1 torch thread, one lane of 2 and two lanes of 1 (threads side by side, as
``dahash serve`` and ``extract_features`` run them), it times the eager and the traced module
alternately, ``--repeats`` times each, with no other thread and with one more Python thread that
never sleeps (the worst case of a server's event loop and request threads, which hold the GIL
between their own calls). It prints the median img/s of each and the ratio traced / eager.

Usage: python benchmarks/traced_inference.py [--repeats 3] [--out benchmarks/results] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, write_results  # noqa: E402

from dahash.experiments.tables import markdown_table  # noqa: E402
from dahash.images.backbones import DEFAULT_BACKBONE, inference_model, load_backbone, traced_for_cpu  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# (lanes, torch threads per lane)
LAYOUTS = [(1, 1), (1, 2), (2, 1)]


def rate(net: torch.nn.Module, x: torch.Tensor, lanes: int, threads: int, n_batches: int, busy: bool) -> float:
    """img/s of ``lanes`` threads each running ``net`` on ``x`` ``n_batches`` times, on ``threads``
    torch threads each, with or without a spinning Python thread beside them."""
    stop = threading.Event()

    def spin() -> None:
        count = 0
        while not stop.is_set():
            count += 1

    def work(n: int) -> None:
        torch.set_num_threads(threads)  # per thread: a lane reads the count when it first runs an op
        with torch.no_grad():
            for _ in range(n):
                net(x)

    spinner = threading.Thread(target=spin, daemon=True)
    if busy:
        spinner.start()
    try:
        with ThreadPoolExecutor(lanes) as pool:
            list(pool.map(work, [1] * lanes))  # warm-up: allocations, the profiling executor's first runs
            start = time.perf_counter()
            list(pool.map(work, [n_batches] * lanes))
            elapsed = time.perf_counter() - start
    finally:
        stop.set()
        if busy:
            spinner.join()
    return lanes * n_batches * len(x) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--quick", action="store_true", help="one repeat, fewer batches")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    started = time.perf_counter()
    line = machine(torch=torch.__version__)
    print(line, flush=True)
    backbone = load_backbone(DEFAULT_BACKBONE)
    crop = backbone.preprocessing.crop
    eager = inference_model(backbone.model)
    traced = traced_for_cpu(eager, crop)
    if not isinstance(traced, torch.jit.ScriptModule):
        raise SystemExit("tracing failed on this torch: nothing to compare")
    torch.manual_seed(0)
    with torch.no_grad():
        for batch in (1, 16, 1, 16):
            x = torch.randn(batch, 3, crop, crop).contiguous(memory_format=torch.channels_last)
            if not torch.equal(eager(x), traced(x)):
                raise SystemExit(f"traced and eager outputs differ at batch {batch}")
    print("traced == eager, bit for bit, at batch 1 and 16", flush=True)

    rows = []
    for batch in (1, 16):
        x = torch.randn(batch, 3, crop, crop).contiguous(memory_format=torch.channels_last)
        for lanes, threads in LAYOUTS:
            for busy in (False, True):
                # Fewer batches beside the spinner: eager then runs at a few img/s.
                n = max(1, (8 if busy else 32) // batch // (4 if args.quick else 1))
                rates: dict[str, list[float]] = {"eager": [], "traced": []}
                for _ in range(repeats):
                    for name, net in (("eager", eager), ("traced", traced)):
                        rates[name].append(rate(net, x, lanes, threads, n, busy))
                row = {"batch": batch, "lanes": lanes, "threads_per_lane": threads, "busy_python_thread": busy,
                       "eager_img_per_s": statistics.median(rates["eager"]),
                       "traced_img_per_s": statistics.median(rates["traced"]),
                       "eager_all": rates["eager"], "traced_all": rates["traced"]}
                row["traced_over_eager"] = row["traced_img_per_s"] / row["eager_img_per_s"]
                rows.append(row)
                print(f"batch {batch}, {lanes} lane(s) x {threads} thread(s), busy thread {busy}: eager "
                      f"{row['eager_img_per_s']:.1f}, traced {row['traced_img_per_s']:.1f} img/s "
                      f"({row['traced_over_eager']:.2f}x)", flush=True)
    wall = time.perf_counter() - started
    table = markdown_table(
        ["batch", "lanes x torch threads", "busy Python thread", "eager img/s", "traced img/s", "traced ÷ eager"],
        [[str(r["batch"]), f"{r['lanes']} x {r['threads_per_lane']}", "yes" if r["busy_python_thread"] else "no",
          f"{r['eager_img_per_s']:.1f}", f"{r['traced_img_per_s']:.1f}", f"{r['traced_over_eager']:.2f}"]
         for r in rows])
    text = (f"# Traced against eager inference ({DEFAULT_BACKBONE}, fused)\n\n{line}\n\n"
            f"Outputs equal bit for bit at batch 1 and 16. Median of {repeats} alternating runs each.\n\n"
            f"{table}\nWall time {wall:.0f} s.\n")
    write_results(args.out, "traced_inference", text, rows)
    print("\n" + table)
    print(f"wall time {wall:.0f} s; written to {Path(args.out) / 'traced_inference.md'}")


if __name__ == "__main__":
    main()
