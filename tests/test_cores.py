"""Threads per parallel run from the cores that are free."""

from __future__ import annotations

import os

import pytest

from dahash import cores


@pytest.fixture
def four_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)


def test_free_cores_subtract_the_load(four_cores: None) -> None:
    assert cores.usable_cores() == 4
    assert [cores.free_cores(load) for load in (0.0, 0.4, 1.6, 3.0, 9.0)] == [4, 4, 2, 1, 1]


def test_threads_share_the_free_cores(four_cores: None) -> None:
    assert cores.threads_per_worker(1, load=0.0) == 4
    assert cores.threads_per_worker(2, load=0.0) == 2
    # One core busy elsewhere: two runs get one thread each, not two (oversubscription).
    assert cores.threads_per_worker(2, load=1.0) == 1
    assert cores.threads_per_worker(8, load=0.0) == 1


def test_the_system_load_is_read_when_none_is_given(four_cores: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (2.2, 0.0, 0.0))
    assert cores.free_cores() == 2
