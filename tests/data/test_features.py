"""Tests for loading, checking, aligning and saving feature files."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import scipy.io

from dahash.data import FeatureSet, align_domains, load_features, save_features
from dahash.errors import DataError


def _raises(fn: Callable[[], Any], path: Path | str, *phrases: str) -> str:
    """Assert fn raises a one-line DataError starting with path and containing every phrase."""
    with pytest.raises(DataError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    for phrase in phrases:
        assert phrase in message, message
    return message


def _data(n: int = 6, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), np.array([0, 1, 2, 0, 1, 2][:n])


def _fake_mat73(path: Path) -> None:
    """Write the 128-byte header by which scipy recognises a MATLAB v7.3 file."""
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116, b" ") + b"\0" * 8 + b"\x00\x02IM"
    with open(path, "r+b" if path.exists() else "wb") as handle:
        handle.write(header)


# ----------------------------------------------------------------------------- round trips


def test_npz_round_trip_with_names_and_ids(tmp_path: Path) -> None:
    X, y = _data()
    fs = FeatureSet(X=X, y=y, ids=[f"img{i}" for i in range(6)], classes=["cat", "dog", "owl"], path="mem")
    out = tmp_path / "src.npz"
    save_features(out, fs)
    back = load_features(out)
    assert back.X.dtype == np.float32 and back.X.shape == (6, 4)
    np.testing.assert_allclose(back.X, X.astype(np.float32))
    assert back.y.dtype == np.int64 and back.y.tolist() == y.tolist()
    assert back.ids.tolist() == [f"img{i}" for i in range(6)]
    assert back.classes == ["cat", "dog", "owl"] and back.n_classes == 3 and len(back) == 6
    assert back.path == str(out) and back.n_features == 4
    assert [p.name for p in tmp_path.iterdir()] == ["src.npz"]  # no temp file left behind


def test_save_overwrites_and_keeps_unlabeled(tmp_path: Path) -> None:
    out = tmp_path / "t.npz"
    save_features(out, FeatureSet(X=np.ones((2, 3)), y=np.array([0, 1])))
    save_features(out, FeatureSet(X=np.zeros((3, 3)), y=None))
    back = load_features(out, require_labels=False)
    assert back.y is None and back.classes == [] and len(back) == 3
    assert back.ids.tolist() == ["<memory>:0", "<memory>:1", "<memory>:2"]


def test_save_rejects_other_extension(tmp_path: Path) -> None:
    out = tmp_path / "t.npy"
    _raises(lambda: save_features(out, FeatureSet(X=np.ones((1, 1)))), out, ".npz")


def test_npz_remaps_labels_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "amazon.npz"
    np.savez(path, X=np.arange(8, dtype=np.int32).reshape(4, 2), y=np.array([9, 2, 5, 9]))
    fs = load_features(path)
    assert fs.y.tolist() == [2, 0, 1, 2]
    assert fs.classes == ["2", "5", "9"]
    assert fs.ids.tolist() == ["amazon:0", "amazon:1", "amazon:2", "amazon:3"]
    assert fs.X.dtype == np.float32 and fs.X.flags["C_CONTIGUOUS"]


def test_npz_alternative_keys_and_explicit_keys(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    X, y = _data()
    np.savez(path, features=X, labels=y, other=y + 1)
    assert load_features(path).y.tolist() == y.tolist()
    assert load_features(path, y_key="other").classes == ["1", "2", "3"]


def test_npz_unlabeled_allowed(tmp_path: Path) -> None:
    path = tmp_path / "tgt.npz"
    np.savez(path, X=np.ones((3, 2)))
    fs = load_features(path, require_labels=False)
    assert fs.y is None and fs.n_classes == 0


def test_npy_explicit_pair(tmp_path: Path) -> None:
    X, y = _data()
    np.save(tmp_path / "f.npy", X)
    np.save(tmp_path / "l.npy", (y + 1).astype(np.float64).reshape(-1, 1))
    fs = load_features(f"{tmp_path / 'f.npy'},{tmp_path / 'l.npy'}")
    assert fs.y.tolist() == y.tolist() and fs.classes == ["1", "2", "3"]
    assert fs.path == str(tmp_path / "f.npy") and fs.ids[0] == "f:0"


@pytest.mark.parametrize("suffix", ["_labels.npy", ".labels.npy"])
def test_npy_sibling_labels(tmp_path: Path, suffix: str) -> None:
    X, y = _data()
    np.save(tmp_path / "feats.npy", X)
    np.save(tmp_path / f"feats{suffix}", y)
    fs = load_features(tmp_path / "feats.npy")
    assert fs.y.tolist() == y.tolist()


def test_npy_without_labels(tmp_path: Path) -> None:
    path = tmp_path / "feats.npy"
    np.save(path, np.ones((3, 2)))
    assert load_features(path, require_labels=False).y is None
    _raises(lambda: load_features(path), path, "no labels found", "feats_labels.npy", "feats.labels.npy")


def test_mat_feas_labels_one_based_column(tmp_path: Path) -> None:
    X, y = _data()
    path = tmp_path / "webcam.mat"
    scipy.io.savemat(path, {"feas": X, "labels": (y + 1).astype(float).reshape(-1, 1)})
    fs = load_features(path)
    assert fs.y.tolist() == y.tolist() and fs.classes == ["1", "2", "3"]
    np.testing.assert_allclose(fs.X, X.astype(np.float32))
    assert fs.ids[5] == "webcam:5"


def test_mat_row_labels_cell_classes_and_ids(tmp_path: Path) -> None:
    X, y = _data()
    path = tmp_path / "dslr.mat"
    scipy.io.savemat(
        path,
        {
            "fts": X,
            "gnd": y.reshape(1, -1),
            "classes": np.array(["back_pack", "bike", "mug"], dtype=object),
            "ids": np.array([f"im_{i}.jpg" for i in range(6)], dtype=object),
        },
    )
    fs = load_features(path)
    assert fs.classes == ["back_pack", "bike", "mug"]
    assert fs.y.tolist() == y.tolist()
    assert fs.ids.tolist() == [f"im_{i}.jpg" for i in range(6)]


def test_mat_char_matrix_classes_and_single_row(tmp_path: Path) -> None:
    path = tmp_path / "one.mat"
    # A list of str is saved as a blank-padded char matrix.
    scipy.io.savemat(path, {"X": np.ones((1, 3)), "y": np.array([[1]]), "classes": ["a", "bbb"]})
    fs = load_features(path)
    assert fs.X.shape == (1, 3) and fs.classes == ["a", "bbb"] and fs.y.tolist() == [1]


def test_mat_explicit_keys_and_sparse(tmp_path: Path) -> None:
    import scipy.sparse

    path = tmp_path / "s.mat"
    scipy.io.savemat(path, {"F": scipy.sparse.csc_matrix(np.eye(3)), "L": np.array([3, 1, 2])})
    fs = load_features(path, x_key="F", y_key="L")
    np.testing.assert_array_equal(fs.X, np.eye(3, dtype=np.float32))
    assert fs.y.tolist() == [2, 0, 1]


def test_mat73_without_h5py(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.mat"
    _fake_mat73(path)
    with open(path, "ab") as handle:
        handle.write(b"\0" * 512)
    monkeypatch.setitem(sys.modules, "h5py", None)
    _raises(lambda: load_features(path), path, "v7.3", "install h5py", "-v7")


def test_mat73_with_h5py(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    X, y = _data()
    path = tmp_path / "v73.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("feas", data=X.T).attrs["MATLAB_class"] = np.bytes_("double")
        f.create_dataset("labels", data=y.reshape(1, -1).astype(float)).attrs["MATLAB_class"] = np.bytes_("double")
        f.create_dataset("gnd", data=(y + 1.0).reshape(1, -1)).attrs["MATLAB_class"] = np.bytes_("double")
        refs = f.create_group("#refs#")
        names = ["back_pack", "bike", "mug"]
        handles = []
        for i, name in enumerate(names):
            ds = refs.create_dataset(str(i), data=np.array([ord(c) for c in name], dtype=np.uint16).reshape(-1, 1))
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            handles.append(ds.ref)
        cell = f.create_dataset("classes", data=np.array(handles, dtype=h5py.ref_dtype).reshape(-1, 1))
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
    _fake_mat73(path)
    fs = load_features(path)
    np.testing.assert_allclose(fs.X, X.astype(np.float32))
    assert fs.classes == names and fs.y.tolist() == y.tolist()
    unnamed = load_features(path, y_key="gnd", classes_key=None)
    assert unnamed.classes == ["1", "2", "3"] and unnamed.y.tolist() == y.tolist()
    _raises(lambda: load_features(path, y_key="gnd"), path, "outside 0..2", "1-based")


# ----------------------------------------------------------------------------- errors


def test_missing_labels_lists_found(tmp_path: Path) -> None:
    path = tmp_path / "src.npz"
    np.savez(path, X=np.ones((3, 2)), ids=np.array(["a", "b", "c"]))
    _raises(lambda: load_features(path), path, "missing array 'y'", "found: X, ids")


def test_missing_explicit_key(tmp_path: Path) -> None:
    path = tmp_path / "src.npz"
    np.savez(path, X=np.ones((3, 2)), y=np.zeros(3))
    _raises(lambda: load_features(path, x_key="fc7"), path, "missing array 'fc7'", "found: X, y")


def test_x_three_dims_in_mat(tmp_path: Path) -> None:
    path = tmp_path / "a.mat"
    scipy.io.savemat(path, {"X": np.ones((2, 3, 4)), "y": np.array([1, 2])})
    _raises(lambda: load_features(path), path, "X has 3 dimensions, expected 2 (n_samples, n_features)")


def test_row_count_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, X=np.ones((100, 5)), y=np.zeros(99))
    _raises(lambda: load_features(path), path, "X has 100 rows but y has 99")


def test_transposed_features(tmp_path: Path) -> None:
    path = tmp_path / "a.mat"
    scipy.io.savemat(path, {"feas": np.ones((5, 8)), "labels": np.arange(8)})
    _raises(lambda: load_features(path), path, "look transposed")


def test_nan_features(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    X = np.ones((10, 4))
    X[3, 1] = np.nan
    X[3, 2] = np.inf
    X[7, :3] = -np.inf
    np.savez(path, X=X, y=np.zeros(10))
    _raises(lambda: load_features(path), path, "X contains 5 NaN/inf values (first at row 3)")


def test_float32_overflow(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, X=np.array([[1.0], [1e300]]), y=np.zeros(2))
    _raises(lambda: load_features(path), path, "too large for float32", "row 1")


def test_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "missing.npz"
    _raises(lambda: load_features(path), path, "file not found")


def test_pair_file_not_found(tmp_path: Path) -> None:
    np.save(tmp_path / "f.npy", np.ones((2, 2)))
    labels = tmp_path / "nolabels.npy"
    _raises(lambda: load_features(f"{tmp_path / 'f.npy'},{labels}"), labels, "file not found")


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("1 2 3\n")
    _raises(lambda: load_features(path), path, "unsupported extension '.txt' (expected .npz, .npy or .mat)")


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"this is not a zip file", "not a zip archive"),
        (b"PK\x03\x04 truncated", "not a valid .npz file ("),
        (b"", "file is empty"),
    ],
)
def test_invalid_npz(tmp_path: Path, content: bytes, phrase: str) -> None:
    path = tmp_path / "a.npz"
    path.write_bytes(content)
    _raises(lambda: load_features(path), path, phrase)


def test_npy_named_npz(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    with open(path, "wb") as handle:
        np.save(handle, np.ones(3))
    _raises(lambda: load_features(path), path, "not a valid .npz file", "single .npy array")


def test_corrupt_npy(tmp_path: Path) -> None:
    path = tmp_path / "f.npy"
    np.save(path, np.ones((50, 4)))
    path.write_bytes(path.read_bytes()[:200])
    _raises(lambda: load_features(path, require_labels=False), path, "not a valid .npy file")


def test_invalid_mat(tmp_path: Path) -> None:
    path = tmp_path / "a.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file" + b"\x01" * 200)
    _raises(lambda: load_features(path), path, "not a valid .mat file (")


def test_a_mat_file_that_crashes_scipys_reader_is_refused(tmp_path: Path) -> None:
    # Found by benchmarks/fuzz.sh: one flipped byte makes a small element's type 0x1710, and
    # scipy.io.loadmat (1.17) dies with SIGSEGV on it. Read in a child, it is one clear error.
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"X": np.array(["ab "]), "y": np.arange(3)})
    data = buffer.getvalue()
    at = data.index(b"\x10\x00\x03\x00ab ")  # the char data of X: miUTF8, 3 bytes, small format
    path = tmp_path / "a.mat"
    path.write_bytes(data[:at] + b"\x10\x17" + data[at + 2:])
    _raises(lambda: load_features(path), path, "not a valid .mat file (")


def test_empty_set(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, X=np.ones((0, 4)), y=np.zeros(0))
    _raises(lambda: load_features(path), path, "empty (0 rows)")


def test_x_not_numeric(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, X=np.array([["a", "b"], ["c", "d"]]), y=np.zeros(2))
    _raises(lambda: load_features(path), path, "X is not numeric")


def test_pickled_object_array(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, X=np.ones((2, 2)), y=np.zeros(2), ids=np.array(["a", None], dtype=object))
    _raises(lambda: load_features(path), path, "array 'ids' is a pickled object array")


def test_non_integral_labels(tmp_path: Path) -> None:
    path = tmp_path / "a.mat"
    scipy.io.savemat(path, {"X": np.ones((3, 2)), "y": np.array([1.0, 1.5, 2.0])})
    _raises(lambda: load_features(path), path, "non-integer values", "row 1")


def test_label_matrix(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, X=np.ones((4, 2)), y=np.zeros((4, 3)))
    _raises(lambda: load_features(path), path, "y has shape (4, 3), expected a vector")


def test_labels_out_of_range_for_classes(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, X=np.ones((3, 2)), y=np.array([1, 2, 3]), classes=np.array(["a", "b", "c"]))
    _raises(lambda: load_features(path), path, "outside 0..2", "max 3")


def test_duplicate_ids(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, X=np.ones((3, 2)), y=np.zeros(3), ids=np.array(["a", "b", "a"]))
    _raises(lambda: load_features(path), path, "ids has duplicate entries: 'a'")


def test_mat_names_keyed_features(tmp_path: Path) -> None:
    path = tmp_path / "a.mat"
    scipy.io.savemat(path, {"feas": np.ones((3, 4)), "labels": np.zeros(2)})
    _raises(lambda: load_features(path), path, "X ('feas') has 3 rows but y ('labels') has 2")


# ----------------------------------------------------------------------------- align_domains


def _fs(classes: list[str] | None, y: list[int] | None, d: int = 4, path: str = "x.npz") -> FeatureSet:
    n = len(y) if y is not None else 3
    return FeatureSet(X=np.ones((n, d)), y=None if y is None else np.array(y), classes=classes, path=path)


def test_align_by_name() -> None:
    src = _fs(["bike", "cup", "mug"], [0, 1, 2], path="src.npz")
    tgt = _fs(["mug", "bike"], [0, 1, 1, 0], path="tgt.npz")
    new_src, new_tgt = align_domains(src, tgt)
    assert new_src is src
    assert new_tgt.classes == ["bike", "cup", "mug"]
    assert new_tgt.y.tolist() == [2, 0, 0, 2]
    assert tgt.y.tolist() == [0, 1, 1, 0]  # the input is not modified


def test_align_label_values_without_names(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", X=np.ones((3, 2)), y=np.array([3, 5, 7]))
    np.savez(tmp_path / "t.npz", X=np.ones((2, 2)), y=np.array([7, 3]))
    _, tgt = align_domains(load_features(tmp_path / "s.npz"), load_features(tmp_path / "t.npz"))
    assert tgt.y.tolist() == [2, 0]


def test_align_missing_class() -> None:
    src = _fs(["bike", "cup"], [0, 1], path="src.npz")
    tgt = _fs(["mug", "bike", "pen"], [0, 1, 2, 2], path="tgt.npz")
    _raises(lambda: align_domains(src, tgt), "tgt.npz", "not in source src.npz", "'mug'", "'pen'")


def test_align_unused_unknown_class_is_fine() -> None:
    src = _fs(["bike", "cup"], [0, 1], path="src.npz")
    tgt = _fs(["bike", "zebra"], [0, 0], path="tgt.npz")
    assert align_domains(src, tgt)[1].y.tolist() == [0, 0]


def test_align_numeric_hint() -> None:
    src = _fs(["1", "2"], [0, 1], path="src.npz")
    tgt = _fs(["0", "1"], [0, 1], path="tgt.npz")
    _raises(lambda: align_domains(src, tgt), "tgt.npz", "'0'", "0- vs 1-based")


def test_align_dim_mismatch() -> None:
    src = _fs(["a"], [0], d=4096, path="src.npz")
    tgt = _fs(["a"], [0], d=2048, path="tgt.npz")
    _raises(lambda: align_domains(src, tgt), "tgt.npz", "2048", "src.npz", "4096")


def test_align_unlabeled_target() -> None:
    src = _fs(["a", "b"], [0, 1], path="src.npz")
    _, tgt = align_domains(src, _fs(None, None, path="tgt.npz"))
    assert tgt.y is None and tgt.classes == ["a", "b"] and tgt.n_classes == 2


def test_align_unlabeled_source() -> None:
    _raises(lambda: align_domains(_fs(None, None, path="s.npz"), _fs(["a"], [0])), "s.npz", "no labels")


def test_featureset_in_memory_defaults() -> None:
    fs = FeatureSet(X=np.zeros((3, 2), dtype=np.float64), y=[0, 2, 2])
    assert fs.X.dtype == np.float32 and fs.y.dtype == np.int64
    assert fs.classes == ["0", "1", "2"] and fs.ids.tolist() == ["<memory>:0", "<memory>:1", "<memory>:2"]
    with pytest.raises(DataError):
        FeatureSet(X=np.zeros((3, 2)), y=[0, 1])


def test_comma_in_real_file_name(tmp_path: Path) -> None:
    path = tmp_path / "a,b.npz"
    np.savez(path, X=np.ones((2, 2)), y=np.zeros(2))
    assert len(load_features(os.fspath(path))) == 2
