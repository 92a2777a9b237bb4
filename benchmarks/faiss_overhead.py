"""What ``dahash.index.FaissIndex`` costs over the FAISS index it wraps: flat (exact) search of the
same queries in the same codes, through ``FaissIndex.search`` and through a raw
``faiss.IndexBinaryFlat``, interleaved and timed side by side in one run, with 1 and 2 threads.

FaissIndex adds an id map (``IndexBinaryIDMap``), argument checks, padding of missing slots and
each hit's metadata; the ratio says what that costs. The answers must be the same (distances
equal; ids equal where no tie at the k-th distance lets FAISS choose).

Usage: python benchmarks/faiss_overhead.py [--n 1000000] [--queries 1000] [--k 10] [--repeats 7]
       [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, timed, write_results  # noqa: E402

from dahash.index import FaissIndex  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="database codes (default 1,000,000)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per side (best kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    line = machine(faiss=faiss.__version__)
    print(f"machine: {line}", flush=True)
    t_start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    n_bytes = args.bits // 8
    codes = rng.integers(0, 256, size=(args.n, n_bytes), dtype=np.uint8)
    queries = rng.integers(0, 256, size=(args.queries, n_bytes), dtype=np.uint8)

    wrapped = FaissIndex(args.bits, "flat")
    wrapped.add(codes, np.arange(args.n, dtype=np.int64))
    raw = faiss.IndexBinaryFlat(args.bits)
    raw.add(codes)

    rows, table = [], ["| threads | raw IndexBinaryFlat (s) | FaissIndex (s) | FaissIndex / raw | queries/s raw | "
                       "queries/s FaissIndex |", "|---|---|---|---|---|---|"]
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        raw.search(queries[:10], args.k)  # warm-up
        wrapped.search(queries[:10], args.k)
        raw_s, wrapped_s = [], []
        for _ in range(args.repeats):  # interleaved, so load changes hit both sides alike
            (dist, labels), s = timed(lambda: raw.search(queries, args.k))
            raw_s.append(s)
            result, s = timed(lambda: wrapped.search(queries, args.k))
            wrapped_s.append(s)
        np.testing.assert_array_equal(result.distances, dist)
        same_ids = float((result.ids == labels).mean())
        r, w = min(raw_s), min(wrapped_s)
        table.append(f"| {threads} | {r:.3f} | {w:.3f} | **{w / r:.3f}x** | {args.queries / r:,.0f} | "
                     f"{args.queries / w:,.0f} |")
        rows.append({"threads": threads, "raw_s": r, "faissindex_s": w, "ratio": w / r, "n": args.n,
                     "queries": args.queries, "k": args.k, "bits": args.bits, "same_ids": same_ids,
                     "raw_all_s": raw_s, "faissindex_all_s": wrapped_s})
        print(table[-1], f"(ids equal for {same_ids:.1%} of hits; distances equal)", flush=True)

    md = "\n".join([
        "# FaissIndex against raw FAISS",
        "",
        f"{args.n:,} uniformly random {args.bits}-bit codes, {args.queries:,} random queries, k = {args.k}: exact "
        f"(flat) search, best of {args.repeats} interleaved rounds per side after a warm-up.",
        "",
        f"Machine: {line}",
        "",
        *table,
        "",
        "Distances equal on every query; ids equal for "
        f"{', '.join(format(r['same_ids'], '.1%') for r in rows)} of hits (the rest are ties at the k-th distance, "
        "which FAISS may break either way).",
        "",
        f"Wall time {time.perf_counter() - t_start:.0f} s; load average at end {os.getloadavg()[0]:.2f}.",
        "",
    ])
    print(md)
    write_results(args.out, "faiss_overhead", md, rows)


if __name__ == "__main__":
    main()
