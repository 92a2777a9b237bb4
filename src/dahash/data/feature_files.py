"""Readers of each feature-file format (.npz, .npy with its labels file, MATLAB v5 and v7.3) and
the choice of which stored variables are X, y, ids and classes.

Each reader returns the :class:`~dahash.data.feature_checks.RawArrays` it found, unchecked;
:func:`dahash.data.features.load_features` checks them and says which reader reads which file.
Nothing here unpickles.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dahash.data.feature_checks import RawArrays, to_strings
from dahash.data.feature_errors import data_error, listing, reason, reraise_memory
from dahash.errors import DataError

__all__ = ["LABEL_SIBLING_SUFFIXES", "X_KEYS", "Y_KEYS", "FeatureKeys", "check_file", "read_mat", "read_npy",
           "read_npy_pair", "read_npz"]

X_KEYS: tuple[str, ...] = ("X", "feas", "fts", "features")
Y_KEYS: tuple[str, ...] = ("y", "labels", "label", "gnd")
LABEL_SIBLING_SUFFIXES: tuple[str, ...] = ("_labels.npy", ".labels.npy")

_NPZ_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class FeatureKeys:
    """The key choices of one load_features call, passed around as one value."""

    x_key: str | None
    y_key: str | None
    ids_key: str | None
    classes_key: str | None
    require_labels: bool


def check_file(path: str) -> None:
    """Raise unless ``path`` is an existing regular file."""
    if not os.path.exists(path):
        raise data_error(path, "file not found")
    if not os.path.isfile(path):
        raise data_error(path, "is not a regular file")


def _head(path: str) -> bytes:
    """First bytes of a file, used to tell formats apart before a parser misreports them."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise data_error(path, f"cannot read ({reason(exc)})") from exc
    if not head:
        raise data_error(path, "file is empty")
    return head


@contextlib.contextmanager
def _numpy_errors(path: str, invalid: str, pickled: str) -> Iterator[None]:
    """numpy's failures while the block reads ``path``, as one DataError naming it: ``pickled`` for
    an object array (nothing here unpickles), else ``invalid`` with numpy's reason in its ``{}``."""
    try:
        yield
    except DataError:
        raise  # already names the file
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Python objects" in str(exc):
            raise data_error(path, pickled) from exc
        raise data_error(path, invalid.format(reason(exc))) from exc
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt files raise assorted errors
        reraise_memory(exc)
        raise data_error(path, invalid.format(reason(exc))) from exc


# ----------------------------------------------------------------------------- .npz


def read_npz(path: str, keys: FeatureKeys) -> RawArrays:
    """Read a .npz archive without unpickling anything."""
    head = _head(path)
    if head.startswith(_NPY_MAGIC):
        raise data_error(path, "not a valid .npz file (it holds a single .npy array; name it .npy)")
    if not head.startswith(_NPZ_MAGIC):
        raise data_error(path, "not a valid .npz file (not a zip archive)")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any parser failure means a malformed file
        reraise_memory(exc)
        raise data_error(path, f"not a valid .npz file ({reason(exc)})") from exc
    try:
        names = list(archive.files)

        def read(name: str) -> Any:
            with _numpy_errors(path, f"not a valid .npz file (array '{name}': {{}})",
                               f"array '{name}' is a pickled object array, which dahash does not load "
                               "(re-save it as a numeric or string array)"):
                _check_npz_member_size(archive.zip, name + ".npy")
                return archive[name]

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


# ----------------------------------------------------------------------------- .npy


def read_npy_pair(spec: str, keys: FeatureKeys) -> RawArrays:
    """Read an explicit ``features.npy,labels.npy`` pair."""
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 2 or not all(parts):
        raise data_error(spec, "a comma-separated path must name exactly two files: features.npy,labels.npy")
    feats, labels = parts
    for part in parts:
        if Path(part).suffix.lower() != ".npy":
            raise data_error(part, f"unsupported extension '{Path(part).suffix}' in a pair (expected two .npy files)")
        check_file(part)
    return read_npy(feats, labels, keys)


def read_npy(path: str, labels_path: str | None, keys: FeatureKeys) -> RawArrays:
    """Read .npy features plus labels from ``labels_path`` or a sibling labels file."""
    X = _read_npy_array(path)
    if labels_path is None:
        labels_path = _sibling_labels(path)
        if labels_path is None and keys.require_labels:
            stem = Path(path).name[: -len(".npy")]
            tried = " or ".join(stem + s for s in LABEL_SIBLING_SUFFIXES)
            raise data_error(
                path,
                f"no labels found (looked for {tried} next to it; or pass 'features.npy,labels.npy')",
            )
    y = _read_npy_array(labels_path) if labels_path is not None else None
    y_name = f"y ({Path(labels_path).name})" if labels_path is not None else "y"
    return RawArrays(path, X, y, y_name=y_name)


def _sibling_labels(path: str) -> str | None:
    """Return the first existing ``<stem>_labels.npy`` / ``<stem>.labels.npy`` beside ``path``."""
    base = path[: -len(Path(path).suffix)]
    for suffix in LABEL_SIBLING_SUFFIXES:
        candidate = base + suffix
        if os.path.isfile(candidate):
            return candidate
    return None


def _read_npy_array(path: str) -> np.ndarray:
    """Read one .npy array without unpickling."""
    if not _head(path).startswith(_NPY_MAGIC):
        raise data_error(path, "not a valid .npy file (no NumPy header)")
    with _numpy_errors(path, "not a valid .npy file ({})",
                       "holds a pickled object array, which dahash does not load (re-save it as a numeric array)"):
        # Mapped first: a header that claims more data than the file holds fails here instead of
        # allocating what it claims (terabytes, for a damaged or hostile file).
        with np.errstate(over="ignore"):  # numpy's own size arithmetic on an absurd header
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        array = np.array(mapped)
        del mapped
        return array


# ----------------------------------------------------------------------------- .mat


def read_mat(path: str, keys: FeatureKeys) -> RawArrays:
    """Read a MATLAB file, falling back to h5py for v7.3 (HDF5) files."""
    import scipy.io  # scipy.io is slow to import and only .mat files need it

    try:
        # No squeeze_me: a one-row X must stay 2-D; label and name vectors are flattened later.
        data = scipy.io.loadmat(path, chars_as_strings=True)
    except NotImplementedError:
        return _read_mat73(path, keys)
    except Exception as exc:  # noqa: BLE001 - scipy's readers raise many exception types
        reraise_memory(exc)
        raise data_error(path, f"not a valid .mat file ({reason(exc)})") from exc
    names = [k for k in data if not k.startswith("__")]
    return _select(path, names, data.__getitem__, keys, strip_names=True)


def _read_mat73(path: str, keys: FeatureKeys) -> RawArrays:
    """Read a MATLAB v7.3 file, which is HDF5 with every array stored transposed."""
    try:
        import h5py
    except ImportError:
        raise data_error(
            path,
            "is a MATLAB v7.3 (HDF5) file; install h5py to read it, or re-save it in MATLAB with save(..., '-v7')",
        ) from None
    try:
        handle = h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 - h5py reports corrupt files as OSError or worse
        reraise_memory(exc)
        raise data_error(path, f"not a valid MATLAB v7.3 (HDF5) file ({reason(exc)})") from exc
    with handle:
        try:
            names = [k for k in handle.keys() if not k.startswith("#")]
        except Exception as exc:  # noqa: BLE001 - a damaged group table fails only when it is walked
            reraise_memory(exc)
            raise data_error(path, f"not a valid MATLAB v7.3 (HDF5) file ({reason(exc)})") from exc

        def read(name: str) -> Any:
            try:
                return _h5_value(handle, handle[name], path, name, h5py)
            except DataError:
                raise
            except Exception as exc:  # noqa: BLE001 - wrap HDF5 read errors into one line
                reraise_memory(exc)
                raise data_error(path, f"cannot read variable '{name}' ({reason(exc)})") from exc

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
        raise data_error(path, f"variable '{name}' is a MATLAB struct or object, expected a numeric array")
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


# ----------------------------------------------------------------------------- choosing variables


def _select(
    path: str,
    names: list[str],
    read: Callable[[str], Any],
    keys: FeatureKeys,
    *,
    strip_names: bool = False,
) -> RawArrays:
    """Pick the X / y / ids / classes variables among ``names`` and read them."""
    x_name = _pick(path, names, keys.x_key, X_KEYS, "X", required=True)
    assert x_name is not None  # _pick raises when a required key is missing
    y_name = _pick(path, names, keys.y_key, Y_KEYS, "y", required=keys.require_labels or keys.y_key is not None)
    ids_name = keys.ids_key if keys.ids_key is not None and keys.ids_key in names else None
    cls_name = keys.classes_key if keys.classes_key is not None and keys.classes_key in names else None
    X = read(x_name)
    y = read(y_name) if y_name is not None else None
    ids = to_strings(path, ids_name, read(ids_name), strip_names) if ids_name is not None else None
    classes = to_strings(path, cls_name, read(cls_name), strip_names) if cls_name is not None else None
    return RawArrays(
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
            raise data_error(path, f"missing array '{key}' (found: {listing(names)})")
        return None
    for candidate in defaults:
        if candidate in names:
            return candidate
    if required:
        also = ", ".join(defaults[1:])
        raise data_error(
            path,
            f"missing array '{defaults[0]}' (no {role} under any of its names: {defaults[0]}, {also}; "
            f"found: {listing(names)})",
        )
    return None


def _label(role: str, key: str | None) -> str:
    """How messages name a variable: the role, plus the stored key when it differs."""
    return role if key is None or key == role else f"{role} ('{key}')"
