"""mAP of 10,000 query codes against 100,000 database codes (64 bits): time and peak memory.

Usage: python benchmarks/metrics_map.py [--queries 10000] [--database 100000] [--bits 64]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from dahash.codes import pack_codes
from dahash.metrics import mean_average_precision, precision_at_k, precision_recall_curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--database", type=int, default=100_000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--classes", type=int, default=65)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # Clustered codes: each class has a prototype, items flip 20 % of its bits.
    protos = rng.choice([-1.0, 1.0], size=(args.classes, args.bits))

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, args.classes, n)
        flips = np.where(rng.random((n, args.bits)) < 0.2, -1.0, 1.0)
        return pack_codes(protos[y] * flips), y

    q, qy = sample(args.queries)
    db, dby = sample(args.database)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for name, fn in (("mAP", lambda: mean_average_precision(q, qy, db, dby)),
                     ("precision@100", lambda: precision_at_k(q, qy, db, dby, 100)),
                     ("PR curve", lambda: precision_recall_curve(q, qy, db, dby, n_bits=args.bits)[0][-1])):
        t0 = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{name:>14}: {seconds:7.1f} s  value {float(value):.4f}  "
              f"{args.queries * args.database / seconds / 1e6:7.1f} M pairs/s  peak RSS {peak:.0f} MiB "
              f"(codes and interpreter: {base:.0f} MiB)")


if __name__ == "__main__":
    main()
