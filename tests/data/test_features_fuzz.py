"""Property-based fuzzing of feature-file loading: any .npz, .npy, .mat (v5 and v7.3) content or
byte-level damage either loads as a valid FeatureSet or raises DataError naming the file.

``DAHASH_FUZZ_EXAMPLES`` raises the number of examples (benchmarks/fuzz.py runs 10,000 per surface).
"""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from hypothesis import given
from hypothesis import strategies as st

from dahash.data.features import FeatureSet, load_features
from dahash.errors import DataError
from fuzzing import damaged, fuzz_settings  # tests/ is on sys.path (no __init__.py)

FUZZ = fuzz_settings(40)

KEYS = st.sampled_from(["X", "y", "ids", "classes", "feas", "labels", "gnd", "fts", "other"])
DTYPES = st.sampled_from(["float32", "float64", "int8", "int64", "uint8", "bool", "complex64", "U3", "S2"])
SHAPES = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)
SPECIAL = st.sampled_from([0.0, -1.0, 1.5, 2.0, np.nan, np.inf, -np.inf, 1e30])


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dtype, shape = draw(DTYPES), draw(SHAPES)
    n = int(np.prod(shape))
    if dtype.startswith(("U", "S")):
        values = draw(st.lists(st.text(max_size=3) if dtype.startswith("U") else st.binary(max_size=2),
                               min_size=n, max_size=n))
        return np.array(values, dtype=dtype).reshape(shape)
    values = draw(st.lists(SPECIAL | st.integers(-3, 12).map(float), min_size=n, max_size=n))
    with np.errstate(invalid="ignore", over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array(values, dtype=np.float64).astype(dtype).reshape(shape)


@st.composite
def contents(draw: st.DrawFn) -> dict[str, np.ndarray]:
    """A dictionary of arrays, most often with a plausible X and y."""
    out = draw(st.dictionaries(KEYS, arrays(), max_size=4))
    if draw(st.booleans()):
        n = draw(st.integers(0, 6))
        out["X"] = draw(arrays().filter(lambda a: True)) if draw(st.booleans()) else \
            np.asarray(draw(st.lists(st.lists(SPECIAL, min_size=2, max_size=2), min_size=n, max_size=n)),
                       dtype=np.float32).reshape(n, 2)
        out["y"] = np.asarray(draw(st.lists(st.integers(-1, 4), min_size=n, max_size=n)), dtype=np.int64)
    return out


def check_loaded_or_refused(path: Path | str, **kwargs) -> None:
    """The contract: a valid FeatureSet, or a one-line DataError that starts with the path."""
    try:
        fs = load_features(path, **kwargs)
    except DataError as exc:
        message = str(exc)
        assert message.startswith(str(path).split(",")[0]) or message.startswith(str(path)), message
        assert "\n" not in message
        return
    assert isinstance(fs, FeatureSet)
    assert fs.X.dtype == np.float32 and fs.X.ndim == 2 and np.isfinite(fs.X).all()
    assert len(fs.ids) == len(fs)
    if fs.y is not None:
        assert fs.y.shape == (len(fs),) and (fs.y >= 0).all() and (fs.y < len(fs.classes)).all()



@FUZZ
@given(content=contents())
def test_npz_content(tmp_path: Path, content: dict[str, np.ndarray]) -> None:
    path = tmp_path / "f.npz"
    np.savez(path, **content)
    check_loaded_or_refused(path)
    check_loaded_or_refused(path, require_labels=False)


@FUZZ
@given(content=contents(), data=st.data())
def test_npz_damaged(tmp_path: Path, content: dict[str, np.ndarray], data: st.DataObject) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **content)
    path = tmp_path / "f.npz"
    path.write_bytes(damaged(buffer.getvalue(), data.draw))
    check_loaded_or_refused(path)


@FUZZ
@given(X=arrays(), y=arrays(), data=st.data())
def test_npy_and_its_labels(tmp_path: Path, X: np.ndarray, y: np.ndarray, data: st.DataObject) -> None:
    np.save(tmp_path / "f.npy", X)
    np.save(tmp_path / "f_labels.npy", y)
    check_loaded_or_refused(tmp_path / "f.npy")
    check_loaded_or_refused(f"{tmp_path / 'f.npy'},{tmp_path / 'f_labels.npy'}")
    raw = (tmp_path / "f.npy").read_bytes()
    (tmp_path / "g.npy").write_bytes(damaged(raw, data.draw))
    check_loaded_or_refused(tmp_path / "g.npy", require_labels=False)


@FUZZ
@given(content=contents(), data=st.data())
def test_mat_v5(tmp_path: Path, content: dict[str, np.ndarray], data: st.DataObject) -> None:
    path = tmp_path / "f.mat"
    content = {k: v for k, v in content.items() if v.dtype.kind not in "bcS"}  # what savemat writes
    try:
        scipy.io.savemat(path, content)
    except (ValueError, TypeError):
        return  # scipy cannot write this content at all
    check_loaded_or_refused(path)
    path.write_bytes(damaged(path.read_bytes(), data.draw))
    check_loaded_or_refused(path)


@FUZZ
@given(content=contents(), data=st.data())
def test_mat_v73(tmp_path: Path, content: dict[str, np.ndarray], data: st.DataObject) -> None:
    path = tmp_path / "f.mat"
    with h5py.File(path, "w", userblock_size=512) as handle:
        for key, value in content.items():
            if value.dtype.kind == "U":
                value = np.char.encode(value, "utf-8")
            handle.create_dataset(key, data=value.T)
    with open(path, "r+b") as handle:  # MATLAB's 128-byte text header inside the user block
        handle.write(b"MATLAB 7.3 MAT-file".ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")
    check_loaded_or_refused(path)
    path.write_bytes(damaged(path.read_bytes(), data.draw))
    check_loaded_or_refused(path)


@FUZZ
@given(raw=st.binary(max_size=64), suffix=st.sampled_from([".npz", ".npy", ".mat", ".csv", ""]))
def test_arbitrary_bytes(tmp_path: Path, raw: bytes, suffix: str) -> None:
    path = tmp_path / f"f{suffix}"
    path.write_bytes(raw)
    check_loaded_or_refused(path)


@pytest.mark.parametrize("shape", [(10**12, 2), (2**62,), (10**9, 10**9)])
def test_a_header_claiming_more_data_than_the_file_holds(tmp_path: Path, shape: tuple[int, ...]) -> None:
    """A .npy header may claim terabytes; the file is refused for it, not allocated."""
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    path = tmp_path / "huge.npy"
    path.write_bytes(buffer.getvalue() + b"\x00" * 64)
    with pytest.raises(DataError, match=f"^{path}: not a valid .npy file"):
        load_features(path, require_labels=False)


def test_an_npz_member_claiming_more_data_than_it_holds(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 2)})
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X.npy", buffer.getvalue() + b"\x00" * 64)
        archive.writestr("y.npy", b"")
    with pytest.raises(DataError, match=f"^{path}: not a valid .npz file \\(array 'X': ValueError: its header claims"):
        load_features(path)
