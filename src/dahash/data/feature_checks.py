"""Checks that turn the raw arrays read from any feature file into FeatureSet's X, y, ids and classes.

Every check raises a one-line :class:`dahash.errors.DataError` that starts with the file's path
and names the variable as the file stores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from dahash.data.feature_errors import data_error, quoted

__all__ = ["CheckedArrays", "RawArrays", "check_arrays", "default_ids", "no_duplicates", "to_strings"]


@dataclass(frozen=True)
class RawArrays:
    """The arrays a reader found in one file, not yet checked, and the names messages give them."""

    path: str
    X: Any
    y: Any
    ids: list[str] | None = None
    classes: list[str] | None = None
    x_name: str = "X"
    y_name: str = "y"
    ids_name: str = "ids"
    classes_name: str = "classes"


class CheckedArrays(NamedTuple):
    """Checked float32 X, int64 labels in 0..C-1 (or None), one id per row and the C class names."""

    X: np.ndarray
    y: np.ndarray | None
    ids: np.ndarray
    classes: list[str]


def check_arrays(raw: RawArrays) -> CheckedArrays:
    """Check raw arrays from any format; shapes first, then values, then class names and ids."""
    X = _matrix(raw.path, raw.X, raw.x_name)
    labels = _label_vector(raw, X.shape) if raw.y is not None else None
    features = _finite_float32(raw.path, X, raw.x_name)
    if labels is not None:
        labels = _integral(raw.path, labels, raw.y_name)
    labels, classes = _classes(raw, labels)
    return CheckedArrays(features, labels, _ids(raw, X.shape[0]), classes)


def _matrix(path: str, value: Any, name: str) -> np.ndarray:
    """A dense numeric 2-D array with at least one row and one column; raise for anything else."""
    X = _dense(value)
    if not isinstance(X, np.ndarray) or X.dtype.kind not in "biuf":
        kind = "complex" if isinstance(X, np.ndarray) and X.dtype.kind == "c" else "not numeric"
        raise data_error(path, f"{name} is {kind} (dtype {getattr(X, 'dtype', type(X).__name__)})")
    if X.ndim != 2:
        raise data_error(path, f"{name} has {X.ndim} dimensions, expected 2 (n_samples, n_features)")
    n, dim = X.shape
    if n == 0:
        raise data_error(path, f"{name} is empty (0 rows)")
    if dim == 0:
        raise data_error(path, f"{name} has 0 features (0 columns)")
    return X


def _label_vector(raw: RawArrays, shape: tuple[int, ...]) -> np.ndarray:
    """The labels as a numeric vector with one entry per row of X."""
    n, dim = shape
    labels = _vector(raw.path, _dense(raw.y), raw.y_name, n)
    if labels.dtype.kind not in "biuf":
        raise data_error(raw.path, f"{raw.y_name} is not numeric (dtype {labels.dtype}); labels must be integers")
    if labels.shape[0] != n:
        if dim == labels.shape[0]:
            raise data_error(
                raw.path,
                f"{raw.x_name} has shape ({n}, {dim}) but {raw.y_name} has {dim} labels: the features look "
                f"transposed (expected (n_samples, n_features)); re-save them transposed",
            )
        raise data_error(raw.path, f"{raw.x_name} has {n} rows but {raw.y_name} has {labels.shape[0]}")
    return labels


def _vector(path: str, value: Any, name: str, n: int) -> np.ndarray:
    """Flatten an ``(n,)``, ``(n, 1)`` or ``(1, n)`` array; reject real matrices."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        return arr.reshape(1)
    if arr.ndim > 1:
        if sum(s != 1 for s in arr.shape) > 1:
            raise data_error(path, f"{name} has shape {tuple(arr.shape)}, expected a vector of {n} labels")
        arr = arr.reshape(-1)
    return arr


def _finite_float32(path: str, X: np.ndarray, name: str) -> np.ndarray:
    """Reject NaN/inf (also from float32 overflow) and return contiguous float32 features."""
    if X.dtype.kind == "f":
        _check_finite(path, X, name, "NaN/inf values")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(X, dtype=np.float32)
    if X.dtype.kind == "f" and X.dtype.itemsize > 4:
        _check_finite(path, out, name, "values too large for float32")
    return out


def _check_finite(path: str, X: np.ndarray, name: str, what: str) -> None:
    """Raise naming the count and first row of non-finite entries."""
    bad = ~np.isfinite(X)
    count = int(bad.sum())
    if count:
        row = int(np.argmax(bad.any(axis=1)))
        raise data_error(path, f"{name} contains {count} {what} (first at row {row})")


def _integral(path: str, labels: np.ndarray, name: str) -> np.ndarray:
    """Return int64 labels, accepting integral floats and rejecting anything else."""
    if labels.dtype.kind in "biu":
        return labels.astype(np.int64)
    bad = ~np.isfinite(labels)
    if bad.any():
        raise data_error(path, f"{name} contains {int(bad.sum())} NaN/inf values (first at row {int(np.argmax(bad))})")
    fractional = labels != np.round(labels)
    if fractional.any():
        row = int(np.argmax(fractional))
        raise data_error(path, f"{name} has non-integer values (e.g. {labels[row]!r} at row {row})")
    if np.abs(labels).max() >= 2.0**62:
        raise data_error(path, f"{name} has values too large to be class labels (max {labels.max()!r})")
    return labels.astype(np.int64)


def _classes(raw: RawArrays, labels: np.ndarray | None) -> tuple[np.ndarray | None, list[str]]:
    """Labels and class names: stored names checked against the labels, else made from label values."""
    classes = raw.classes
    if classes is not None:
        if not classes:
            raise data_error(raw.path, f"{raw.classes_name} is empty")
        no_duplicates(raw.path, classes, raw.classes_name)
        if labels is not None and (labels.min() < 0 or labels.max() >= len(classes)):
            low, high = int(labels.min()), int(labels.max())
            # MATLAB files often pair a class-name cell with 1-based labels.
            hint = "; they look 1-based, subtract 1" if low >= 1 and high == len(classes) else ""
            raise data_error(
                raw.path,
                f"{raw.y_name} has values outside 0..{len(classes) - 1} for the {len(classes)} names in "
                f"{raw.classes_name} (min {low}, max {high}){hint}",
            )
        return labels, classes
    if labels is not None:
        values, inverse = np.unique(labels, return_inverse=True)
        return inverse.astype(np.int64).reshape(-1), [str(int(v)) for v in values]
    return None, []


def _ids(raw: RawArrays, n: int) -> np.ndarray:
    """The stored ids, one per row and none twice, or the default ids."""
    if raw.ids is None:
        return default_ids(raw.path, n)
    if len(raw.ids) != n:
        raise data_error(raw.path, f"{raw.ids_name} has {len(raw.ids)} entries but {raw.x_name} has {n} rows")
    no_duplicates(raw.path, raw.ids, raw.ids_name)
    return np.array(raw.ids, dtype=str)


def to_strings(path: str, name: str, value: Any, strip: bool) -> list[str]:
    """Turn a string array, MATLAB cellstr/char matrix or numeric vector into a list of str."""
    arr = np.asarray(_dense(value))
    if arr.ndim > 1:
        if sum(s != 1 for s in arr.shape) > 1:
            raise data_error(path, f"'{name}' has shape {tuple(arr.shape)}, expected a vector of names")
        arr = arr.reshape(-1)
    elif arr.ndim == 0:
        arr = arr.reshape(1)
    out = [_one_string(path, name, item) for item in arr]
    # MATLAB char matrices pad shorter rows with blanks.
    return [s.rstrip() for s in out] if strip else out


def _one_string(path: str, name: str, item: Any) -> str:
    """Convert one element of a name/id array (possibly a nested MATLAB cell) to str."""
    if isinstance(item, bytes):
        return item.decode("utf-8", "replace")
    if isinstance(item, str):
        return item
    if isinstance(item, np.ndarray):
        if item.size == 0:
            return ""
        if item.dtype.kind in "US" and item.ndim <= 2 and item.size == 1:
            return _one_string(path, name, item.reshape(-1)[0])
        if item.size == 1:
            return _one_string(path, name, item.reshape(-1)[0])
        raise data_error(path, f"'{name}' has an element of shape {tuple(item.shape)}, expected one name each")
    if isinstance(item, (np.integer, int, np.bool_, bool)):
        return str(int(item))
    if isinstance(item, (np.floating, float)):
        return str(int(item)) if float(item).is_integer() else str(float(item))
    raise data_error(path, f"'{name}' has an element of type {type(item).__name__}, expected strings or numbers")


def _dense(value: Any) -> Any:
    """Densify scipy sparse matrices (MATLAB stores some feature sets sparse)."""
    if not isinstance(value, np.ndarray) and hasattr(value, "toarray"):
        return value.toarray()
    return value


def no_duplicates(path: str, names: Sequence[str], what: str) -> None:
    """Raise if ``names`` repeats an entry, since lookups by name would be ambiguous."""
    seen: set[str] = set()
    dups: list[str] = []
    for name in names:
        if name in seen and name not in dups:
            dups.append(name)
        seen.add(name)
    if dups:
        raise data_error(path, f"{what} has duplicate entries: {quoted(dups)}")


def default_ids(path: str, n: int) -> np.ndarray:
    """Ids ``"<file stem>:<row>"`` for a file without an ids array."""
    stem = Path(path).stem
    return np.array([f"{stem}:{i}" for i in range(n)], dtype=str)
