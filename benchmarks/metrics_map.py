"""Retrieval metrics at the Hamming limit: 10,000 query codes against 100,000 database codes (64 bits).

Clustered random codes (65 classes; each item is its class prototype with 20 % of the bits
flipped). One run measures, side by side:

* the numpy implementation that the counting kernels replaced (tests/metrics/retrieval_reference.py:
  Hamming distances of a chunk of queries, then a stable argsort per query), on the first
  ``--reference-queries`` queries only, its time scaled to all queries (it processes fixed-size
  chunks of queries one after another, so its time is linear in their number);
* ``dahash.metrics`` (the counting kernels) with 1 and 2 numba threads: mAP, precision@100 and
  the precision-recall curve;
* a raw ``faiss.IndexBinaryFlat`` k-NN search (k = 100) over the same codes with 1 and 2 threads:
  FAISS's binary Hamming kernels, which also look at every (query, database) pair;

and reports the ratios between them, the peak memory (tracemalloc: numpy's allocations during a
call; getrusage: the process's peak resident set, numba's buffers included), the largest
differences between the two implementations on the reference queries, and how the kernels' mAP
time grows when the database and the code length double.

Usage: python benchmarks/metrics_map.py [--quick] [--out benchmarks/results]
       [--queries 10000] [--database 100000] [--bits 64] [--reference-queries 2000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "metrics"))
import faiss  # noqa: E402
import numba  # noqa: E402
import retrieval_reference as reference  # noqa: E402
from benchlib import exponent, machine, write_results  # noqa: E402

import dahash.metrics as kernels_api  # noqa: E402
from dahash.codes import pack_codes  # noqa: E402
from dahash.metrics import average_precisions, mean_average_precision, precision_recall_curve  # noqa: E402


def codes(n_q: int, n_db: int, bits: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    protos = rng.choice([-1.0, 1.0], size=(classes, bits))

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, n)
        flips = np.where(rng.random((n, bits)) < 0.2, -1.0, 1.0)
        return pack_codes(protos[y] * flips), y

    return (*sample(n_q), *sample(n_db))


def measure(fn) -> tuple[object, float, float, float]:
    """(value, wall seconds, CPU seconds of the process, peak MiB traced during the call)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return value, seconds, cpu, peak


def _difference(a, b) -> float:
    """Largest |a - b|, nan where exactly one side is nan (two nans agree)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("nan")
    both = ~np.isnan(a)
    return float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 x 10,000 codes (seconds)")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--queries", type=int, default=None, help="default 10,000 (quick 1,000)")
    parser.add_argument("--database", type=int, default=None, help="default 100,000 (quick 10,000)")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--classes", type=int, default=65)
    parser.add_argument("--reference-queries", type=int, default=None,
                        help="queries the numpy reference is timed on (default 2,000; quick 500)")
    args = parser.parse_args()
    n_q = args.queries or (1_000 if args.quick else 10_000)
    n_db = args.database or (10_000 if args.quick else 100_000)
    n_ref = min(n_q, args.reference_queries or (500 if args.quick else 2_000))
    threads = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})
    line = machine(numba=numba.__version__, faiss=faiss.__version__,
                   threading=f"numba {numba.config.NUMBA_NUM_THREADS} threads")
    print(f"machine: {line}", flush=True)
    t_start = time.perf_counter()
    pairs = n_q * n_db
    q, qy, db, dby = codes(n_q, n_db, args.bits, args.classes)
    rows: list[dict] = []

    # The kernels' first call in a process loads their machine code from numba's cache (or compiles it).
    t0 = time.perf_counter()
    mean_average_precision(q[:2], qy[:2], db[:50], dby[:50])
    precision_recall_curve(q[:2], qy[:2], db[:50], dby[:50])
    first_call = time.perf_counter() - t0

    table = ["| metric | implementation | threads | seconds | M pairs/s | CPU seconds | peak traced MiB | value |",
             "|---|---|---|---|---|---|---|---|"]
    timings: dict[tuple[str, str, int], float] = {}

    def record(metric: str, impl: str, n_threads: int, value: float, seconds: float, cpu: float, peak: float,
               note: str = "") -> None:
        timings[(metric, impl, n_threads)] = seconds
        table.append(f"| {metric} | {impl}{note} | {n_threads} | {seconds:.2f} | {pairs / seconds / 1e6:,.0f} | "
                     f"{cpu:.2f} | {peak:.0f} | {value:.6f} |")
        rows.append({"metric": metric, "implementation": impl, "threads": n_threads, "queries": n_q,
                     "database": n_db, "bits": args.bits, "seconds": seconds, "cpu_seconds": cpu,
                     "peak_traced_mib": peak, "value": value})
        print(table[-1], flush=True)

    radius = args.bits // 4
    metrics = (("mAP", lambda m, *a: m.mean_average_precision(*a)),
               ("precision@100", lambda m, *a: m.precision_at_k(*a, 100)),
               (f"PR curve (precision at radius {radius})",
                lambda m, *a: m.precision_recall_curve(*a, n_bits=args.bits)[0][radius]))
    for n_threads in threads:
        numba.set_num_threads(n_threads)
        for name, fn in metrics:
            value, seconds, cpu, peak = measure(lambda: fn(kernels_api, q, qy, db, dby))
            record(name, "kernels", n_threads, float(value), seconds, cpu, peak)
    rss_after_kernels = peak_rss_mib()

    # FAISS's binary flat index, k = 100, same codes (its heap search; threads through OpenMP).
    index = faiss.IndexBinaryFlat(8 * q.shape[1])
    index.add(db)
    for n_threads in threads:
        faiss.omp_set_num_threads(n_threads)
        (dist, _), seconds, cpu, peak = measure(lambda: index.search(q, 100))
        record("k-NN, k = 100", "FAISS IndexBinaryFlat", n_threads, float(dist.mean()), seconds, cpu, peak,
               note=" (value: mean distance)")

    # The numpy reference on the first n_ref queries, scaled to n_q; new values on the same queries.
    sub = (q[:n_ref], qy[:n_ref], db, dby)
    scale = n_q / n_ref
    diffs = []
    for name, fn in metrics:
        ref_value, seconds, cpu, peak = measure(lambda: fn(reference, *sub))
        record(name, "numpy reference", 1, float(ref_value), seconds * scale, cpu * scale, peak,
               note=f" (timed on the first {n_ref:,} queries, x {scale:g}; value on them)")
        diffs.append((name, _difference(fn(kernels_api, *sub), ref_value), float(ref_value)))
    ap_diff = _difference(average_precisions(*sub), reference.average_precisions(*sub))
    numba.set_num_threads(max(threads))
    pr_new = precision_recall_curve(*sub, n_bits=args.bits)
    pr_ref = reference.precision_recall_curve(*sub, n_bits=args.bits)
    pr_diff = max(_difference(a, b) for a, b in zip(pr_new[:2], pr_ref[:2]))
    rss_end = peak_rss_mib()

    faiss_t = {t: timings[("k-NN, k = 100", "FAISS IndexBinaryFlat", t)] for t in threads}
    ratio_md = ["| metric | threads | kernels seconds | numpy reference (1 thread) / kernels | FAISS k-NN (same threads) / kernels |",
                "|---|---|---|---|---|"]
    for name, _ in metrics:
        for t in threads:
            s = timings[(name, "kernels", t)]
            ratio_md.append(f"| {name} | {t} | {s:.2f} | **{timings[(name, 'numpy reference', 1)] / s:.1f}x** | "
                            f"{faiss_t[t] / s:.2f}x |")
    two = max(threads)
    scaling_line = (f"Kernels, {two} threads / 1 thread: mAP {timings[('mAP', 'kernels', 1)] / timings[('mAP', 'kernels', two)]:.2f}x "
                    f"faster; FAISS {faiss_t[1] / faiss_t[two]:.2f}x.")
    diff_md = ["| on the first {:,} queries | reference value | abs. difference, kernels vs reference |".format(n_ref),
               "|---|---|---|"]
    for name, diff, ref_value in diffs:
        diff_md.append(f"| {name} | {ref_value:.12f} | {diff:.1e} |")
        rows.append({"metric": f"difference {name}", "value": diff})
    diff_md.append(f"| AP of each query (largest) | | {ap_diff:.1e} |")
    diff_md.append(f"| precision and recall at every radius (largest) | | {pr_diff:.1e} |")
    rows.append({"metric": "difference AP per query (max)", "value": ap_diff})
    rows.append({"metric": "difference PR curve (max)", "value": pr_diff})

    # How the kernels' mAP time grows (most threads).
    scale_md = ["| doubling | sizes | mAP seconds | time exponent |", "|---|---|---|---|"]
    dbs = [n_db // 4, n_db // 2, n_db]
    per_db = []
    for n in dbs:
        if n == n_db:
            per_db.append(timings[("mAP", "kernels", two)])
            continue
        per_db.append(measure(lambda: mean_average_precision(q, qy, db[:n], dby[:n]))[1])
    bits_list = [args.bits // 2, args.bits, 2 * args.bits]
    per_bits = []
    for b in bits_list:
        if b == args.bits:
            per_bits.append(timings[("mAP", "kernels", two)])
            continue
        qq, qqy, d, dy = codes(n_q, n_db, b, args.classes)
        per_bits.append(measure(lambda: mean_average_precision(qq, qqy, d, dy))[1])
    for label, sizes, vals in (("database size", dbs, per_db), ("code length (bits)", bits_list, per_bits)):
        et = exponent(sizes, vals)
        scale_md.append(f"| {label} | {', '.join(f'{s:,}' for s in sizes)} | {', '.join(f'{v:.2f}' for v in vals)} | {et:.2f} |")
        rows.append({"metric": f"exponent {label}", "value": et})
    wall = time.perf_counter() - t_start
    md = "\n".join([
        "# Retrieval metrics",
        "",
        f"{n_q:,} queries x {n_db:,} database codes, {args.bits} bits, {args.classes} classes (clustered random "
        "codes, 20 % bit flips); one call each.",
        "",
        f"Machine: {line}",
        "",
        f"First call of the kernels in the process (numba cache load or compile): {first_call:.2f} s, not counted below.",
        "",
        *table,
        "",
        *ratio_md,
        "",
        scaling_line,
        "",
        f"Peak RSS of the process: {rss_after_kernels:.0f} MiB after the kernels and FAISS, "
        f"{rss_end:.0f} MiB after the numpy reference (codes, interpreter, numba and FAISS included).",
        "",
        *diff_md,
        "",
        *scale_md,
        "",
        f"Wall time {wall:.0f} s; load average at end {os.getloadavg()[0]:.2f}.",
        "",
    ])
    print(md)
    write_results(args.out, "metrics_map_quick" if args.quick else "metrics_map", md, rows)


if __name__ == "__main__":
    main()
