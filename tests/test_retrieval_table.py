"""benchmarks/retrieval_table.py remakes map.md's numbers from a retrieval.csv: checked on hand-computed cells."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "retrieval_table.py"
spec = importlib.util.spec_from_file_location("retrieval_table", SCRIPT)
retrieval_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(retrieval_table)


def _row(task: str, method: str, seed: int, queries: str, value: float) -> dict[str, str]:
    return {"bits": "64", "task": task, "method": method, "seed": str(seed), "queries": queries, "map": str(value),
            "precision_at_100": "0", "precision_radius_2": "0"}


def test_means_over_seeds_avg_over_tasks_and_heldout_only_methods() -> None:
    rows = [_row("A→C", "DAH", 0, "all", 0.90), _row("A→C", "DAH", 1, "all", 0.94),
            _row("C→A", "DAH", 0, "all", 0.80), _row("C→A", "DAH", 1, "all", 0.70),
            _row("A→C", "DAH", 0, "heldout", 0.10),  # another query set: not in the "all" table
            _row("A→C", "SuH", 0, "heldout", 0.60), _row("C→A", "SuH", 0, "heldout", 0.50)]
    text = retrieval_table.table(rows, "map", "all")
    lines = text.splitlines()
    assert lines[0] == "map, 64 bits, queries: all (SuH: the held-out queries only)"
    assert lines[2] == "| Target (task) | DAH | SuH |"
    # Rows by target domain: A (C→A) first. Mean ± sample sd over seeds: 0.75 ± 0.0707, 0.92 ± 0.0283.
    assert lines[4] == "| A (C→A) | 0.750 ± 0.071 | 0.500 |"
    assert lines[5] == "| C (A→C) | 0.920 ± 0.028 | 0.600 |"
    # Avg: per-seed task means 0.85 and 0.82 -> 0.835 ± 0.0212; SuH's one seed -> 0.550.
    assert lines[6] == "| Avg | 0.835 ± 0.021 | 0.550 |"
