"""Image search with a trained run (:mod:`dahash.retrieval.search`, ``dahash index build|add`` and ``dahash search``).

One tiny DAH run (and a second one with another seed, so another model) is trained once on the
Office-31-like ``tiny_office31`` images, amazon -> webcam; the dslr domain (3 classes x 6 images)
is the collection that is indexed and searched.  16-bit codes of near-identical tiny images tie a
lot, so "the query finds itself" means: rank 1 is at distance 0 and the query is among the
distance-0 hits (exactly rank 1 where its code is unique in the index).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import warnings
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from tiny_runs import backbone_built_once, tiny_train_args  # noqa: F401 (the fixture must be in this module)
from cli_errors import one_line_error
from dahash.cli import main
from dahash.index import open_index
from dahash.models.predict import class_probabilities
from dahash.retrieval.search import Encoder, add_images, build_index, model_id, path_ids, search_images

CLASSES = ("bike", "mug", "pen")


pytestmark = pytest.mark.usefixtures("backbone_built_once")


@pytest.fixture(scope="module")
def runs(tiny_office31: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two image-trained runs (seeds 0 and 1: two different models) sharing one feature cache."""
    base = tmp_path_factory.mktemp("search")
    cache = base / "cache"
    out: dict[str, Path] = {"root": tiny_office31, "cache": cache}
    for name, seed in (("run", 0), ("other", 1)):
        assert main(tiny_train_args(tiny_office31, cache, base / name, seed)) == 0
        out[name] = base / name
    assert model_id(out["run"]) != model_id(out["other"])
    return out


@pytest.fixture(scope="module")
def dslr(runs: dict[str, Path]) -> list[str]:
    """The 18 dslr images, sorted."""
    paths = sorted(str(p) for p in (runs["root"] / "dslr").rglob("*.jpg"))
    assert len(paths) == 18
    return paths


@pytest.fixture(scope="module")
def flat(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FAISS flat index of the dslr domain (folder input), built by the CLI; tests must not change it."""
    index = tmp_path_factory.mktemp("flat") / "index"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["index", "build", "--run", str(runs["run"]), "--images", str(runs["root"] / "dslr"),
                     "--index", str(index), "--quiet", "--json"]) == 0
    assert json.loads(printed.getvalue()) == {"index": str(index), "indexed": 18, "backend": "faiss", "type": "flat"}
    return index


def _table_rows(out: str) -> list[list[str]]:
    """The data rows of the Markdown tables in ``out`` (header and separator dropped)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
            if line.startswith("|")]
    return [r for r in rows if r[0] != "rank" and not set(r[0]) <= {"-", ":"}]


def _index_codes(index: Path) -> dict[int, bytes]:
    """id -> packed code of a saved FAISS index (its documented codes.npy / ids.npy files)."""
    codes, ids = np.load(index / "codes.npy"), np.load(index / "ids.npy")
    return {int(i): c.tobytes() for i, c in zip(ids, codes)}


def _assert_finds_itself(index: Path, query: str, ids: np.ndarray, distances: np.ndarray) -> None:
    """Rank 1 at distance 0, the query among the distance-0 hits, exactly rank 1 if its code is unique."""
    own = int(path_ids([query])[0])
    assert distances[0] == 0
    assert own in set(ids[distances == 0].tolist())
    codes = _index_codes(index)
    if list(codes.values()).count(codes[own]) == 1:
        assert ids[0] == own


# ------------------------------------------------------------------------------------------ build


def test_build_indexes_every_image_with_its_metadata(runs: dict[str, Path], dslr: list[str], flat: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    index = open_index(flat)
    assert len(index) == 18
    assert index.model == model_id(runs["run"])
    classes = Encoder.from_run(runs["run"]).classes
    assert sorted(classes) == list(CLASSES)

    queries, predicted, result = search_images(flat, dslr, k=18)
    assert queries == dslr
    assert result.ids.shape == result.distances.shape == (18, 18)
    items: dict[int, dict[str, Any]] = {}
    for q, query in enumerate(dslr):
        assert predicted[q] in classes
        ids, dists = result.ids[q], result.distances[q]
        assert (ids >= 0).all() and len(set(ids.tolist())) == 18  # the whole index, no padding
        assert (np.diff(dists) >= 0).all()
        _assert_finds_itself(flat, query, ids, dists)
        for i, meta in zip(ids.tolist(), result.metadata[q]):
            items[i] = meta
        # The query's own entry carries the class the index predicted for it, the same as now.
        own = int(path_ids([query])[0])
        assert items[own]["predicted"] == predicted[q]
    assert set(items) == set(path_ids(dslr).tolist())
    for path in dslr:
        meta = items[int(path_ids([path])[0])]
        assert meta["path"] == str(Path(path).resolve())
        assert meta["label"] == Path(path).parent.name
        assert meta["predicted"] in classes

    # The CLI: --top-k rows, best first; a k beyond the index size shows no padding rows.
    query = dslr[7]
    for k, n_rows in ((5, 5), (25, 18)):
        capsys.readouterr()
        assert main(["search", "--index", str(flat), "--image", query, "--top-k", str(k)]) == 0
        out = capsys.readouterr().out
        assert query in out and "predicted class:" in out
        rows = _table_rows(out)
        assert len(rows) == n_rows, out
        assert [int(r[0]) for r in rows] == list(range(1, n_rows + 1))
        dists = [int(r[2]) for r in rows]
        assert dists[0] == 0 and dists == sorted(dists) and min(dists) >= 0
        assert all(r[1].startswith("/") and r[1].endswith(".jpg") for r in rows), out
        assert all(r[3] in CLASSES for r in rows), out
        assert str(Path(query).resolve()) in [r[1] for r in rows if int(r[2]) == 0]
    # The API pads a k beyond the index size with id -1, distance -1, metadata None.
    _, _, result = search_images(flat, [query], k=25)
    assert (result.ids[0, 18:] == -1).all() and (result.distances[0, 18:] == -1).all()
    assert result.metadata[0][18:] == [None] * 7 and (result.ids[0, :18] >= 0).all()


def test_index_codes_are_the_codes_of_dahash_encode(runs: dict[str, Path], dslr: list[str], flat: Path,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "codes.npz"
    assert main(["encode", "--run", str(runs["run"]), "--images", str(runs["root"] / "dslr"), "--out", str(out),
                 "--quiet"]) == 0
    with np.load(out) as f:
        codes, paths, n_bits = f["codes"], [str(p) for p in f["ids"]], int(f["n_bits"])
    assert n_bits == 16 and codes.shape == (18, 2) and codes.dtype == np.uint8
    assert sorted(str(Path(p).resolve()) for p in paths) == [str(Path(p).resolve()) for p in dslr]
    indexed = _index_codes(flat)
    assert {int(i): c.tobytes() for i, c in zip(path_ids(paths), codes)} == indexed
    # And the query side encodes the same way: searching the encoded images finds their own code.
    _, predicted, result = search_images(flat, paths, k=1)
    assert (result.distances[:, 0] == 0).all()
    # encode writes each image's predicted class beside its code: the class search shows for it.
    with np.load(out) as f:
        assert f["predicted"].tolist() == predicted and set(predicted) <= set(CLASSES)


def test_add_skips_images_already_indexed(runs: dict[str, Path], dslr: list[str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    images = runs["root"] / "dslr" / "images"
    index = tmp_path / "index"
    assert main(["index", "build", "--run", str(runs["run"]), "--images", str(images / "bike"), str(images / "mug"),
                 "--index", str(index), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"12 images indexed in {index} (faiss, flat)"
    assert len(open_index(index)) == 12
    pen = str(images / "pen" / "3.jpg")
    assert int(path_ids([pen])[0]) not in _index_codes(index)

    # Overlapping: all 18 (12 indexed, 6 new), one of the new ones also named as a file.
    assert main(["index", "add", "--index", str(index), "--images", str(images.parent), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"6 images added to {index}; 12 were already indexed"
    assert len(open_index(index)) == 18
    assert set(_index_codes(index)) == set(path_ids(dslr).tolist())
    _, _, result = search_images(index, [pen], k=18)
    _assert_finds_itself(index, pen, result.ids[0], result.distances[0])
    pen_meta = [m for i, m in zip(result.ids[0].tolist(), result.metadata[0]) if i == int(path_ids([pen])[0])]
    assert pen_meta[0]["label"] == "pen" and pen_meta[0]["path"] == str(Path(pen).resolve())

    # The same add again adds nothing and leaves the index as it was.
    before = sorted(_index_codes(index).items())
    assert main(["index", "add", "--index", str(index), "--images", str(images.parent), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"0 images added to {index}; 18 were already indexed"
    assert len(open_index(index)) == 18 and sorted(_index_codes(index).items()) == before
    assert add_images(index, [str(images / "mug")], progress=False) == (0, 6)
    assert len(open_index(index)) == 18


def test_search_json(runs: dict[str, Path], dslr: list[str], flat: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queries = [dslr[0], dslr[13]]
    capsys.readouterr()
    assert main(["search", "--index", str(flat), "--image", *queries, "--top-k", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert isinstance(data, list) and len(data) == 2
    known = set(path_ids(dslr).tolist())
    for entry, query in zip(data, queries):
        assert set(entry) == {"query", "predicted", "hits"}
        assert entry["query"] == query
        assert entry["predicted"] in CLASSES
        hits = entry["hits"]
        assert [h["rank"] for h in hits] == [1, 2, 3, 4]
        for h in hits:
            assert {"rank", "id", "distance", "path", "label"} <= set(h)
            assert isinstance(h["id"], int) and h["id"] in known
            assert isinstance(h["distance"], int) and h["distance"] >= 0
            assert h["id"] == int(path_ids([h["path"]])[0]) and Path(h["path"]).is_file()
            assert h["label"] == Path(h["path"]).parent.name
        assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
        assert hits[0]["distance"] == 0
        ids = np.array([h["id"] for h in hits])
        dists = np.array([h["distance"] for h in hits])
        own = int(path_ids([query])[0])
        if (dists == 0).sum() < 4:  # the query's tie group fits in the top 4
            assert own in ids[dists == 0]
    # The JSON hits are the API's.
    _, predicted, result = search_images(flat, queries, k=4)
    assert [e["predicted"] for e in data] == predicted
    assert [[h["id"] for h in e["hits"]] for e in data] == result.ids.tolist()
    assert [[h["distance"] for h in e["hits"]] for e in data] == result.distances.tolist()


# ----------------------------------------------------------------------------------------- errors


def test_build_refuses_an_existing_index_or_a_file(runs: dict[str, Path], flat: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(_index_codes(flat).items())
    images = str(runs["root"] / "dslr" / "images" / "mug")
    line = one_line_error(capsys, main(["index", "build", "--run", str(runs["run"]), "--images", images,
                                         "--index", str(flat), "--quiet"]))
    assert "already holds an index" in line and "index add" in line
    assert sorted(_index_codes(flat).items()) == before and len(open_index(flat)) == 18
    # A non-empty folder that is not an index is refused too (nothing is overwritten).
    other = tmp_path / "stuff"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    one_line_error(capsys, main(["index", "build", "--run", str(runs["run"]), "--images", images,
                                  "--index", str(other), "--quiet"]))
    assert (other / "notes.txt").read_text() == "keep me"
    # An index path that is an existing file.
    afile = tmp_path / "index.txt"
    afile.write_text("not an index")
    one_line_error(capsys, main(["index", "build", "--run", str(runs["run"]), "--images", images,
                                  "--index", str(afile), "--quiet"]))
    assert afile.read_text() == "not an index"


def test_a_changed_model_is_refused(runs: dict[str, Path], dslr: list[str], flat: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    query = dslr[2]
    # The index's own run, named explicitly (or moved: a copy with the same model), is accepted ...
    moved = tmp_path / "moved"
    shutil.copytree(runs["run"], moved)
    assert main(["search", "--index", str(flat), "--image", query, "--run", str(moved), "--json"]) == 0
    capsys.readouterr()
    # ... another run's model is not, for search and add.
    for argv in (["search", "--index", str(flat), "--image", query, "--run", str(runs["other"])],
                 ["index", "add", "--index", str(flat), "--images", query, "--run", str(runs["other"]), "--quiet"]):
        line = one_line_error(capsys, main(argv))
        assert "model" in line and model_id(runs["other"]) in line
    # A run whose model.pt changed after the index was built (trained again into the same folder).
    index = tmp_path / "index"
    assert build_index(moved, [str(runs["root"] / "dslr" / "images" / "pen")], index, progress=False) == 6
    assert main(["search", "--index", str(index), "--image", query]) == 0
    capsys.readouterr()
    shutil.copyfile(runs["other"] / "model.pt", moved / "model.pt")
    line = one_line_error(capsys, main(["search", "--index", str(index), "--image", query]))
    assert "model" in line
    line = one_line_error(capsys, main(["index", "add", "--index", str(index), "--images", query, "--quiet"]))
    assert "model" in line and "--rebuild" in line  # the message names the fix ...
    assert len(open_index(index)) == 6  # (the refused add changed nothing)
    # ... which replaces the index with one of the run's new model, and search works again.
    pens = str(runs["root"] / "dslr" / "images" / "pen")
    assert main(["index", "build", "--run", str(moved), "--images", pens, "--index", str(index), "--rebuild",
                 "--quiet"]) == 0
    assert open_index(index).model == model_id(runs["other"]) and len(open_index(index)) == 6
    assert main(["search", "--index", str(index), "--image", query]) == 0


def test_the_same_model_saved_again_is_the_same_model(runs: dict[str, Path], dslr: list[str], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "run"
    shutil.copytree(runs["run"], copy)
    index = tmp_path / "index"
    assert build_index(copy, dslr[:4], index, progress=False) == 4
    # Saved again with another pickle protocol: other bytes, the same parameters.
    state = torch.load(copy / "model.pt", map_location="cpu", weights_only=False)
    before = (copy / "model.pt").read_bytes()
    torch.save(state, copy / "model.pt", pickle_protocol=4)
    assert (copy / "model.pt").read_bytes() != before
    assert model_id(copy) == model_id(runs["run"]) and model_id(copy).startswith("params-sha256:")
    assert main(["search", "--index", str(index), "--image", dslr[0]]) == 0
    # An index built before model ids were digests of parameters recorded the file's sha256: still accepted.
    manifest = json.loads((index / "manifest.json").read_text())
    manifest["model"] = "sha256:" + hashlib.sha256((copy / "model.pt").read_bytes()).hexdigest()
    (index / "manifest.json").write_text(json.dumps(manifest))
    assert main(["search", "--index", str(index), "--image", dslr[0]]) == 0
    capsys.readouterr()
    # A finished run given --resume again is left byte for byte as it was, and says so.
    files = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    assert main(["train", "--out", str(copy), "--resume", "--quiet"]) == 0
    assert "has finished (results.json): nothing to train, nothing rewritten" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == files


def test_a_missing_index_is_one_line(runs: dict[str, Path], dslr: list[str], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    for argv in (["search", "--index", str(missing), "--image", dslr[0]],
                 ["index", "add", "--index", str(missing), "--images", dslr[0], "--quiet"]):
        line = one_line_error(capsys, main(argv))
        assert str(missing) in line
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(capsys, main(["search", "--index", str(empty), "--image", dslr[0]]))


@pytest.mark.parametrize("manifest", [
    "{not json",
    "[1, 2]",
    json.dumps({"backend": "milvus"}),  # another backend's manifest, its fields missing
    json.dumps({"backend": "milvus", "uri": 5, "collection": "c", "n_bits": 16, "index_type": "BIN_FLAT",
                "params": {}}),
    json.dumps({"backend": "annoy"}),
    json.dumps({"backend": "faiss", "format": "dahash-faiss-index"}),
])
def test_a_corrupt_manifest_is_one_line(flat: Path, dslr: list[str], tmp_path: Path, manifest: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    index = tmp_path / "index"
    shutil.copytree(flat, index)
    (index / "manifest.json").write_text(manifest)
    for argv in (["search", "--index", str(index), "--image", dslr[0]],
                 ["index", "add", "--index", str(index), "--images", dslr[0], "--quiet"]):
        line = one_line_error(capsys, main(argv))
        assert "manifest" in line


# ---------------------------------------------------------------------------------- other kinds


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_ivf_and_hnsw_find_the_query(runs: dict[str, Path], dslr: list[str], flat: Path, tmp_path: Path,
                                     kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    index = tmp_path / kind
    assert main(["index", "build", "--run", str(runs["run"]), "--images", str(runs["root"] / "dslr"),
                 "--index", str(index), "--type", kind, "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"18 images indexed in {index} (faiss, {kind})"
    assert json.loads((index / "manifest.json").read_text())["kind"] == kind
    assert len(open_index(index)) == 18
    assert _index_codes(index) == _index_codes(flat)
    queries = [dslr[0], dslr[8], dslr[17]]
    _, _, result = search_images(index, queries, k=18)
    _, _, exact = search_images(flat, queries, k=18)
    for q, query in enumerate(queries):
        _assert_finds_itself(index, query, result.ids[q], result.distances[q])
        if kind == "ivf":  # nprobe (8) >= nlist (about sqrt(18)): every list is probed, so it is exact
            np.testing.assert_array_equal(result.distances[q], exact.distances[q])
    capsys.readouterr()
    assert main(["search", "--index", str(index), "--image", dslr[8], "--top-k", "3"]) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert len(rows) == 3 and rows[0][2] == "0"


# --------------------------------------------------------------------------------------- Milvus


def _ranking(ids: np.ndarray, distances: np.ndarray) -> dict[int, set[int]]:
    groups: dict[int, set[int]] = defaultdict(set)
    for i, d in zip(ids.tolist(), distances.tolist()):
        groups[d].add(i)
    return dict(groups)


@pytest.mark.xdist_group("milvus")  # one server, one xdist worker (conftest.py)
@pytest.mark.filterwarnings("error:.*will be removed in PyMilvus:FutureWarning")  # no pymilvus ORM call
@pytest.mark.filterwarnings("error::DeprecationWarning:pymilvus")
def test_milvus_gives_the_faiss_results(runs: dict[str, Path], dslr: list[str], flat: Path, tmp_path: Path,
                                        milvus_uri: str, milvus_token: str | None, collection_name: str,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pymilvus")
    from dahash.index.milvus_index import MilvusIndex

    # The server needs a token (conftest.py): the build reads it from --milvus-token-file, and every later
    # command that reopens the index from $DAHASH_MILVUS_TOKEN.
    monkeypatch.delenv("DAHASH_MILVUS_TOKEN", raising=False)
    token_flag = []
    if milvus_token:
        (tmp_path / "milvus-token").write_text(milvus_token + "\n")
        token_flag = ["--milvus-token-file", str(tmp_path / "milvus-token")]
    index = tmp_path / "milvus"
    try:
        assert main(["index", "build", "--run", str(runs["run"]), "--images", str(runs["root"] / "dslr"),
                     "--index", str(index), "--backend", "milvus", "--milvus-uri", milvus_uri,
                     "--collection", collection_name, "--quiet", "--json", *token_flag]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out)["indexed"] == 18
        manifest = (index / "manifest.json").read_text()
        assert json.loads(manifest)["backend"] == "milvus"
        if milvus_token:
            secret = milvus_token.split(":", 1)[-1]
            assert secret not in manifest + out + err
            monkeypatch.setenv("DAHASH_MILVUS_TOKEN", milvus_token)
        assert len(open_index(index)) == 18
        queries = dslr[::3]
        # The whole ranking: the same distances, and the same ids at each distance.
        m_queries, m_pred, got = search_images(index, queries, k=18)
        f_queries, f_pred, want = search_images(flat, queries, k=18)
        assert m_queries == f_queries and m_pred == f_pred
        np.testing.assert_array_equal(got.distances, want.distances)
        for q in range(len(queries)):
            assert _ranking(got.ids[q], got.distances[q]) == _ranking(want.ids[q], want.distances[q])
            meta = {i: m for i, m in zip(got.ids[q].tolist(), got.metadata[q])}
            assert meta == {i: m for i, m in zip(want.ids[q].tolist(), want.metadata[q])}
        # A top 5: the same distances; ids the same below the last distance, a subset at it.
        _, _, got5 = search_images(index, queries, k=5)
        np.testing.assert_array_equal(got5.distances, want.distances[:, :5])
        for q in range(len(queries)):
            last = int(got5.distances[q, -1])
            full, top = _ranking(want.ids[q], want.distances[q]), _ranking(got5.ids[q], got5.distances[q])
            assert all(top[d] == full[d] for d in top if d != last)
            assert top[last] <= full[last]
        # Adding through the manifest works on Milvus too, and skips what is there.
        assert add_images(index, [str(runs["root"] / "dslr" / "images" / "pen")], progress=False) == (0, 6)
    finally:
        if (index / "manifest.json").is_file():
            MilvusIndex.load(index).drop()
        else:  # the build failed after creating the collection: drop it by name
            from pymilvus import MilvusClient

            client = MilvusClient(uri=milvus_uri, token=milvus_token or "", dedicated=True)
            try:
                if client.has_collection(collection_name):
                    client.drop_collection(collection_name)
            finally:
                client.close()


def test_a_search_whose_every_query_is_unreadable_fails(flat: Path, dslr: list[str], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    line = one_line_error(capsys, main(["search", "--index", str(flat), "--image", str(broken)]))
    assert line.startswith(f"dahash: error: no image could be read (1 given; first: {broken}: ")
    # One readable query among unreadable ones still answers, and says in one line what it skipped
    # (not as a Python warning: warnings are errors here).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["search", "--index", str(flat), "--image", str(broken), dslr[0], "--json"]) == 0
    captured = capsys.readouterr()
    assert [q["query"] for q in json.loads(captured.out)] == [dslr[0]]
    assert captured.err.startswith(f"dahash: 1 image(s) could not be read and were skipped (first: {broken}: ")
    assert len(captured.err.strip().splitlines()) == 1


def test_predict_is_eq6_on_the_binary_codes_of_the_outputs() -> None:
    """Encoder.predict binarizes only the queries (its bank holds +-1 codes already): the class
    of eq. 6 with binary codes, sgn(0) = +1 included, as class_probabilities(binary=True) gives."""
    rng = np.random.default_rng(0)
    bank = np.where(rng.standard_normal((60, 16)) >= 0, 1.0, -1.0).astype(np.float32)
    labels = rng.integers(0, 4, 60)
    classes = ["a", "b", "c", "d"]
    encoder = Encoder(SimpleNamespace(classes=classes), bank, labels)
    u = rng.standard_normal((200, 16)).astype(np.float32)
    u[:50, :4] = 0.0
    want = class_probabilities(u, bank, labels, len(classes), binary=True).argmax(1)
    assert encoder.predict(u) == [classes[i] for i in want]
    assert len(set(encoder.predict(u))) > 1
