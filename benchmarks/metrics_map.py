"""mAP of 10,000 query codes against 100,000 database codes (64 bits): time, peak memory and scaling.

Clustered random codes (65 classes; each item is its class prototype with 20 % of the bits
flipped). Reported: seconds, pairs/s and peak traced memory (tracemalloc: numpy's allocations
during the call, codes excluded) of ``mean_average_precision``, ``precision_at_k`` (k = 100) and
``precision_recall_curve``, and of the mAP code before the profiling pass (``map_before``);
then the exponent of the mAP time and peak memory when the database doubles (25k, 50k, 100k)
and when the code length doubles (32, 64, 128 bits).

Usage: python benchmarks/metrics_map.py [--quick] [--out benchmarks/results]
       [--queries 10000] [--database 100000] [--bits 64]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import exponent, machine, write_results  # noqa: E402

from dahash.codes import pack_codes  # noqa: E402
from dahash.metrics import mean_average_precision, precision_at_k, precision_recall_curve  # noqa: E402
from dahash.metrics.retrieval import _Problem  # noqa: E402


def map_before(q, qy, db, dby) -> float:
    """mAP as dahash computed it before the profiling pass: uint16 stable argsort,
    take_along_axis, cumulative hits and a float64 precision at every rank."""
    problem = _Problem(q, db, False, None, qy, dby)
    ap = np.empty(problem.n_q)
    for rows, dist in problem.chunks():
        relevant = problem.relevance(rows)
        order = np.argsort(dist, axis=1, kind="stable")
        ranked_rel = np.take_along_axis(relevant, order, axis=1)
        del order, relevant
        hits = np.cumsum(ranked_rel, axis=1, dtype=np.int32)
        n_relevant = hits[:, -1].astype(np.float64)
        precision_at_rank = hits / np.arange(1, hits.shape[1] + 1, dtype=np.float64)
        del hits
        np.multiply(precision_at_rank, ranked_rel, out=precision_at_rank)
        with np.errstate(invalid="ignore", divide="ignore"):
            ap[rows] = np.where(n_relevant > 0, precision_at_rank.sum(axis=1) / n_relevant, np.nan)
    valid = ~np.isnan(ap)
    return float(ap[valid].mean()) if valid.any() else 0.0


def codes(n_q: int, n_db: int, bits: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    protos = rng.choice([-1.0, 1.0], size=(classes, bits))

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, n)
        flips = np.where(rng.random((n, bits)) < 0.2, -1.0, 1.0)
        return pack_codes(protos[y] * flips), y

    return (*sample(n_q), *sample(n_db))


def measure(fn) -> tuple[object, float, float]:
    """(value, seconds, peak MiB traced during the call)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return value, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 x 10,000 codes (seconds)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--queries", type=int, default=None, help="default 10,000 (quick 1,000)")
    parser.add_argument("--database", type=int, default=None, help="default 100,000 (quick 10,000)")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--classes", type=int, default=65)
    args = parser.parse_args()
    n_q = args.queries or (1_000 if args.quick else 10_000)
    n_db = args.database or (10_000 if args.quick else 100_000)
    line = machine()
    print(f"machine: {line}")
    t_start = time.perf_counter()
    rows: list[dict] = []
    q, qy, db, dby = codes(n_q, n_db, args.bits, args.classes)
    table = ["| metric | seconds | M pairs/s | peak traced MiB | value |", "|---|---|---|---|---|"]
    timings = {}
    for name, fn in (("mAP, before the profiling pass", lambda: map_before(q, qy, db, dby)),
                     ("mAP", lambda: mean_average_precision(q, qy, db, dby)),
                     ("precision@100", lambda: precision_at_k(q, qy, db, dby, 100)),
                     ("PR curve (precision at radius 64)",
                      lambda: precision_recall_curve(q, qy, db, dby, n_bits=args.bits)[0][-1])):
        value, seconds, peak = measure(fn)
        timings[name] = (seconds, peak)
        table.append(f"| {name} | {seconds:.1f} | {n_q * n_db / seconds / 1e6:.1f} | {peak:.0f} | {float(value):.4f} |")
        rows.append({"what": name, "queries": n_q, "database": n_db, "bits": args.bits, "seconds": seconds,
                     "peak_mib": peak, "value": float(value)})
        print(table[-1], flush=True)
    speedup = timings["mAP, before the profiling pass"][0] / timings["mAP"][0]
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    scale_md = ["| doubling | sizes | mAP seconds | peak MiB | time exponent | memory exponent |", "|---|---|---|---|---|---|"]
    dbs = [n_db // 4, n_db // 2, n_db]
    per_db = []
    for n in dbs:
        if n == n_db and args.bits == 64:
            per_db.append(timings["mAP"])
            continue
        qq, qqy, d, dy = codes(n_q, n, args.bits, args.classes)
        per_db.append(measure(lambda: mean_average_precision(qq, qqy, d, dy))[1:])
    bits_list = [32, 64, 128]
    per_bits = []
    for b in bits_list:
        if b == args.bits:
            per_bits.append(timings["mAP"])
            continue
        qq, qqy, d, dy = codes(n_q, n_db, b, args.classes)
        per_bits.append(measure(lambda: mean_average_precision(qq, qqy, d, dy))[1:])
    for label, sizes, vals in (("database size", dbs, per_db), ("code length (bits)", bits_list, per_bits)):
        et, em = exponent(sizes, [v[0] for v in vals]), exponent(sizes, [v[1] for v in vals])
        scale_md.append(f"| {label} | {', '.join(f'{s:,}' for s in sizes)} | {', '.join(f'{v[0]:.1f}' for v in vals)} | "
                        f"{', '.join(f'{v[1]:.0f}' for v in vals)} | {et:.2f} | {em:.2f} |")
        for s, v in zip(sizes, vals):
            rows.append({"what": f"scaling {label}", "size": s, "seconds": v[0], "peak_mib": v[1]})
        rows.append({"what": f"exponents {label}", "time_exponent": et, "memory_exponent": em})
        print(scale_md[-1], flush=True)
    wall = time.perf_counter() - t_start
    md = "\n".join([
        "# Retrieval metrics",
        "",
        f"{n_q:,} queries x {n_db:,} database codes, {args.bits} bits, {args.classes} classes (clustered random "
        "codes, 20 % bit flips); one call each; default chunking (256 MiB working set per query chunk).",
        "",
        f"Machine: {line}",
        "",
        *table,
        "",
        f"mAP after / before the profiling pass: {speedup:.2f}x faster (same value). "
        f"Peak RSS of the process after these calls: {maxrss:.0f} MiB.",
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
