"""Load, check, align and save the precomputed deep-feature files that dahash adapts between.

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
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dahash.errors import DataError
from dahash.isolation import ChildCrashed, run_isolated

__all__ = ["FeatureSet", "load_features", "align_domains", "save_features"]

X_KEYS: tuple[str, ...] = ("X", "feas", "fts", "features")
Y_KEYS: tuple[str, ...] = ("y", "labels", "label", "gnd")
LABEL_SIBLING_SUFFIXES: tuple[str, ...] = ("_labels.npy", ".labels.npy")

_NPZ_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"
# Lists in messages stay short so that a 1000-class mismatch still fits on one readable line.
_MAX_LISTED = 10
_MAX_REASON = 200


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
            raise _error(self.path, f"X has {self.X.ndim} dimensions, expected 2 (n_samples, n_features)")
        n = self.X.shape[0]
        if self.y is not None:
            self.y = np.asarray(self.y).astype(np.int64, copy=False).reshape(-1)
            if self.y.shape[0] != n:
                raise _error(self.path, f"X has {n} rows but y has {self.y.shape[0]}")
        if self.classes is None:
            top = int(self.y.max()) + 1 if self.y is not None and self.y.size else 0
            self.classes = [str(c) for c in range(top)]
        else:
            self.classes = [str(c) for c in self.classes]
        if self.y is not None and self.y.size and (self.y.min() < 0 or self.y.max() >= len(self.classes)):
            raise _error(
                self.path,
                f"y has values outside 0..{len(self.classes) - 1} for {len(self.classes)} classes "
                f"(min {int(self.y.min())}, max {int(self.y.max())})",
            )
        if self.ids is None:
            self.ids = _default_ids(self.path, n)
        else:
            self.ids = np.asarray(self.ids).astype(str).reshape(-1)
            if self.ids.shape[0] != n:
                raise _error(self.path, f"ids has {self.ids.shape[0]} entries but X has {n} rows")

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
    keys = _Keys(x_key, y_key, ids_key, classes_key, require_labels)
    # A comma means an explicit features,labels pair unless a file by that exact name exists.
    if "," in spec and not os.path.exists(spec):
        return _load_npy_pair(spec, keys)
    _check_file(spec)
    ext = Path(spec).suffix.lower()
    if ext == ".npz":
        return _load_npz(spec, keys)
    if ext == ".npy":
        return _load_npy(spec, None, keys)
    if ext == ".mat":
        # Slow to import, so only for .mat files; here, not in the child, so that it stays imported.
        import scipy.io  # noqa: F401
        try:
            # In a child process: scipy's and HDF5's readers can crash on a damaged file.
            return run_isolated(_load_mat, spec, keys)
        except ChildCrashed as exc:
            raise _error(spec, f"not a valid .mat file (the MATLAB reader {exc})") from None
    raise _error(spec, f"unsupported extension '{Path(spec).suffix}' (expected .npz, .npy or .mat)")


@dataclass(frozen=True)
class _Keys:
    """The key choices of one load_features call, passed around as one value."""

    x_key: str | None
    y_key: str | None
    ids_key: str | None
    classes_key: str | None
    require_labels: bool


def _load_npz(path: str, keys: _Keys) -> FeatureSet:
    """Read a .npz archive without unpickling anything."""
    head = _head(path)
    if head.startswith(_NPY_MAGIC):
        raise _error(path, "not a valid .npz file (it holds a single .npy array; name it .npy)")
    if not head.startswith(_NPZ_MAGIC):
        raise _error(path, "not a valid .npz file (not a zip archive)")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any parser failure means a malformed file
        _reraise_memory(exc)
        raise _error(path, f"not a valid .npz file ({_reason(exc)})") from exc
    try:
        names = list(archive.files)

        def read(name: str) -> Any:
            try:
                _check_npz_member_size(archive.zip, name + ".npy")
                return archive[name]
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise _error(
                        path,
                        f"array '{name}' is a pickled object array, which dahash does not load "
                        "(re-save it as a numeric or string array)",
                    ) from exc
                raise _error(path, f"not a valid .npz file (array '{name}': {_reason(exc)})") from exc
            except Exception as exc:  # noqa: BLE001 - corrupt zip members surface as many types
                _reraise_memory(exc)
                raise _error(path, f"not a valid .npz file (array '{name}': {_reason(exc)})") from exc

        return _select(path, names, read, keys)
    finally:
        archive.close()


def _check_npz_member_size(archive: zipfile.ZipFile, member: str) -> None:
    """A ValueError when a member's .npy header claims more bytes than the member holds, before
    numpy allocates what the header claims."""
    if member not in archive.namelist():
        return  # a member stored without the .npy suffix: numpy reads it as raw bytes
    info = archive.getinfo(member)
    with archive.open(info) as stream:
        if stream.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
            return  # numpy's own error says what it is
        stream.seek(0)
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            return  # version 3.0 headers: numpy's own checks
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if not dtype.hasobject and claimed > info.file_size:
        raise ValueError(f"its header claims {claimed} bytes of data but it holds {info.file_size}")


def _load_npy_pair(spec: str, keys: _Keys) -> FeatureSet:
    """Load an explicit ``features.npy,labels.npy`` pair."""
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 2 or not all(parts):
        raise _error(spec, "a comma-separated path must name exactly two files: features.npy,labels.npy")
    feats, labels = parts
    for part in parts:
        if Path(part).suffix.lower() != ".npy":
            raise _error(part, f"unsupported extension '{Path(part).suffix}' in a pair (expected two .npy files)")
        _check_file(part)
    return _load_npy(feats, labels, keys)


def _load_npy(path: str, labels_path: str | None, keys: _Keys) -> FeatureSet:
    """Load .npy features plus labels from ``labels_path`` or a sibling labels file."""
    X = _read_npy(path)
    if labels_path is None:
        labels_path = _sibling_labels(path)
        if labels_path is None and keys.require_labels:
            stem = Path(path).name[: -len(".npy")]
            tried = " or ".join(stem + s for s in LABEL_SIBLING_SUFFIXES)
            raise _error(
                path,
                f"no labels found (looked for {tried} next to it; or pass 'features.npy,labels.npy')",
            )
    y = _read_npy(labels_path) if labels_path is not None else None
    y_name = f"y ({Path(labels_path).name})" if labels_path is not None else "y"
    return _build(path, X, y, None, None, x_name="X", y_name=y_name)


def _sibling_labels(path: str) -> str | None:
    """Return the first existing ``<stem>_labels.npy`` / ``<stem>.labels.npy`` beside ``path``."""
    base = path[: -len(Path(path).suffix)]
    for suffix in LABEL_SIBLING_SUFFIXES:
        candidate = base + suffix
        if os.path.isfile(candidate):
            return candidate
    return None


def _read_npy(path: str) -> np.ndarray:
    """Read one .npy array without unpickling."""
    if not _head(path).startswith(_NPY_MAGIC):
        raise _error(path, "not a valid .npy file (no NumPy header)")
    try:
        # Mapped first: a header that claims more data than the file holds fails here instead of
        # allocating what it claims (terabytes, for a damaged or hostile file).
        with np.errstate(over="ignore"):  # numpy's own size arithmetic on an absurd header
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        array = np.array(mapped)
        del mapped
        return array
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Python objects" in str(exc):
            raise _error(
                path,
                "holds a pickled object array, which dahash does not load (re-save it as a numeric array)",
            ) from exc
        raise _error(path, f"not a valid .npy file ({_reason(exc)})") from exc
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt files raise assorted errors
        _reraise_memory(exc)
        raise _error(path, f"not a valid .npy file ({_reason(exc)})") from exc


def _load_mat(path: str, keys: _Keys) -> FeatureSet:
    """Read a MATLAB file, falling back to h5py for v7.3 (HDF5) files."""
    import scipy.io  # scipy.io is slow to import and only .mat files need it

    try:
        # No squeeze_me: a one-row X must stay 2-D; label and name vectors are flattened later.
        data = scipy.io.loadmat(path, chars_as_strings=True)
    except NotImplementedError:
        return _load_mat73(path, keys)
    except Exception as exc:  # noqa: BLE001 - scipy's readers raise many exception types
        _reraise_memory(exc)
        raise _error(path, f"not a valid .mat file ({_reason(exc)})") from exc
    names = [k for k in data if not k.startswith("__")]
    return _select(path, names, data.__getitem__, keys, strip_names=True)


def _load_mat73(path: str, keys: _Keys) -> FeatureSet:
    """Read a MATLAB v7.3 file, which is HDF5 with every array stored transposed."""
    try:
        import h5py
    except ImportError:
        raise _error(
            path,
            "is a MATLAB v7.3 (HDF5) file; install h5py to read it, or re-save it in MATLAB with save(..., '-v7')",
        ) from None
    try:
        handle = h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 - h5py reports corrupt files as OSError or worse
        _reraise_memory(exc)
        raise _error(path, f"not a valid MATLAB v7.3 (HDF5) file ({_reason(exc)})") from exc
    with handle:
        try:
            names = [k for k in handle.keys() if not k.startswith("#")]
        except Exception as exc:  # noqa: BLE001 - a damaged group table fails only when it is walked
            _reraise_memory(exc)
            raise _error(path, f"not a valid MATLAB v7.3 (HDF5) file ({_reason(exc)})") from exc

        def read(name: str) -> Any:
            try:
                return _h5_value(handle, handle[name], path, name, h5py)
            except DataError:
                raise
            except Exception as exc:  # noqa: BLE001 - wrap HDF5 read errors into one line
                _reraise_memory(exc)
                raise _error(path, f"cannot read variable '{name}' ({_reason(exc)})") from exc

        return _select(path, names, read, keys, strip_names=True)


def _h5_value(handle: Any, obj: Any, path: str, name: str, h5py: Any) -> Any:
    """Convert one MATLAB v7.3 variable to numpy, undoing MATLAB's column-major transposition."""
    if isinstance(obj, h5py.Group):
        if "MATLAB_sparse" in obj.attrs:
            import scipy.sparse

            n_rows = int(obj.attrs["MATLAB_sparse"])
            jc = obj["jc"][()]
            ir = obj["ir"][()] if "ir" in obj else np.zeros(0, dtype=np.int64)
            values = obj["data"][()] if "data" in obj else np.zeros(0)
            return scipy.sparse.csc_matrix((values, ir, jc), shape=(n_rows, len(jc) - 1)).toarray()
        raise _error(path, f"variable '{name}' is a MATLAB struct or object, expected a numeric array")
    matlab_class = obj.attrs.get("MATLAB_class", b"")
    if isinstance(matlab_class, bytes):
        matlab_class = matlab_class.decode("ascii", "replace")
    if obj.attrs.get("MATLAB_empty", 0):
        # An empty MATLAB array stores its dimensions as data, not values.
        return np.zeros(0)
    data = np.asarray(obj[()])
    data = data.T if data.ndim >= 2 else data
    if matlab_class == "char":
        rows = np.atleast_2d(data).astype(np.uint16)
        return np.array([np.ascontiguousarray(r).tobytes().decode("utf-16-le", "replace").rstrip() for r in rows])
    if matlab_class == "cell":
        out = np.empty(data.shape, dtype=object)
        for index, ref in np.ndenumerate(data):
            out[index] = _h5_value(handle, handle[ref], path, name, h5py)
        return out
    return data


def _select(
    path: str,
    names: list[str],
    read: Callable[[str], Any],
    keys: _Keys,
    *,
    strip_names: bool = False,
) -> FeatureSet:
    """Pick the X / y / ids / classes variables among ``names`` and build the checked set."""
    x_name = _pick(path, names, keys.x_key, X_KEYS, "X", required=True)
    assert x_name is not None  # _pick raises when a required key is missing
    y_name = _pick(path, names, keys.y_key, Y_KEYS, "y", required=keys.require_labels or keys.y_key is not None)
    ids_name = keys.ids_key if keys.ids_key is not None and keys.ids_key in names else None
    cls_name = keys.classes_key if keys.classes_key is not None and keys.classes_key in names else None
    X = read(x_name)
    y = read(y_name) if y_name is not None else None
    ids = _strings(path, ids_name, read(ids_name), strip_names) if ids_name is not None else None
    classes = _strings(path, cls_name, read(cls_name), strip_names) if cls_name is not None else None
    return _build(
        path,
        X,
        y,
        ids,
        classes,
        x_name=_label("X", x_name),
        y_name=_label("y", y_name),
        ids_name=_label("ids", ids_name),
        classes_name=_label("classes", cls_name),
    )


def _pick(
    path: str, names: list[str], key: str | None, defaults: Sequence[str], role: str, *, required: bool
) -> str | None:
    """Return the explicit key or the first default present; raise if required and absent."""
    if key is not None:
        if key in names:
            return key
        if required:
            raise _error(path, f"missing array '{key}' (found: {_listing(names)})")
        return None
    for candidate in defaults:
        if candidate in names:
            return candidate
    if required:
        also = ", ".join(defaults[1:])
        raise _error(
            path,
            f"missing array '{defaults[0]}' (no {role} under any of its names: {defaults[0]}, {also}; "
            f"found: {_listing(names)})",
        )
    return None


def _build(
    path: str,
    X: Any,
    y: Any,
    ids: list[str] | None,
    classes: list[str] | None,
    *,
    x_name: str = "X",
    y_name: str = "y",
    ids_name: str = "ids",
    classes_name: str = "classes",
) -> FeatureSet:
    """Check raw arrays from any format and turn them into a FeatureSet."""
    X = _dense(X)
    if not isinstance(X, np.ndarray) or X.dtype.kind not in "biuf":
        kind = "complex" if isinstance(X, np.ndarray) and X.dtype.kind == "c" else "not numeric"
        raise _error(path, f"{x_name} is {kind} (dtype {getattr(X, 'dtype', type(X).__name__)})")
    if X.ndim != 2:
        raise _error(path, f"{x_name} has {X.ndim} dimensions, expected 2 (n_samples, n_features)")
    n, dim = X.shape
    if n == 0:
        raise _error(path, f"{x_name} is empty (0 rows)")
    if dim == 0:
        raise _error(path, f"{x_name} has 0 features (0 columns)")

    labels = None
    if y is not None:
        labels = _vector(path, _dense(y), y_name, n)
        if labels.dtype.kind not in "biuf":
            raise _error(path, f"{y_name} is not numeric (dtype {labels.dtype}); labels must be integers")
        if labels.shape[0] != n:
            if dim == labels.shape[0]:
                raise _error(
                    path,
                    f"{x_name} has shape ({n}, {dim}) but {y_name} has {dim} labels: the features look "
                    f"transposed (expected (n_samples, n_features)); re-save them transposed",
                )
            raise _error(path, f"{x_name} has {n} rows but {y_name} has {labels.shape[0]}")

    features = _finite_float32(path, X, x_name)
    if labels is not None:
        labels = _integral(path, labels, y_name)

    if classes is not None:
        if not classes:
            raise _error(path, f"{classes_name} is empty")
        _no_duplicates(path, classes, classes_name)
        if labels is not None and (labels.min() < 0 or labels.max() >= len(classes)):
            low, high = int(labels.min()), int(labels.max())
            # MATLAB files often pair a class-name cell with 1-based labels.
            hint = "; they look 1-based, subtract 1" if low >= 1 and high == len(classes) else ""
            raise _error(
                path,
                f"{y_name} has values outside 0..{len(classes) - 1} for the {len(classes)} names in "
                f"{classes_name} (min {low}, max {high}){hint}",
            )
    elif labels is not None:
        values, labels = np.unique(labels, return_inverse=True)
        labels = labels.astype(np.int64).reshape(-1)
        classes = [str(int(v)) for v in values]
    else:
        classes = []

    if ids is not None:
        if len(ids) != n:
            raise _error(path, f"{ids_name} has {len(ids)} entries but {x_name} has {n} rows")
        _no_duplicates(path, ids, ids_name)
        id_array = np.array(ids, dtype=str)
    else:
        id_array = _default_ids(path, n)
    return FeatureSet(X=features, y=labels, ids=id_array, classes=classes, path=path)


def _vector(path: str, value: Any, name: str, n: int) -> np.ndarray:
    """Flatten an ``(n,)``, ``(n, 1)`` or ``(1, n)`` array; reject real matrices."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        return arr.reshape(1)
    if arr.ndim > 1:
        if sum(s != 1 for s in arr.shape) > 1:
            raise _error(path, f"{name} has shape {tuple(arr.shape)}, expected a vector of {n} labels")
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
        raise _error(path, f"{name} contains {count} {what} (first at row {row})")


def _integral(path: str, labels: np.ndarray, name: str) -> np.ndarray:
    """Return int64 labels, accepting integral floats and rejecting anything else."""
    if labels.dtype.kind in "biu":
        return labels.astype(np.int64)
    bad = ~np.isfinite(labels)
    if bad.any():
        raise _error(path, f"{name} contains {int(bad.sum())} NaN/inf values (first at row {int(np.argmax(bad))})")
    fractional = labels != np.round(labels)
    if fractional.any():
        row = int(np.argmax(fractional))
        raise _error(path, f"{name} has non-integer values (e.g. {labels[row]!r} at row {row})")
    if np.abs(labels).max() >= 2.0**62:
        raise _error(path, f"{name} has values too large to be class labels (max {labels.max()!r})")
    return labels.astype(np.int64)


def _strings(path: str, name: str, value: Any, strip: bool) -> list[str]:
    """Turn a string array, MATLAB cellstr/char matrix or numeric vector into a list of str."""
    arr = np.asarray(_dense(value))
    if arr.ndim > 1:
        if sum(s != 1 for s in arr.shape) > 1:
            raise _error(path, f"'{name}' has shape {tuple(arr.shape)}, expected a vector of names")
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
        raise _error(path, f"'{name}' has an element of shape {tuple(item.shape)}, expected one name each")
    if isinstance(item, (np.integer, int, np.bool_, bool)):
        return str(int(item))
    if isinstance(item, (np.floating, float)):
        return str(int(item)) if float(item).is_integer() else str(float(item))
    raise _error(path, f"'{name}' has an element of type {type(item).__name__}, expected strings or numbers")


def _dense(value: Any) -> Any:
    """Densify scipy sparse matrices (MATLAB stores some feature sets sparse)."""
    if not isinstance(value, np.ndarray) and hasattr(value, "toarray"):
        return value.toarray()
    return value


def _no_duplicates(path: str, names: Sequence[str], what: str) -> None:
    """Raise if ``names`` repeats an entry, since lookups by name would be ambiguous."""
    seen: set[str] = set()
    dups: list[str] = []
    for name in names:
        if name in seen and name not in dups:
            dups.append(name)
        seen.add(name)
    if dups:
        raise _error(path, f"{what} has duplicate entries: {_quoted(dups)}")


def _default_ids(path: str, n: int) -> np.ndarray:
    """Ids ``"<file stem>:<row>"`` for a file without an ids array."""
    stem = Path(path).stem
    return np.array([f"{stem}:{i}" for i in range(n)], dtype=str)


def _label(role: str, key: str | None) -> str:
    """How messages name a variable: the role, plus the stored key when it differs."""
    return role if key is None or key == role else f"{role} ('{key}')"


# ----------------------------------------------------------------------------- aligning


def align_domains(source: FeatureSet, target: FeatureSet) -> tuple[FeatureSet, FeatureSet]:
    """Check a source/target pair and express the target's labels in the source's class indices."""
    if source.n_features != target.n_features:
        raise _error(
            target.path,
            f"target features have dimension {target.n_features} but source {source.path} has "
            f"{source.n_features}; both domains must use the same feature extractor",
        )
    if source.y is None:
        raise _error(source.path, "the source domain has no labels; adaptation needs a labeled source")
    _no_duplicates(source.path, source.classes, "classes")
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
        raise _error(
            target.path,
            f"{len(missing)} target class(es) not in source {source.path}: {_quoted(missing)}{hint}",
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
        raise _error(target, "save_features writes .npz files; give the path a .npz extension")
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
        raise _error(target, f"cannot write ({_reason(exc)})") from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ----------------------------------------------------------------------------- helpers


def _check_file(path: str) -> None:
    """Raise unless ``path`` is an existing regular file."""
    if not os.path.exists(path):
        raise _error(path, "file not found")
    if not os.path.isfile(path):
        raise _error(path, "is not a regular file")


def _head(path: str) -> bytes:
    """First bytes of a file, used to tell formats apart before a parser misreports them."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise _error(path, f"cannot read ({_reason(exc)})") from exc
    if not head:
        raise _error(path, "file is empty")
    return head


def _error(path: str, message: str) -> DataError:
    """A DataError whose single-line message starts with the path."""
    return DataError(" ".join(f"{path}: {message}".splitlines()))


def _reason(exc: BaseException) -> str:
    """A short one-line description of an underlying exception."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _reraise_memory(exc: BaseException) -> None:
    """Let MemoryError through unwrapped: it is the machine, not the file."""
    if isinstance(exc, MemoryError):
        raise exc


def _listing(names: Sequence[str]) -> str:
    """Comma-separated names, shortened when long."""
    if not names:
        return "nothing"
    shown = ", ".join(names[:_MAX_LISTED])
    return shown if len(names) <= _MAX_LISTED else f"{shown}, ... ({len(names)} in all)"


def _quoted(names: Sequence[str]) -> str:
    """Quoted names, shortened when long."""
    shown = ", ".join(repr(str(n)) for n in names[:_MAX_LISTED])
    return shown if len(names) <= _MAX_LISTED else f"{shown}, ... and {len(names) - _MAX_LISTED} more"
