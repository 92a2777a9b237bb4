"""benchmarks/own_features_table.py: library rows read from a cells CSV, and the training stage shared between
the methods of one task and seed (copied, never over a finished run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "own_features_table.py"
spec = importlib.util.spec_from_file_location("own_features_table", SCRIPT)
own_features_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(own_features_table)

TASKS = [("amazon", "dslr"), ("dslr", "amazon")]


def _csv(path: Path, rows: list[tuple[str, str, int, float]]) -> Path:
    path.write_text("method,task,seed,target_accuracy,map\n"
                    + "".join(f"{m},{t},{k},{a},\n" for m, t, k, a in rows))
    return path


def test_cells_csv_keys_by_domain_pair_and_seed_and_checks_every_cell_is_there(tmp_path: Path) -> None:
    path = _csv(tmp_path / "cells.csv", [("NoDA", "A→D", 0, 90.5), ("NoDA", "D→A", 0, 70.0),
                                         ("NoDA", "A→D", 1, 91.0), ("NoDA", "D→A", 1, 71.0),
                                         ("NoDA", "A→W", 0, 1.0),  # not a task of the table: ignored
                                         ("DAH", "A→D", 0, 50.0)])
    acc = own_features_table.cells_csv(path, ["NoDA"], TASKS, seeds=2)
    assert acc == {"NoDA": {("amazon", "dslr", 0): 90.5, ("dslr", "amazon", 0): 70.0,
                            ("amazon", "dslr", 1): 91.0, ("dslr", "amazon", 1): 71.0}}
    with pytest.raises(SystemExit, match="DAH has 1 of the 4 cells"):
        own_features_table.cells_csv(path, ["DAH"], TASKS, seeds=2)


def test_share_stage_copies_the_first_runs_candidates_but_never_into_a_finished_run(tmp_path: Path) -> None:
    first, cell, finished = tmp_path / "NoDA", tmp_path / "DAH", tmp_path / "DAH-e"
    (first / "schedule" / "candidates").mkdir(parents=True)
    for name, text in (("000.json", "a"), ("000.target.npy", "b"), ("000.lock", "c")):
        (first / "schedule" / "candidates" / name).write_text(text)
    (cell / "schedule" / "candidates").mkdir(parents=True)
    (cell / "schedule" / "candidates" / "000.target.npy").write_text("kept")
    own_features_table.share_stage(first, cell)
    copied = {p.name: p.read_text() for p in (cell / "schedule" / "candidates").iterdir()}
    assert copied == {"000.json": "a", "000.target.npy": "kept"}  # no lock; an existing file is not replaced
    finished.mkdir()
    (finished / "results.json").write_text("{}")
    own_features_table.share_stage(first, finished)
    assert not (finished / "schedule").exists()
