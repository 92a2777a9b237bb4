"""MilvusIndex against a real Milvus 2.3.5 server (see conftest.py; skipped when none starts).

Each test has its own collection, dropped at the end.  The reference is the brute-force
``hamming_ranking`` of :mod:`dahash.metrics.retrieval`.  The server requires a token, which every
index here takes from ``$DAHASH_MILVUS_TOKEN``, as the CLI's do; pymilvus's ORM API, deprecated in
pymilvus 3.0, must not be reached (its warning is an error).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the Milvus backend needs pymilvus (extra 'milvus')")
pytestmark = [pytest.mark.xdist_group("milvus"),  # one server, one xdist worker (conftest.py)
              # pymilvus 3.0 warns (FutureWarning) on each ORM call it removes in 3.1: none may be reached.
              pytest.mark.filterwarnings("error:.*will be removed in PyMilvus:FutureWarning"),
              pytest.mark.filterwarnings("error::DeprecationWarning:pymilvus")]

from dahash.errors import DataError  # noqa: E402
from dahash.index.base import HammingIndex  # noqa: E402
from dahash.index.milvus_index import MilvusIndex, MilvusUnavailableError  # noqa: E402
from dahash.metrics.retrieval import hamming_ranking  # noqa: E402


@pytest.fixture(autouse=True)
def _token_from_the_environment(milvus_token: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's token where the CLI's indexes find it: in $DAHASH_MILVUS_TOKEN."""
    if milvus_token:
        monkeypatch.setenv("DAHASH_MILVUS_TOKEN", milvus_token)
    else:
        monkeypatch.delenv("DAHASH_MILVUS_TOKEN", raising=False)


@pytest.fixture
def make_index(milvus_uri: str, milvus_token: str | None,
               collection_name: str) -> Iterator[Callable[..., MilvusIndex]]:
    """MilvusIndex(n_bits, milvus_uri, <this test's collection>, **kw); dropped at teardown."""
    made: list[MilvusIndex] = []

    def make(n_bits: int, suffix: str = "", **kwargs) -> MilvusIndex:
        index = MilvusIndex(n_bits, milvus_uri, collection_name + suffix, **kwargs)
        made.append(index)
        return index

    yield make
    from pymilvus import MilvusClient

    client = MilvusClient(uri=milvus_uri, token=milvus_token or "", dedicated=True)
    try:
        for index in made:
            index.close()
            if client.has_collection(index.collection_name):
                client.drop_collection(index.collection_name)
    finally:
        client.close()


def random_codes(rng: np.random.Generator, n: int, n_bits: int) -> np.ndarray:
    return np.packbits(rng.random((n, n_bits)) < 0.5, axis=1)


def clustered_codes(rng: np.random.Generator, centres: np.ndarray, n: int, flip: float) -> np.ndarray:
    """``n`` copies of random rows of ``centres`` (bools), each bit flipped with probability ``flip``."""
    rows = centres[rng.integers(0, len(centres), n)]
    return np.packbits(rows ^ (rng.random(rows.shape) < flip), axis=1)


def assert_same_ranking(result_ids: np.ndarray, result_dist: np.ndarray,
                        db: np.ndarray, queries: np.ndarray, db_ids: np.ndarray) -> None:
    """Distances equal the brute force exactly; per distinct distance the id sets are equal,
    except at the k boundary, where the hits need only be among the items at that distance."""
    k = result_ids.shape[1]
    order, dist = hamming_ranking(queries, db)  # the full ranking
    np.testing.assert_array_equal(result_dist, dist[:, :k].astype(np.int32))
    for q in range(len(queries)):
        kth = dist[q, k - 1]
        for d in np.unique(dist[q, :k]):
            got = set(result_ids[q][result_dist[q] == d].tolist())
            at_d = set(db_ids[order[q][dist[q] == d]].tolist())
            if d < kth:
                assert got == at_d, (q, int(d))
            else:
                assert got <= at_d and len(got) == int((dist[q, :k] == d).sum()), (q, int(d))


def test_flat_equals_brute_force(make_index) -> None:
    rng = np.random.default_rng(0)
    n_bits, n, k = 52, 3000, 20  # 52 bits: the zero pad bits must not change a distance
    db = random_codes(rng, n, n_bits)
    queries = np.concatenate([random_codes(rng, 40, n_bits), db[:10]])
    ids = rng.choice(10**12, n, replace=False).astype(np.int64)  # large, unordered external ids
    meta = [{"path": f"img/{i}.jpg", "label": int(i % 7)} for i in range(n)]
    index = make_index(n_bits, batch_size=700)  # 5 insert calls, one flush
    index.add(db, ids, meta)
    assert len(index) == n
    assert len(index.client.query(index.collection_name, filter="id >= 0", output_fields=["id"], limit=n)) == n
    res = index.search(queries, k=k)
    assert res.ids.shape == (50, k) and res.distances.shape == (50, k)
    assert_same_ranking(res.ids, res.distances, db, queries, ids)
    # Each database code finds itself at distance 0.
    assert (res.distances[40:, 0] == 0).all()
    row_of = {int(i): r for r, i in enumerate(ids)}
    for q in range(40, 50):
        assert ids[q - 40] in res.ids[q][res.distances[q] == 0]
    # Metadata travels with every hit.
    for q in range(50):
        for i, m in zip(res.ids[q], res.metadata[q]):
            assert m == meta[row_of[int(i)]]


def test_remove(make_index) -> None:
    rng = np.random.default_rng(3)
    n = 600
    db = random_codes(rng, n, 32)
    index = make_index(32)
    index.add(db, np.arange(n))
    gone = rng.choice(n, 150, replace=False)
    # Unknown ids and repeats are ignored: the count is of ids actually removed.
    assert index.remove(np.concatenate([gone, gone[:5], [10_000, 10_001]])) == 150
    assert len(index) == n - 150
    assert index.remove(gone) == 0
    assert index.remove([]) == 0
    kept_id = int(np.setdiff1d(np.arange(n), gone)[0])
    assert index.contains([gone[0], kept_id, 10_000]).tolist() == [False, True, False]
    assert index.get_metadata([kept_id, gone[0]]) == [{}, None]  # added without metadata: {}
    res = index.search(db, k=30)  # every code, including the removed ones as queries
    assert not np.isin(res.ids, gone).any()
    kept = np.setdiff1d(np.arange(n), gone)
    assert (res.distances[kept, 0] == 0).all()
    assert_same_ranking(res.ids[kept], res.distances[kept], db[kept], db[kept], kept)
    # A removed id can be added again.
    index.add(db[gone[:3]], gone[:3])
    assert len(index) == n - 147


def test_empty_padding_and_bad_inputs(make_index) -> None:
    rng = np.random.default_rng(4)
    db = random_codes(rng, 20, 60)
    index = make_index(60)
    assert isinstance(index, HammingIndex)
    assert len(index) == 0
    # Milvus needs a dimension divisible by 8: 60 bits are stored as 64.
    assert index.dim == 64 and index.n_bytes == 8
    assert index.stats() == {
        "n_bits": 60, "backend": "milvus", "kind": "BIN_FLAT", "count": 0, "model": None,
        "bytes_per_code": 8, "params": {}, "uri": index.uri, "collection": index.collection_name,
    }
    # Searching an empty collection: all padding.
    res = index.search(db[:2], k=3)
    assert res.ids.dtype == np.int64 and res.distances.dtype == np.int32
    assert res.ids.shape == res.distances.shape == (2, 3)
    assert (res.ids == -1).all() and (res.distances == -1).all()
    assert res.metadata == [[None] * 3] * 2
    # An existing collection with another code width is refused, naming both.
    with pytest.raises(DataError, match=r"holds 64-bit codes .*n_bits=72 needs 72-bit codes"):
        MilvusIndex(72, index.uri, index.collection_name)
    # Same width (8 bytes) but another n_bits, recorded in the collection's description.
    with pytest.raises(DataError, match=r"n_bits=60, but .* n_bits=64"):
        MilvusIndex(64, index.uri, index.collection_name)
    with pytest.raises(DataError, match=r"indexed with BIN_FLAT.*'BIN_IVF_FLAT'"):
        MilvusIndex(60, index.uri, index.collection_name, index_type="BIN_IVF_FLAT")

    index.add(db[:10], np.arange(10))  # no metadata: each item gets {}
    assert index.stats()["count"] == 10
    # Fewer hits than k: padded with -1 / -1 / None.
    res = index.search(db[:2], k=14)
    assert (res.ids[:, :10] >= 0).all() and (res.ids[:, 10:] == -1).all()
    assert (res.distances[:, :10] >= 0).all() and (res.distances[:, 10:] == -1).all()
    assert res.metadata[0] == [{}] * 10 + [None] * 4
    assert res.ids[0, 0] == 0 and res.ids[1, 0] == 1 and (res.distances[:, 0] == 0).all()
    cases = [
        (lambda: index.add(db[10:12], [5, 10]), r"already in collection.*\[5\]"),
        (lambda: index.add(db[10:13], [20, 21, 20]), r"repeat within the batch.*\[20\]"),
        (lambda: index.add(db[10:12, :7], [20, 21]), r"shape \(2, 7\)"),
        (lambda: index.add(db[10:12].astype(np.int16), [20, 21]), r"dtype int16"),
        (lambda: index.add(db[10:12], [20]), r"ids has 1 entries but codes has 2 rows"),
        (lambda: index.add(db[10:12], [20.0, 21.0]), r"dtype float64"),
        (lambda: index.add(db[10:12], [-1, 21]), r"-1"),
        (lambda: index.add(db[10:12], [20, 21], [{}]), r"metadata has 1 entries"),
        (lambda: index.add(db[10:11], [20], [{"x": object()}]), r"metadata\[0\] is not JSON"),
        (lambda: index.add(db[10:11], [20], [{"x": "a" * 70_000}]), r"7000[0-9] bytes of JSON, over the 65535-byte limit"),
        (lambda: index.add(db[10:11] | np.uint8(1), [20]), r"padding bits beyond n_bits=60"),
        (lambda: index.search(db[:1], k=0), r"k must be an integer in 1\.\.16384"),
        (lambda: index.search(db[:1], k=20_000), r"got 20000"),
        (lambda: index.search(db[:1, :4], k=1), r"shape \(1, 4\)"),
        (lambda: index.remove([[1, 2]]), r"1-D array of integers"),
    ]
    for call, pattern in cases:
        with pytest.raises(DataError, match=pattern):
            call()
    assert len(index) == 10  # nothing half-added
    res = index.search(db[:10], k=1)
    np.testing.assert_array_equal(res.ids[:, 0], np.arange(10))


def test_save_load_round_trip(make_index, milvus_uri: str, tmp_path) -> None:
    rng = np.random.default_rng(5)
    db = random_codes(rng, 400, 48)
    queries = random_codes(rng, 20, 48)
    index = make_index(48, model="dah-resnet50-office31", index_type="BIN_IVF_FLAT",
                       nlist=8, nprobe=8)
    index.add(db, np.arange(400) * 3, [{"i": i} for i in range(400)])
    before = index.search(queries, k=10)
    folder = tmp_path / "idx"
    index.save(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest == {
        "backend": "milvus", "version": 1, "uri": milvus_uri, "collection": index.collection_name,
        "n_bits": 48, "index_type": "BIN_IVF_FLAT", "params": {"nlist": 8, "nprobe": 8},
        "model": "dah-resnet50-office31", "info": {}, "batch_size": 10_000,
    }
    index.close()

    loaded = MilvusIndex.load(folder, n_bits=48, model="dah-resnet50-office31")
    try:
        assert len(loaded) == 400
        assert (loaded.n_bits, loaded.model, loaded.index_type) == (48, "dah-resnet50-office31",
                                                                     "BIN_IVF_FLAT")
        after = loaded.search(queries, k=10)
        np.testing.assert_array_equal(after.distances, before.distances)
        # nprobe = nlist: exhaustive, so the results equal the brute force too.
        assert_same_ranking(before.ids, before.distances, db, queries, np.arange(400) * 3)
        assert_same_ranking(after.ids, after.distances, db, queries, np.arange(400) * 3)
    finally:
        loaded.close()

    with pytest.raises(DataError, match=r"model 'dah-resnet50-office31'.*model 'other'"):
        MilvusIndex.load(folder, model="other")
    with pytest.raises(DataError, match=r"n_bits=48.*n_bits=64"):
        MilvusIndex.load(folder, n_bits=64)
    # The collection itself records the model: a direct connection with another one is refused.
    with pytest.raises(DataError, match=r"model 'dah-resnet50-office31'.*model 'other'"):
        MilvusIndex(48, milvus_uri, index.collection_name, index_type="BIN_IVF_FLAT", model="other")
    with pytest.raises(DataError, match=r"manifest\.json is missing"):
        MilvusIndex.load(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match=r"bad/manifest\.json is not a readable JSON"):
        MilvusIndex.load(tmp_path / "bad")
    (tmp_path / "faiss").mkdir()
    (tmp_path / "faiss" / "manifest.json").write_text(json.dumps({"backend": "faiss"}))
    with pytest.raises(DataError, match=r"not a Milvus index manifest \(backend 'faiss'\)"):
        MilvusIndex.load(tmp_path / "faiss")

    # Unreachable server: one clear error naming the URI, quickly.
    t0 = time.monotonic()
    with pytest.raises(MilvusUnavailableError, match=r"cannot connect to Milvus at http://127\.0\.0\.1:9\b"):
        MilvusIndex.load(folder, uri="http://127.0.0.1:9", timeout=2)
    assert time.monotonic() - t0 < 15
    assert issubclass(MilvusUnavailableError, ConnectionError)

    # A manifest whose collection was dropped: DataError, and load never re-creates it.
    MilvusIndex.load(folder).drop()
    with pytest.raises(DataError, match=r"has no collection"):
        MilvusIndex.load(folder)


def test_ivf_recall_against_flat(make_index) -> None:
    rng = np.random.default_rng(6)
    n_bits, n, k = 64, 5000, 10
    centres = rng.random((100, n_bits)) < 0.5
    db = clustered_codes(rng, centres, n, flip=0.2)
    queries = clustered_codes(rng, centres, 200, flip=0.2)
    ids = np.arange(n)
    flat = make_index(n_bits, "_flat")
    ivf = make_index(n_bits, "_ivf", index_type="BIN_IVF_FLAT", nlist=128, nprobe=4)
    flat.add(db, ids)
    ivf.add(db, ids)
    ivf.wait_for_index(timeout=120)  # searches hit the IVF index, not the brute-force scan
    exact = flat.search(queries, k=k)
    approx = ivf.search(queries, k=k)
    assert_same_ranking(exact.ids, exact.distances, db, queries, ids)
    # recall@10 against BIN_FLAT, counting a hit as found when it is no farther than the 10th
    # exact neighbour (so ties cut at rank 10 do not count as misses).
    found = (approx.ids >= 0) & (approx.distances <= exact.distances[:, -1:])
    recall = found.mean()
    id_recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(approx.ids, exact.ids)])
    print(f"BIN_IVF_FLAT nlist=128 nprobe=4 recall@10 = {recall:.3f} (id overlap {id_recall:.3f})")
    assert 0.90 <= recall < 0.995, recall  # < 0.995: the IVF index, not a scan, answered
    # Every IVF hit is a real item at its true distance, so never nearer than the exact ones.
    assert (approx.ids >= 0).all()
    assert (approx.distances >= exact.distances).all()
    # More probes, better recall; all of them, exact.
    ivf.nprobe = 16
    more = ivf.search(queries, k=k)
    recall_16 = ((more.ids >= 0) & (more.distances <= exact.distances[:, -1:])).mean()
    print(f"BIN_IVF_FLAT nlist=128 nprobe=16 recall@10 = {recall_16:.3f}")
    assert recall_16 >= recall and recall_16 >= 0.95, recall_16
    ivf.nprobe = 128
    full = ivf.search(queries, k=k)
    np.testing.assert_array_equal(full.distances, exact.distances)
