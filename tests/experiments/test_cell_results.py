"""Per-cell results: collected from a run folder, written and read back, and the tables remade from them by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dahash.errors import DataError
from dahash.experiments.cell_results import collect_cells, read_cells, tables, write_cells


def _cell(root: Path, method: str, task: str, seed: int, accuracy: float, map_: float | None = None) -> None:
    folder = root / "cells" / method / task / f"seed{seed}"
    folder.mkdir(parents=True)
    metrics = {"target_accuracy": accuracy, "train_seconds": 1.0, **({"map": map_} if map_ is not None else {})}
    (folder / "results.json").write_text(json.dumps({"config": {}, "metrics": metrics}))


def test_cells_round_trip_and_tables_by_hand(tmp_path: Path) -> None:
    for seed, (noda, dah) in enumerate([(90.0, 92.0), (80.0, 81.0)]):
        _cell(tmp_path, "NoDA", "A_W", seed, noda, 0.9)
        _cell(tmp_path, "DAH", "A_W", seed, dah, 0.95)
        _cell(tmp_path, "NoDA", "W_D", seed, 70.0)
        _cell(tmp_path, "DAH", "W_D", seed, 73.0)
    _cell(tmp_path, "GFK", "A_W", 0, 85.0)
    (tmp_path / "cells" / "DAN" / "A_W" / "seed0").mkdir(parents=True)  # unfinished: no results.json
    rows = collect_cells(tmp_path)
    assert len(rows) == 9 and {r["task"] for r in rows} == {"A→W", "W→D"}
    write_cells(tmp_path / "cells.csv", rows)
    back = read_cells(tmp_path / "cells.csv")
    assert [(r["method"], r["task"], r["seed"], r["target_accuracy"]) for r in back] == \
        [(r["method"], r["task"], r["seed"], r["target_accuracy"]) for r in rows]
    assert math.isnan([r for r in back if r["method"] == "GFK"][0]["map"])
    text = tables(back, ["NoDA", "DAH", "GFK"])
    # DAH: A->W (92 + 81) / 2 = 86.5, W->D 73; per-seed averages 82.5 and 77, mean 79.75, sd 3.89.
    assert "| DAH | 2/2 | 86.50 | 73.00 | 79.75 ± 3.89 |" in text
    assert "| GFK | 0/1 | 85.00 | - | - |" in text  # a seed without every task has no Avg
    # Paired with NoDA: differences 2, 1, 3, 3: mean 2.25; GFK pairs with seed 0 of A->W: 85 - 90, no interval.
    assert "| DAH | +2.25 [" in text and "| 4 / 0 of 4 |" in text and "| GFK | -5.00 | 0 / 1 of 1 |" in text


def test_a_file_that_is_not_a_cells_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="x.csv: not a cells file"):
        read_cells(tmp_path / "x.csv")
