"""FeatureSet, one domain's features, and load_features, align_domains and save_features for them.

These load, check, align and save the precomputed deep-feature files that dahash adapts between;
the reader of each format is in :mod:`dahash.data.feature_files`, the checks of the arrays read
in :mod:`dahash.data.feature_checks` and the messages they raise in :mod:`dahash.data.feature_errors`.

Conventions
-----------
* A feature set is ``X`` (float32, ``(n_samples, n_features)``), optional integer labels ``y``
  in ``0..C-1``, one string id per row and the names of the ``C`` classes.
* Supported files:

  - ``.npz`` with arrays ``X``, ``y`` and optionally ``ids`` and ``classes``;
  - ``.npy`` features with labels in a second ``.npy``: either given explicitly as
    ``"feats.npy,labels.npy"`` or found next to ``feats.npy`` as ``feats_labels.npy`` or,
    failing that, ``feats.labels.npy``;
  - MATLAB ``.mat`` (v4 to v7 through ``scipy.io.loadmat``; v7.3/HDF5 through ``h5py`` when
    it is installed).

* Unless ``x_key``/``y_key`` are given, the first present of ``X, feas, fts, features`` holds the
  features and the first present of ``y, labels, label, gnd`` the labels (``.npz`` and ``.mat``).
* Labels may be stored as integers or integral floats (MATLAB's ``1.0, 2.0, ...``). Without a
  ``classes`` array they are remapped to ``0..C-1`` in sorted order of their distinct values and
  ``classes`` holds those original values as strings (``"1"``, ``"2"``...). With a ``classes``
  array they must already index into it and are kept as they are.
* Default ids are ``"<file stem>:<row>"``; rows in ids and messages count from 0.
* Every problem with a file raises :class:`dahash.errors.DataError` with one line that starts
  with the file's path.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dahash.data.feature_checks import RawArrays, check_arrays, default_ids, no_duplicates
from dahash.data.feature_errors import data_error, quoted, reason
from dahash.data.feature_files import FeatureKeys, check_file, read_mat, read_npy, read_npy_pair, read_npz
from dahash.isolation import ChildCrashed, run_isolated

__all__ = ["FeatureSet", "load_features", "align_domains", "save_features"]


@dataclass(eq=False)
class FeatureSet:
    """One domain's features, labels, row ids and class names, as loaded from ``path``."""

    X: np.ndarray
    y: np.ndarray | None = None
    ids: np.ndarray = field(default=None)  # type: ignore[assignment]
    classes: list[str] = field(default=None)  # type: ignore[assignment]
    path: str = "<memory>"
    # Files of the domain that could not be read, with the reason; none of them is a row of X.
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Coerce dtypes and fill default ids/classes so that sets built in memory are valid too."""
        self.path = str(self.path)
        self.X = np.ascontiguousarray(self.X, dtype=np.float32)
        if self.X.ndim != 2:
            raise data_error(self.path, f"X has {self.X.ndim} dimensions, expected 2 (n_samples, n_features)")
        n = self.X.shape[0]
        if self.y is not None:
            self.y = np.asarray(self.y).astype(np.int64, copy=False).reshape(-1)
            if self.y.shape[0] != n:
                raise data_error(self.path, f"X has {n} rows but y has {self.y.shape[0]}")
        if self.classes is None:
            top = int(self.y.max()) + 1 if self.y is not None and self.y.size else 0
            self.classes = [str(c) for c in range(top)]
        else:
            self.classes = [str(c) for c in self.classes]
        if self.y is not None and self.y.size and (self.y.min() < 0 or self.y.max() >= len(self.classes)):
            raise data_error(
                self.path,
                f"y has values outside 0..{len(self.classes) - 1} for {len(self.classes)} classes "
                f"(min {int(self.y.min())}, max {int(self.y.max())})",
            )
        if self.ids is None:
            self.ids = default_ids(self.path, n)
        else:
            self.ids = np.asarray(self.ids).astype(str).reshape(-1)
            if self.ids.shape[0] != n:
                raise data_error(self.path, f"ids has {self.ids.shape[0]} entries but X has {n} rows")

    @property
    def n_classes(self) -> int:
        """Number of class names (source classes after :func:`align_domains`)."""
        return len(self.classes)

    @property
    def n_features(self) -> int:
        """Feature dimension D."""
        return int(self.X.shape[1])

    def __len__(self) -> int:
        """Number of samples (rows of X)."""
        return int(self.X.shape[0])


# ----------------------------------------------------------------------------- loading


def load_features(
    path: str | os.PathLike[str],
    *,
    x_key: str | None = None,
    y_key: str | None = None,
    ids_key: str | None = "ids",
    classes_key: str | None = "classes",
    require_labels: bool = True,
) -> FeatureSet:
    """Load and check one domain's feature file (.npz, .npy[,labels.npy] or .mat); see module doc."""
    spec = os.fspath(path)
    keys = FeatureKeys(x_key, y_key, ids_key, classes_key, require_labels)
    # A comma means an explicit features,labels pair unless a file by that exact name exists.
    if "," in spec and not os.path.exists(spec):
        return _build(read_npy_pair(spec, keys))
    check_file(spec)
    ext = Path(spec).suffix.lower()
    if ext == ".npz":
        return _build(read_npz(spec, keys))
    if ext == ".npy":
        return _build(read_npy(spec, None, keys))
    if ext == ".mat":
        # Slow to import, so only for .mat files; here, not in the child, so that it stays imported.
        import scipy.io  # noqa: F401
        try:
            # In a child process: scipy's and HDF5's readers can crash on a damaged file.
            return run_isolated(_load_mat, spec, keys)
        except ChildCrashed as exc:
            raise data_error(spec, f"not a valid .mat file (the MATLAB reader {exc})") from None
    raise data_error(spec, f"unsupported extension '{Path(spec).suffix}' (expected .npz, .npy or .mat)")


def _load_mat(path: str, keys: FeatureKeys) -> FeatureSet:
    """Read and check a MATLAB file; runs in the child, so only the checked set comes back."""
    return _build(read_mat(path, keys))


def _build(raw: RawArrays) -> FeatureSet:
    """Check raw arrays from any format and turn them into a FeatureSet."""
    X, y, ids, classes = check_arrays(raw)
    return FeatureSet(X=X, y=y, ids=ids, classes=classes, path=raw.path)


# ----------------------------------------------------------------------------- aligning


def align_domains(source: FeatureSet, target: FeatureSet) -> tuple[FeatureSet, FeatureSet]:
    """Check a source/target pair and express the target's labels in the source's class indices."""
    if source.n_features != target.n_features:
        raise data_error(
            target.path,
            f"target features have dimension {target.n_features} but source {source.path} has "
            f"{source.n_features}; both domains must use the same feature extractor",
        )
    if source.y is None:
        raise data_error(source.path, "the source domain has no labels; adaptation needs a labeled source")
    no_duplicates(source.path, source.classes, "classes")
    if target.y is None:
        return source, dataclasses.replace(target, classes=list(source.classes))
    index = {name: i for i, name in enumerate(source.classes)}
    # Only classes that some target sample carries must exist in the source.
    used = np.unique(target.y)
    missing = [target.classes[i] for i in used if target.classes[i] not in index]
    if missing:
        hint = ""
        if all(_is_int(c) for c in list(source.classes) + missing):
            hint = " (classes are matched by label value; check 0- vs 1-based labels or store class names)"
        raise data_error(
            target.path,
            f"{len(missing)} target class(es) not in source {source.path}: {quoted(missing)}{hint}",
        )
    lookup = np.array([index.get(name, -1) for name in target.classes], dtype=np.int64)
    y = lookup[target.y]
    return source, dataclasses.replace(target, y=y, classes=list(source.classes))


def _is_int(text: str) -> bool:
    """True for names that are just integers, as made from unnamed label values."""
    return text.lstrip("-").isdigit()


# ----------------------------------------------------------------------------- saving


def save_features(path: str | os.PathLike[str], fs: FeatureSet) -> None:
    """Write ``fs`` to a .npz that :func:`load_features` reads back, replacing ``path`` atomically."""
    target = os.fspath(path)
    if Path(target).suffix.lower() != ".npz":
        raise data_error(target, "save_features writes .npz files; give the path a .npz extension")
    arrays: dict[str, np.ndarray] = {
        "X": np.ascontiguousarray(fs.X, dtype=np.float32),
        "ids": np.asarray(fs.ids).astype(str),
    }
    if fs.y is not None:
        arrays["y"] = np.asarray(fs.y, dtype=np.int64)
    if fs.classes:
        arrays["classes"] = np.array(list(fs.classes), dtype=str)
    directory = os.path.dirname(os.path.abspath(target))
    # A hidden temp name in the same directory keeps os.replace atomic (same filesystem).
    tmp = os.path.join(directory, f".{Path(target).name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise data_error(target, f"cannot write ({reason(exc)})") from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
