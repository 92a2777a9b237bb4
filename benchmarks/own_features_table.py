"""Issue 31's table: the library's default commands against the independent reference on a folder of feature
files (one ``<domain>.npz`` per domain), every task, several seeds.

Rows:

* library methods, each run as a user runs it: ``dahash train --source-features S --target-features T
  --method M --seed K`` plus the flags given in ``--flags`` (none: the defaults), one run folder per cell
  under ``OUT/<method>/<S>_<T>/seed<K>/`` (a finished cell, with ``results.json``, is kept);
* the reference's NoDA and DAH (``benchmarks/reference_dah.py``, which imports nothing of dahash), at its own
  fixed settings, one JSON per cell under ``OUT/reference/``.

The training stage (``OUT/schedule/`` of a run: schedule and hidden layers chosen on held-out source) trains the
source-only twin, which is the same for every hash-head method of one task, seed and flags: it runs once, in the
first method's cell, and its candidates are copied into the others' before they run (``dahash train`` reuses a
saved candidate whose setting and split match, and applies the rule again).

Printed (and written to ``OUT/table.md``): target accuracy per task and method (mean over seeds), the
12-task average with its standard deviation over seeds, and each row's mean paired difference (same task
and seed) to the library's NoDA and to the reference's NoDA with a 95 % t interval. Target labels are read
only to score; nothing here chooses a setting.

Usage:
    python benchmarks/own_features_table.py runs/bow --out runs/bow-table --methods NoDA DAH DAH-e --seeds 3
    python benchmarks/own_features_table.py runs/bow --out runs/bow-table --flags "--schedule paper" --tag paper
    python benchmarks/own_features_table.py runs/eff --out runs/eff-table --methods \
        --cells docs/results/office_caltech_issue26.csv --cell-rows NoDA DAH-sel   # library rows measured already
Cells run ``--workers`` at a time, each on one thread (set the autogroup of a shared machine's jobs, not nice:
``echo 19 > /proc/self/autogroup``).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dahash.experiments.paired import paired_difference
from dahash.runs.selection import CANDIDATES
from dahash.runs.tuning import SCHEDULE_DIR

REFERENCE = Path(__file__).resolve().parent / "reference_dah.py"
CODES = {"amazon": "A", "caltech10": "C", "dslr": "D", "webcam": "W"}


def domains_of(folder: Path) -> list[str]:
    found = sorted(p.stem for p in folder.glob("*.npz"))
    if len(found) < 2:
        raise SystemExit(f"{folder} holds {len(found)} .npz feature file(s); a task needs two")
    return found


def code(domain: str) -> str:
    return CODES.get(domain, domain)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(shlex.quote, command))} failed:\n{done.stderr[-2000:]}")


def library_cell(features: Path, out: Path, method: str, source: str, target: str, seed: int,
                 flags: list[str]) -> float:
    """Target accuracy (%) of one ``dahash train`` run, trained unless its folder holds a finished one."""
    results = out / "results.json"
    if not results.exists():
        command = [sys.executable, "-m", "dahash", "train", "--source-features", str(features / f"{source}.npz"),
                   "--target-features", str(features / f"{target}.npz"), "--method", method, "--seed", str(seed),
                   "--num-threads", "1", "--quiet", "--out", str(out), *flags]
        if out.exists():
            command.append("--resume")
        _run(command)
    return float(json.loads(results.read_text())["metrics"]["target_accuracy"])


def share_stage(first: Path, cell: Path) -> None:
    """Copy the training stage's finished candidates of ``first`` (a run folder) into ``cell``'s, before it runs."""
    done, into = first / SCHEDULE_DIR / CANDIDATES, cell / SCHEDULE_DIR / CANDIDATES
    if done.is_dir() and not (cell / "results.json").exists():
        into.mkdir(parents=True, exist_ok=True)
        for path in done.iterdir():
            if path.suffix in (".json", ".npy") and not (into / path.name).exists():
                shutil.copyfile(path, into / path.name)


def library_cells(features: Path, cells: list[tuple[str, Path]], source: str, target: str, seed: int,
                  flags: list[str]) -> list[float]:
    """:func:`library_cell` of each (method, folder) of one task and seed in turn, the first one's training stage
    shared with the others (:func:`share_stage`)."""
    scores = []
    for i, (method, cell) in enumerate(cells):
        if i:
            share_stage(cells[0][1], cell)
        scores.append(library_cell(features, cell, method, source, target, seed, flags))
    return scores


def reference_cell(features: Path, out: Path, method: str, source: str, target: str, seed: int) -> float:
    """Target accuracy (%) of the reference on one cell (its binary-code rule, as the paper scores)."""
    path = out / f"{method}_{code(source)}_{code(target)}_seed{seed}.json"
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        # A process of its own: the reference sets torch's threads, which threads of one process would share.
        _run([sys.executable, str(REFERENCE), "--source", str(features / f"{source}.npz"),
              "--target", str(features / f"{target}.npz"), "--method", method, "--seed", str(seed),
              "--json", str(path)])
    return 100.0 * json.loads(path.read_text())["results"][0]["accuracy"]


def cells_csv(path: Path, methods: list[str], tasks: list[tuple[str, str]],
              seeds: int) -> dict[str, dict[tuple, float]]:
    """Target accuracies of ``methods`` on every task and seed, from a cells CSV (tasks named ``A→C``)."""
    named = {f"{code(s)}→{code(t)}": (s, t) for s, t in tasks}
    acc: dict[str, dict[tuple, float]] = {m: {} for m in methods}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["method"] in acc and row["task"] in named and int(row["seed"]) < seeds:
                acc[row["method"]][(*named[row["task"]], int(row["seed"]))] = float(row["target_accuracy"])
    for m, cells in acc.items():
        if len(cells) != len(tasks) * seeds:
            raise SystemExit(f"{path}: {m} has {len(cells)} of the {len(tasks) * seeds} cells")
    return acc


def paired(a: dict, b: dict) -> str:
    """Mean of a - b over the cells both have, with its 95 % t interval (:func:`paired_difference`)."""
    keys = sorted(set(a) & set(b))
    if len(keys) < 2:
        return ""
    return f"{paired_difference([a[k] for k in keys], [b[k] for k in keys]).text()} ({len(keys)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features", type=Path, help="folder of <domain>.npz feature files")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--methods", nargs="*", default=["NoDA", "DAH", "DAH-e"],
                        help="library rows (none: the reference only)")
    parser.add_argument("--reference", nargs="*", default=["NoDA", "DAH"], help="the reference's rows")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--flags", default="", help="extra dahash train flags for every library cell")
    parser.add_argument("--tag", default="", help="suffix of the library rows' folder and name (with --flags)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cells", type=Path, help="a cells CSV (method, task, seed, target_accuracy; e.g. "
                        "docs/results/office_caltech_issue26.csv) whose --cell-rows are library rows, not run here")
    parser.add_argument("--cell-rows", nargs="*", default=[], help="the methods to take from --cells")
    args = parser.parse_args(argv)
    domains = domains_of(args.features)
    tasks = list(itertools.permutations(domains, 2))
    flags = shlex.split(args.flags)
    suffix = f"-{args.tag}" if args.tag else ""
    names = [f"{m}{suffix}" for m in args.methods]  # the library rows' names and folders
    jobs = {}
    with ThreadPoolExecutor(args.workers) as pool:
        for seed, (s, t) in itertools.product(range(args.seeds), tasks):
            cells = [(m, args.out / name / f"{code(s)}_{code(t)}" / f"seed{seed}")
                     for m, name in zip(args.methods, names)]
            if cells:
                jobs[("library", s, t, seed)] = pool.submit(library_cells, args.features, cells, s, t, seed, flags)
            for m in args.reference:
                jobs[(f"reference {m}", s, t, seed)] = pool.submit(reference_cell, args.features,
                                                                   args.out / "reference", m, s, t, seed)
        acc = cells_csv(args.cells, args.cell_rows, tasks, args.seeds) if args.cells else {}
        for (name, s, t, seed), job in jobs.items():
            if name == "library":
                for name, score in zip(names, job.result()):
                    acc.setdefault(name, {})[(s, t, seed)] = score
            else:
                acc.setdefault(name, {})[(s, t, seed)] = job.result()
    labels = [f"{code(s)}→{code(t)}" for s, t in tasks]
    lines = ["| row | " + " | ".join(labels) + " | Avg ± sd over seeds | vs library NoDA | vs reference NoDA |",
             "|---" * (len(labels) + 4) + "|"]
    base = acc.get(f"NoDA{suffix}", {})
    for name, cells in acc.items():
        per_task = [np.mean([cells[(s, t, k)] for k in range(args.seeds)]) for s, t in tasks]
        per_seed = [np.mean([cells[(s, t, k)] for s, t in tasks]) for k in range(args.seeds)]
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in per_task)
                     + f" | **{np.mean(per_seed):.2f}** ± {np.std(per_seed, ddof=1) if args.seeds > 1 else 0:.2f}"
                     + f" | {paired(cells, base) if cells is not base else ''}"
                     + f" | {paired(cells, acc.get('reference NoDA', {})) if name != 'reference NoDA' else ''} |")
    text = (f"Target accuracy (%), {len(tasks)} tasks x {args.seeds} seeds, features {args.features}; library flags: "
            f"{args.flags or '(defaults)'}. Paired: mean difference [95 % interval] (cells).\n\n" + "\n".join(lines) + "\n")
    (args.out / f"table{suffix}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
