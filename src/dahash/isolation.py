"""Run a reader in a forked child process, so that a crash in native code cannot take the caller down.

``scipy.io.loadmat`` dies with a segmentation fault on some damaged MATLAB files (found by
``benchmarks/fuzz.sh``: one flipped byte in a small-element tag, scipy 1.17). A process cannot
catch that, so a damaged feature file would end a training run or a server without a word. Read
in a child, such a file costs the child, and the caller gets :class:`ChildCrashed` to report.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import pickle
import signal
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ChildCrashed", "run_isolated"]

T = TypeVar("T")


class ChildCrashed(Exception):
    """The child died from a signal or exited without an answer; the message says which."""


def run_isolated(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a forked child: its return value, or the exception it raised, raised here.

    :class:`ChildCrashed` when the child dies (a segmentation fault in a C extension). The value
    and any exception must pickle. Where ``os.fork`` does not exist (Windows), ``fn`` runs here.
    """
    if not hasattr(os, "fork"):
        return fn(*args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(read_end, write_end, fn, args)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        raise ChildCrashed(f"crashed with {signal.Signals(os.WTERMSIG(status)).name}")
    if not payload:
        raise ChildCrashed(f"exited with status {os.waitstatus_to_exitcode(status)} and no answer")
    kind, value = pickle.loads(payload)
    if kind == "error":
        raise value
    return value


def _child(read_end: int, write_end: int, fn: Callable[..., Any], args: tuple) -> None:
    """The forked side: run, send ``("ok", value)`` or ``("error", exception)``, exit at once."""
    code = 0
    try:
        os.close(read_end)
        # Finalising the parent's garbage here could call into libraries (gRPC) whose threads
        # did not survive the fork.
        gc.disable()
        # The parent reports a crash in one line; a traceback dump of the child's would be noise.
        faulthandler.disable()
        try:
            result: tuple[str, Any] = ("ok", fn(*args))
        except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the parent
            result = ("error", exc)
        try:
            payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - an unpicklable value or exception
            payload = pickle.dumps(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
    except BaseException:  # noqa: BLE001 - nothing may escape into the parent's code
        code = 1
    finally:
        # No atexit handlers, no flushing of the parent's buffers a second time.
        os._exit(code)
