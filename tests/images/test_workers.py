"""ForkSafeLoader: forked DataLoader workers never finalise the parent's garbage."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
from torch.utils.data import DataLoader, Dataset

from dahash.images.workers import ForkSafeLoader


class _Collecting(Dataset):
    """Each item runs the worker's garbage collector, as a worker allocating images eventually does."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        gc.collect()
        return i


class _Finalised:
    """Writes the pid of the process that finalises it, like a gRPC channel closing itself."""

    def __init__(self, log: Path) -> None:
        self.log = str(log)
        self.cycle = self

    def __del__(self) -> None:
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")


def _finalising_pids(loader_class: type[DataLoader], log: Path) -> set[int]:
    enabled = gc.isenabled()
    gc.disable()  # no automatic collection may run in the parent between the garbage and the fork
    try:
        _Finalised(log)  # unreachable at once, freed only by a collection: a cycle
        list(loader_class(_Collecting(), batch_size=2, num_workers=2))
        gc.collect()
    finally:
        if enabled:
            gc.enable()
    return {int(line) for line in log.read_text().split()}


def test_the_parents_garbage_is_finalised_in_the_parent(tmp_path: Path) -> None:
    assert _finalising_pids(ForkSafeLoader, tmp_path / "pids") == {os.getpid()}


def test_without_it_a_worker_finalises_the_parents_garbage(tmp_path: Path) -> None:
    # The fault the loader exists for, so that the test above can fail: a plain DataLoader's
    # workers each finalise their copy of the cycle.
    pids = _finalising_pids(DataLoader, tmp_path / "pids")
    assert len(pids - {os.getpid()}) == 2


@pytest.mark.parametrize("workers", [0, 2])
def test_it_yields_what_a_dataloader_yields(workers: int) -> None:
    assert [b.tolist() for b in ForkSafeLoader(_Collecting(), batch_size=3, num_workers=workers)] == [[0, 1, 2], [3]]


def test_where_grpc_is_loaded_nothing_is_forked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # gRPC's event engine does not survive a fork (pymilvus's client loads it): load in-process.
    import sys
    import types

    monkeypatch.setitem(sys.modules, "grpc", types.ModuleType("grpc"))
    loader = ForkSafeLoader(_Collecting(), batch_size=2, num_workers=2)
    assert loader.num_workers == 0
    assert _finalising_pids(ForkSafeLoader, tmp_path / "pids") == {os.getpid()}
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3]]
