"""Per-cell results of ``dahash reproduce`` as one small CSV, and the accuracy, mAP and paired tables remade from it.

The docs' tables are made from such files (``docs/results/*.csv``), so that they can be recomputed from the
repository alone: ``python benchmarks/cell_tables.py docs/results/FILE.csv``. A reproduce in progress can be
read too (its finished cells), without touching it.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dahash.errors import DataError
from dahash.experiments.paired import paired_difference
from dahash.experiments.tables import markdown_table
from dahash.io import write_csv

#: The columns of a cells file: the cell, then its metrics (empty where a method has none).
COLUMNS = ("method", "task", "seed", "target_accuracy", "target_accuracy_codes", "map", "train_seconds")
METRICS = COLUMNS[3:]
#: The references of the paired comparison (reproduce's PAIRED_REFERENCES).
REFERENCES = ("NoDA", "NoDA-sel")


def collect_cells(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every finished cell under ``run_dir/cells/<method>/<S>_<T>/seed<k>/results.json``."""
    rows = []
    for results in sorted(Path(run_dir).glob("cells/*/*/seed*/results.json")):
        metrics = json.loads(results.read_text())["metrics"]
        seed_dir, task_dir, method_dir = results.parent, results.parent.parent, results.parent.parent.parent
        rows.append({"method": method_dir.name, "task": task_dir.name.replace("_", "→"),
                     "seed": int(seed_dir.name.removeprefix("seed")),
                     **{k: metrics.get(k, math.nan) for k in METRICS}})
    return rows


def write_cells(path: str | os.PathLike, rows: Sequence[dict[str, Any]]) -> None:
    """``rows`` as a CSV (written atomically); NaN as an empty field."""
    write_csv(path, list(COLUMNS), [[r.get(c, "") if not _missing(r.get(c)) else "" for c in COLUMNS] for r in rows])


def read_cells(path: str | os.PathLike) -> list[dict[str, Any]]:
    """A cells CSV back as rows; a missing column is an error naming the file."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: not a cells file (no column {', '.join(missing)})")
        return [{"method": r["method"], "task": r["task"], "seed": int(r["seed"]),
                 **{k: float(r[k]) if r[k] != "" else math.nan for k in METRICS}} for r in reader]


def tables(rows: Sequence[dict[str, Any]], methods: Sequence[str] | None = None) -> str:
    """Markdown: target accuracy and mAP per method and task (mean over seeds; Avg: mean ± sd over seeds
    of the per-seed task average, over the seeds that have every task), and each method's paired
    difference to NoDA and NoDA-sel."""
    methods = list(methods or dict.fromkeys(r["method"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    cell = {(r["method"], r["task"], r["seed"]): r for r in rows}
    text = ""
    for metric, title, digits in (("target_accuracy", "Target accuracy (%)", 2), ("map", "mAP", 3)):
        body = []
        for m in methods:
            seeds = sorted({s for (mm, _, s) in cell if mm == m})
            values = {(t, s): cell[(m, t, s)][metric] for t in tasks for s in seeds if (m, t, s) in cell}
            if not values or all(_missing(v) for v in values.values()):
                continue
            per_task = [np.mean([values[(t, s)] for s in seeds if (t, s) in values]) if any(
                (t, s) in values for s in seeds) else math.nan for t in tasks]
            complete = [s for s in seeds if all((t, s) in values for t in tasks)]
            averages = [np.mean([values[(t, s)] for t in tasks]) for s in complete]
            avg = (f"{np.mean(averages):.{digits}f} ± {np.std(averages, ddof=1):.{digits}f}" if len(averages) > 1
                   else f"{averages[0]:.{digits}f}" if averages else "-")
            body.append([m, f"{len(complete)}/{len(seeds)}", *(_fmt(v, digits) for v in per_task), avg])
        if body:
            text += (f"### {title}\n\nMean over seeds per task; Avg is the mean ± sd over the seeds that have "
                     "every task (seeds column: complete/started).\n\n"
                     + markdown_table(["method", "seeds", *tasks, "Avg"], body) + "\n")
    header, body = paired_table(rows, methods)
    if body:
        text += ("### Paired difference in target accuracy (points)\n\nThe method minus the reference on the same "
                 "task and seed, over the cells both have, with a 95 % t interval over those cells.\n\n"
                 + markdown_table(header, body))
    return text


def paired_table(rows: Sequence[dict[str, Any]], methods: Sequence[str],
                 metric: str = "target_accuracy") -> tuple[list[str], list[list[str]]]:
    """Each method's mean paired difference of ``metric`` to each reference of :data:`REFERENCES` among
    ``methods``, over the (task, seed) cells both have (a deterministic method's one run pairs with the
    reference's seed 0), with its 95 % t interval and the cells won and lost; no rows without a reference."""
    cell = {(r["method"], r["task"], r["seed"]): r for r in rows}
    references = [r for r in REFERENCES if r in methods]
    header = ["method"] + [f"{what} vs {r}" for r in references for what in ("mean [95 % interval]", "ahead / behind")]
    body = []
    for m in methods if references else []:
        row = [m]
        for reference in references:
            keys = [(t, s) for (mm, t, s) in cell if mm == m and (reference, t, s) in cell
                    and not _missing(cell[(m, t, s)].get(metric))]
            if m == reference or not keys:
                row += ["", ""]
                continue
            p = paired_difference([cell[(m, *k)][metric] for k in keys], [cell[(reference, *k)][metric] for k in keys])
            row += [p.text(), f"{p.wins} / {p.losses} of {p.n}"]
        body.append(row)
    return header, body


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: float, digits: int) -> str:
    return "-" if _missing(value) else f"{value:.{digits}f}"
