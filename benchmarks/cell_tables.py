"""Remake the accuracy, mAP and paired tables of a reproduce from its per-cell results.

Usage:
    python benchmarks/cell_tables.py docs/results/office_caltech_issue26.csv        # the committed cells
    python benchmarks/cell_tables.py runs/oc26 --save docs/results/office_caltech_issue26.csv   # a run's finished cells

A run directory is only read (its finished cells), so this works while the reproduce is still running.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dahash.experiments.cell_results import collect_cells, read_cells, tables, write_cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a cells CSV, or a 'dahash reproduce' --out folder")
    parser.add_argument("--save", default=None, help="write the run's cells to this CSV")
    parser.add_argument("--methods", nargs="+", default=None, help="rows, in this order (default: as found)")
    args = parser.parse_args()
    source = Path(args.source)
    rows = collect_cells(source) if source.is_dir() else read_cells(source)
    if args.save:
        write_cells(args.save, rows)
    print(tables(rows, args.methods))


if __name__ == "__main__":
    main()
