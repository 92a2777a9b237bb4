"""Remake a retrieval mAP table from the per-cell ``retrieval.csv`` that ``dahash reproduce --tables retrieval`` writes.

Usage:
    python benchmarks/retrieval_table.py docs/results/office_caltech_retrieval_64bits.csv
    python benchmarks/retrieval_table.py runs/ocret/retrieval.csv --queries heldout --metric precision_at_100

A method with no rows for ``--queries`` (SuH, scored on the held-out queries only) shows its held-out rows.
One section per code length: a row per task (the target domain and its source), a column per method, each
cell the mean ± standard deviation over seeds; Avg is the mean over tasks of the per-task means, ± the
standard deviation over seeds of the per-seed task averages (as ``map.md`` gives them).
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np


def table(rows: list[dict[str, str]], metric: str, queries: str) -> str:
    cells: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    for r in rows:
        if r["queries"] == queries:
            cells[(r["bits"], r["task"], r["method"])][int(r["seed"])] = float(r[metric])
    # A method scored on the held-out queries only (SuH, which trained on the rest) shows those, as map.md does.
    only_heldout = {r["method"] for r in rows} - {m for _, _, m in cells}
    for r in rows:
        if r["method"] in only_heldout:
            cells[(r["bits"], r["task"], r["method"])][int(r["seed"])] = float(r[metric])
    out = []
    for bits in sorted({b for b, _, _ in cells}, key=int):
        tasks = sorted({t for b, t, _ in cells if b == bits}, key=lambda t: t.split("→")[1])
        methods = list(dict.fromkeys(m for b, _, m in cells if b == bits))
        note = f" ({', '.join(sorted(only_heldout))}: the held-out queries only)" if only_heldout else ""
        lines = [f"{metric}, {bits} bits, queries: {queries}{note}", "",
                 "| Target (task) | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
        for task in tasks:
            values = [cells.get((bits, task, m), {}) for m in methods]
            lines.append(f"| {task.split('→')[1]} ({task}) | " + " | ".join(
                f"{np.mean(list(v.values())):.3f} ± {np.std(list(v.values()), ddof=1):.3f}" if len(v) > 1
                else (f"{next(iter(v.values())):.3f}" if v else "") for v in values) + " |")
        avg = []
        for m in methods:
            seeds = sorted(set.intersection(*(set(cells.get((bits, t, m), {})) for t in tasks)))
            per_seed = [np.mean([cells[(bits, t, m)][s] for t in tasks]) for s in seeds]
            avg.append(f"{np.mean(per_seed):.3f} ± {np.std(per_seed, ddof=1):.3f}" if len(per_seed) > 1
                       else (f"{per_seed[0]:.3f}" if per_seed else ""))
        lines.append("| Avg | " + " | ".join(avg) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="a retrieval.csv (or a copy of one under docs/results)")
    parser.add_argument("--metric", default="map", choices=["map", "precision_at_100", "precision_radius_2"])
    parser.add_argument("--queries", default="all", choices=["all", "heldout"])
    args = parser.parse_args(argv)
    with open(args.csv, newline="") as f:
        print(table(list(csv.DictReader(f)), args.metric, args.queries), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
