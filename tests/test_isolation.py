"""run_isolated: a function run in a forked child, its value or exception back here, its crash reported."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from dahash.errors import DataError
from dahash.isolation import ChildCrashed, run_isolated

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _pid_and(x: np.ndarray) -> tuple[int, np.ndarray]:
    return os.getpid(), x * 2


def _refuse(path: str) -> None:
    raise DataError(f"{path}: refused")


def _segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def _exit_quietly() -> None:
    os._exit(3)


def _unpicklable() -> object:
    return lambda: None


def test_the_value_comes_back_from_another_process() -> None:
    pid, doubled = run_isolated(_pid_and, np.arange(3))
    assert pid != os.getpid()
    np.testing.assert_array_equal(doubled, [0, 2, 4])


def test_an_exception_is_raised_here_as_it_was_raised_there() -> None:
    with pytest.raises(DataError, match="^f.mat: refused$"):
        run_isolated(_refuse, "f.mat")


def test_a_crash_is_reported_and_this_process_lives_on() -> None:
    with pytest.raises(ChildCrashed, match="crashed with SIGSEGV"):
        run_isolated(_segfault)
    with pytest.raises(ChildCrashed, match="exited with status 3 and no answer"):
        run_isolated(_exit_quietly)
    assert run_isolated(_pid_and, np.ones(1))[1][0] == 2


def test_a_value_that_cannot_travel_is_an_error_not_a_hang() -> None:
    with pytest.raises(RuntimeError, match="PicklingError|AttributeError"):
        run_isolated(_unpicklable)
