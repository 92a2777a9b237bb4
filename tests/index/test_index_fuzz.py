"""Property-based fuzzing of index directories: a manifest with any JSON in any field, damaged or
swapped array files, and codes of any width either load into a working index or raise the
library's own error naming the directory; never another exception."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dahash.errors import DahashError
from dahash.index import FaissIndex, open_index
from fuzzing import fuzz_settings  # tests/ is on sys.path (no __init__.py)

FUZZ = fuzz_settings(60)

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)
FIELDS = ["format", "format_version", "backend", "n_bits", "kind", "params", "model", "info", "count",
          "bytes_per_code", "files"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    index = FaissIndex(16)
    index.add(rng.integers(0, 256, (6, 2), dtype=np.uint8), ids=np.arange(10, 16),
              metadata=[{"path": f"{i}.jpg"} for i in range(6)])
    path = tmp_path_factory.mktemp("index") / "ix"
    index.save(path)
    return path


def check_loads_or_refused(path: Path) -> None:
    try:
        index = open_index(path)
    except DahashError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc), str(exc)
        return
    # Loaded: it answers a search with ids it holds, best first.
    hits = index.search(np.zeros((1, (index.n_bits + 7) // 8), dtype=np.uint8), k=3)
    found = hits.ids[0][hits.ids[0] >= 0]
    assert set(found.tolist()) <= set(range(10, 16))
    assert (np.diff(hits.distances[0][: len(found)]) >= 0).all()


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), JSON, min_size=1, max_size=3))
def test_any_manifest_field(saved: Path, tmp_path: Path, changes: dict) -> None:
    path = tmp_path / "ix"
    shutil.copytree(saved, path, dirs_exist_ok=True)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))
    check_loads_or_refused(path)


@FUZZ
@given(name=st.sampled_from(["manifest.json", "codes.npy", "ids.npy", "metadata.json"]),
       kind=st.sampled_from(["truncate", "flip", "splice", "empty", "delete", "swap"]), data=st.data())
def test_damaged_files(saved: Path, tmp_path: Path, name: str, kind: str, data: st.DataObject) -> None:
    path = tmp_path / "ix"
    shutil.copytree(saved, path, dirs_exist_ok=True)
    target = path / name
    raw = target.read_bytes()
    if kind == "delete":
        target.unlink()
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "swap":
        other = data.draw(st.sampled_from(["codes.npy", "ids.npy", "metadata.json", "manifest.json"]))
        target.write_bytes((path / other).read_bytes())
    elif kind == "truncate":
        target.write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1))])
    else:
        at = data.draw(st.integers(0, len(raw) - 1))
        insert = (bytes([raw[at] ^ data.draw(st.integers(1, 255))]) if kind == "flip"
                  else data.draw(st.binary(min_size=1, max_size=8)) + raw[at:at + 1])
        target.write_bytes(raw[:at] + insert + raw[at + 1:])
    check_loads_or_refused(path)


@FUZZ
@given(width=st.integers(0, 5), rows=st.integers(0, 3), k=st.integers(-2, 5), dtype=st.sampled_from(["uint8", "int64",
                                                                                                 "float32", "bool"]))
def test_queries_of_any_shape(saved: Path, width: int, rows: int, k: int, dtype: str) -> None:
    index = open_index(saved)
    codes = np.zeros((rows, width), dtype=dtype)
    try:
        hits = index.search(codes, k=k)
    except DahashError as exc:
        assert "\n" not in str(exc)
        return
    assert hits.ids.shape == (rows, k)


@pytest.mark.parametrize("change", [{"info": [[]]}, {"info": "x"}, {"model": None}], ids=["info-list", "info-text", "no-model"])
def test_what_the_long_run_found(saved: Path, tmp_path: Path, change: dict) -> None:
    # 10,000 random examples (benchmarks/fuzz.sh) found a manifest whose info was [[]] (a
    # ValueError from dict()) and one whose "model" key a flipped byte had renamed (a KeyError).
    path = tmp_path / "ix"
    shutil.copytree(saved, path, dirs_exist_ok=True)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(change)
    if change == {"model": None}:
        del manifest["model"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    check_loads_or_refused(path)
