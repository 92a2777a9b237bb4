"""The one-line DataError messages of feature files: the error itself, a short reason, short name lists."""

from __future__ import annotations

from collections.abc import Sequence

from dahash.errors import DataError

__all__ = ["data_error", "listing", "quoted", "reason", "reraise_memory"]

# Lists in messages stay short so that a 1000-class mismatch still fits on one readable line.
_MAX_LISTED = 10
_MAX_REASON = 200


def data_error(path: str, message: str) -> DataError:
    """A DataError whose single-line message starts with the path."""
    return DataError(" ".join(f"{path}: {message}".splitlines()))


def reason(exc: BaseException) -> str:
    """A short one-line description of an underlying exception."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def reraise_memory(exc: BaseException) -> None:
    """Let MemoryError through unwrapped: it is the machine, not the file."""
    if isinstance(exc, MemoryError):
        raise exc


def listing(names: Sequence[str]) -> str:
    """Comma-separated names, shortened when long."""
    if not names:
        return "nothing"
    shown = ", ".join(names[:_MAX_LISTED])
    return shown if len(names) <= _MAX_LISTED else f"{shown}, ... ({len(names)} in all)"


def quoted(names: Sequence[str]) -> str:
    """Quoted names, shortened when long."""
    shown = ", ".join(repr(str(n)) for n in names[:_MAX_LISTED])
    return shown if len(names) <= _MAX_LISTED else f"{shown}, ... and {len(names) - _MAX_LISTED} more"
