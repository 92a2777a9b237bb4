"""Dynamic batching of uploads in ``dahash serve`` (:class:`dahash.retrieval.batching.Batcher`): concurrent
uploads go through the backbone and the head in one batch, and every answer is the one encoding
the upload alone gives (packed code, predicted class, hit ids and distances), exactly.

Why exactly, when a batch rounds the network's output u differently from a batch of one: the code
is the signs of u, and the predicted class (eq. 6 with binary codes) and the hits depend on the
code alone. A sign can flip only for a component of u closer to 0 than the rounding difference;
the server runs again as a batch of one every upload of a larger batch with a component within
SIGN_MARGIN of 0, and :func:`test_a_batch_rounds_u_far_below_the_sign_margin` measures the
difference here to be far below that margin (and a batch of one to be one-by-one encoding, bit for
bit). The HTTP tests run with the margin as shipped, with a margin of 0 (every answer straight
from a batch) and with a margin above 1 (every upload of a larger batch run again alone).

No test is timed: waits are for events, with generous deadlines only against a hang.
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")

import httpx  # noqa: E402
from cli_errors import one_line_error  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402
from tiny_runs import backbone_built_once, running_server, tiny_dslr_index  # noqa: F401,E402 (the fixture must be in this module)

from dahash.cli import main  # noqa: E402
from dahash.codes import pack_codes  # noqa: E402
from dahash.errors import DahashError  # noqa: E402
from dahash.index import open_index  # noqa: E402
from dahash.retrieval import serve as serve_module  # noqa: E402
from dahash.retrieval import uploads as uploads_module  # noqa: E402
from dahash.retrieval.batching import Batcher  # noqa: E402
from dahash.retrieval.serve import SIGN_MARGIN, create_app  # noqa: E402
from dahash.retrieval.search import search_images  # noqa: E402
from dahash.runs.loading import image_outputs, prepare_image, prepared_outputs  # noqa: E402

pytestmark = pytest.mark.usefixtures("backbone_built_once")

HANG = 60  # seconds: only a hung test waits this long


@pytest.fixture(scope="module")
def setup(tiny_office31: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny run, a flat index of the 18 dslr images, and 12 queries: 6 images nobody indexed
    (dslr images mirrored: other bytes, in no cache, so they go through the backbone) and 6 indexed
    ones (their features come from the cache)."""
    base = tmp_path_factory.mktemp("serve-batching")
    data = tiny_dslr_index(tiny_office31, base, bits=16)
    new_dir = base / "new"
    new_dir.mkdir()
    new = []
    for i, path in enumerate(data["dslr"][::3]):
        target = new_dir / f"mirrored{i}.png"
        Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(target)
        new.append(str(target))
    return {**data, "queries": new + data["dslr"][1::3]}


def _unbatched(state: Any, path: str, k: int) -> dict[str, Any]:
    """The answer of encoding ``path`` alone, as the server did before batching (and as ``dahash
    search`` does): code, predicted class, hit ids and distances. The feature cache is read, not
    written, as the server does, so the mirrored images stay new."""
    codes, predicted = state.encode_file(path)
    result = open_index(state.index_path).search(codes, k)
    return {"code": codes[0].tobytes().hex(), "predicted": predicted,
            "ids": result.ids[0].tolist(), "distances": result.distances[0].tolist()}


def _answer(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    return {"code": body["code"], "predicted": body["predicted"], "ids": [h["id"] for h in body["hits"]],
            "distances": [h["distance"] for h in body["hits"]]}


def _post(client: Any, path: str, k: int) -> httpx.Response:
    return client.post("/search", files={"image": (Path(path).name, Path(path).read_bytes(), "image/png")},
                       data={"k": str(k)})


# ------------------------------------------------------------------------- the encoding itself


def test_a_batch_rounds_u_far_below_the_sign_margin(setup: dict[str, Any]) -> None:
    """The outputs of one batch of all queries against each query encoded alone: the difference
    is float rounding, a hundred times below SIGN_MARGIN; where the margin holds, the codes are the
    same; and the batch-of-one path is bit for bit the one-by-one encoding."""
    state = create_app(setup["index"]).state.dahash
    run = state.encoder.run
    items = [prepare_image(run, p) for p in setup["queries"]]
    assert sum(item.pixels is not None for item in items) == 6  # six through the backbone, in one batch
    assert sum(item.features is not None for item in items) == 6  # six from the feature cache
    batched = prepared_outputs(run, items)
    alone = np.concatenate([image_outputs(run, [p], num_workers=0, write_cache=False, progress=False)[0]
                            for p in setup["queries"]])
    assert batched.shape == alone.shape == (12, 16)
    print(f"\nmax |u batched - u alone| = {np.abs(batched - alone).max():.2e}; "
          f"min |u| = {np.abs(alone).min():.2e}; SIGN_MARGIN = {SIGN_MARGIN:g}")
    assert np.abs(batched - alone).max() < SIGN_MARGIN / 100
    clear = np.abs(alone).min(1) >= SIGN_MARGIN
    assert clear.sum() >= 6
    assert np.array_equal(pack_codes(batched[clear]), pack_codes(alone[clear]))
    for item, p in zip(items, setup["queries"]):
        assert np.array_equal(prepared_outputs(run, [item]),
                              image_outputs(run, [p], num_workers=0, write_cache=False, progress=False)[0])
    # The server's rows, margin check included, give the one-by-one answers.
    for row, p in zip(state.encode_batch(items), setup["queries"]):
        codes, predicted, hits = state.answer_of_output(row, 5, "")
        want_codes, want_predicted = state.encode_file(p)
        assert np.array_equal(codes, want_codes) and predicted == want_predicted
        assert [h["id"] for h in hits] == open_index(state.index_path).search(want_codes, 5).ids[0].tolist()


def test_rows_near_zero_are_run_again_alone_and_batches_of_one_never(setup: dict[str, Any],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With a margin above every |u|, each row of a batch of several is its upload's own batch of
    one, bit for bit; a batch of one is never run twice."""
    monkeypatch.setattr(serve_module, "SIGN_MARGIN", 2.0)
    state = create_app(setup["index"]).state.dahash
    run = state.encoder.run
    items = [prepare_image(run, p) for p in setup["queries"]]
    alone = np.concatenate([prepared_outputs(run, [item]) for item in items])
    assert np.abs(alone).max() < 2.0
    assert np.array_equal(state.encode_batch(items), alone)
    assert state.encoded_singly == len(items)
    assert np.array_equal(state.encode_batch(items[:1]), alone[:1])
    assert state.encoded_singly == len(items)


# ------------------------------------------------------------------------------------ over HTTP


def _gate_first_batch(state: Any) -> tuple[threading.Event, list[int]]:
    """Hold the batcher's first batch until the event is set, so that the other uploads queue up
    and make the next batch together: batching without depending on timing."""
    gate, sizes = threading.Event(), []
    encode = state.batcher.encode

    def gated(items: list[Any]) -> Any:
        sizes.append(len(items))
        if len(sizes) == 1:
            assert gate.wait(HANG)
        return encode(items)

    state.batcher.encode = gated
    return gate, sizes


@pytest.mark.parametrize("margin", ["as shipped", 0.0, 2.0])
def test_concurrent_uploads_share_batches_and_answer_as_one_by_one(setup: dict[str, Any], margin: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if margin != "as shipped":
        monkeypatch.setattr(serve_module, "SIGN_MARGIN", margin)
    queries, k = setup["queries"], 7
    app = create_app(setup["index"], max_batch=16, max_concurrent=16, max_wait_ms=5)
    state = app.state.dahash
    want = [_unbatched(state, p, k) for p in queries]
    gate, sizes = _gate_first_batch(state)
    with TestClient(app) as client, ThreadPoolExecutor(len(queries)) as pool:
        futures = [pool.submit(_post, client, p, k) for p in queries]
        deadline = time.monotonic() + HANG
        while not (sizes and state.batcher.queued == len(queries) - sizes[0]):
            assert time.monotonic() < deadline, (sizes, state.batcher.queued)
            time.sleep(0.01)
        gate.set()
        got = [_answer(f.result(timeout=HANG)) for f in futures]
        stats = client.get("/stats").json()["batching"]
    assert got == want
    # The held batch, then the rest; or one batch, when every upload was decoded before the first
    # batch closed (seen once in a full-suite run on idle cores).
    assert sum(sizes) == len(queries) and len(sizes) in (1, 2), sizes
    assert stats["batches"] == len(sizes) and stats["images"] == len(queries) and stats["largest_batch"] == max(sizes)
    assert max(sizes) >= len(queries) // 2
    if margin == 2.0:
        # |u| < 1 < 2: every upload of a batch of several run again alone (a batch of one is already)
        assert stats["encoded_singly"] == sum(size for size in sizes if size > 1)
    elif margin == 0.0:
        assert stats["encoded_singly"] == 0  # every answer straight from its batch


def test_batches_hold_at_most_max_batch_uploads(setup: dict[str, Any]) -> None:
    queries = setup["queries"]
    app = create_app(setup["index"], max_batch=4, max_concurrent=16, max_wait_ms=1000)
    state = app.state.dahash
    want = [_unbatched(state, p, 5) for p in queries]
    gate, sizes = _gate_first_batch(state)
    with TestClient(app) as client, ThreadPoolExecutor(len(queries)) as pool:
        futures = [pool.submit(_post, client, p, 5) for p in queries]
        deadline = time.monotonic() + HANG
        while not (sizes and state.batcher.queued == len(queries) - sizes[0]):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        gate.set()
        assert [_answer(f.result(timeout=HANG)) for f in futures] == want
    assert max(sizes) == 4 and sum(sizes) == len(queries)


def test_max_batch_1_encodes_each_upload_alone(setup: dict[str, Any]) -> None:
    app = create_app(setup["index"], max_batch=1)
    state = app.state.dahash
    assert state.batcher is None
    with TestClient(app) as client:
        for p in setup["queries"][::3]:
            assert _answer(_post(client, p, 4)) == _unbatched(state, p, 4)
        response = client.post("/search", files={"image": ("a.jpg", b"not an image", "image/jpeg")})
        assert response.status_code == 415
        assert client.get("/stats").json()["batching"] == {"max_batch": 1, "encoded_singly": 0}


def test_a_failing_batch_is_a_500_and_the_server_keeps_serving(setup: dict[str, Any]) -> None:
    app = create_app(setup["index"])
    state = app.state.dahash
    encode = state.batcher.encode

    def broken(items: list[Any]) -> Any:
        raise DahashError("the model file is gone")

    state.batcher.encode = broken
    with TestClient(app) as client:
        response = _post(client, setup["queries"][0], 3)
        assert response.status_code == 500 and "the model file is gone" in response.json()["detail"]
        state.batcher.encode = encode
        assert _post(client, setup["queries"][0], 3).status_code == 200


@pytest.mark.parametrize("lanes", [1, 2])
def test_a_real_server_batches_concurrent_uploads(setup: dict[str, Any], lanes: int) -> None:
    """uvicorn on loopback, 36 uploads from 12 threads: all answered as one by one, with one lane
    and with two running batches side by side."""
    app = create_app(setup["index"], lanes=lanes)
    state = app.state.dahash
    queries = setup["queries"] * 3
    want = {p: _unbatched(state, p, 6) for p in setup["queries"]}
    with running_server(app) as base, httpx.Client(base_url=base, timeout=HANG) as http:
        with ThreadPoolExecutor(12) as pool:
            got = list(pool.map(lambda p: _answer(_post(http, p, 6)), queries))
        stats = http.get("/stats").json()["batching"]
    assert got == [want[p] for p in queries]
    assert stats["images"] == len(queries) and stats["lanes"] == lanes
    print(f"\n{len(queries)} uploads from 12 threads: {stats['batches']} batches, largest {stats['largest_batch']}")


# ------------------------------------------------------------------------------ the batcher alone


def test_the_batcher_hands_each_item_its_row_and_each_error_to_its_batch() -> None:
    seen: list[list[int]] = []

    def double(items: list[int]) -> list[int]:
        seen.append(list(items))
        if 13 in items:
            raise ValueError("unlucky")
        return [2 * i for i in items]

    batcher = Batcher(double, max_batch=8, max_wait=HANG)
    try:
        # A lone request does not wait for max_wait: nobody else is preparing an item.
        with batcher.announce() as submit:
            assert submit(5).result(timeout=HANG) == 10
        with batcher.announce() as submit:
            with pytest.raises(ValueError, match="unlucky"):
                submit(13).result(timeout=HANG)
            with pytest.raises(RuntimeError, match="one item"):
                submit(1)
        # A request whose preparation fails does not keep the others waiting.
        ready = threading.Event()

        def fails_to_prepare() -> None:
            with batcher.announce():
                ready.wait(HANG)

        with ThreadPoolExecutor(1) as pool:
            failing = pool.submit(fails_to_prepare)
            with batcher.announce() as submit:
                future = submit(7)
            ready.set()
            failing.result(timeout=HANG)
            assert future.result(timeout=HANG) == 14
    finally:
        batcher.close()
    assert seen == [[5], [13], [7]]
    # Closed, then used again: a new worker starts.
    with batcher.announce() as submit:
        assert submit(1).result(timeout=HANG) == 2
    batcher.close()
    assert batcher.stats()["batches"] == 4 and batcher.stats()["images"] == 4


def test_lanes_run_batches_side_by_side_and_each_item_gets_its_row() -> None:
    """Two lanes: two batches are inside ``encode`` at the same time (a barrier that one lane alone
    could never pass), and each request still gets its own row."""
    barrier = threading.Barrier(2, timeout=HANG)
    seen: list[list[int]] = []

    def slow_double(items: list[int]) -> list[int]:
        seen.append(list(items))
        barrier.wait()
        return [2 * i for i in items]

    batcher = Batcher(slow_double, max_batch=8, max_wait=0.0, lanes=2)
    try:
        with batcher.announce() as submit:
            first = submit(3)
        with batcher.announce() as submit:
            second = submit(4)
        assert (first.result(timeout=HANG), second.result(timeout=HANG)) == (6, 8)
        assert sorted(seen) == [[3], [4]]
        assert batcher.stats()["lanes"] == 2 and batcher.stats()["batches"] == 2
        # Closed, then used again: both lanes start again.
        batcher.close()
        with batcher.announce() as submit:
            first = submit(5)
        with batcher.announce() as submit:
            second = submit(6)
        assert (first.result(timeout=HANG), second.result(timeout=HANG)) == (10, 12)
    finally:
        barrier.abort()  # a failed assertion must not leave a lane waiting
        batcher.close()


def test_a_lane_takes_its_share_and_waits_for_stragglers_only_when_no_other_lane_is_free() -> None:
    """Two lanes, ``max_wait`` an hour: a lane with a free neighbour does not wait for an announced
    item; the last free lane does, then takes half the queue (rounded up) and leaves the rest to the
    lane that frees up next."""
    sizes: list[list[int]] = []
    gate = threading.Event()

    def held(items: list[int]) -> list[int]:
        sizes.append(list(items))
        if items == [1]:
            assert gate.wait(HANG)
        return items

    batcher = Batcher(held, max_batch=16, max_wait=3600, lanes=2)
    try:
        with batcher.announce():  # a request still preparing its item, for the whole first step
            with batcher.announce() as submit:
                first = submit(1)
            deadline = time.monotonic() + HANG
            while sizes != [[1]]:  # taken at once: the other lane was free
                assert time.monotonic() < deadline, sizes
                time.sleep(0.01)
            announcements = [batcher.announce() for _ in range(3)]
            submits = [a.__enter__() for a in announcements]
            futures = [submit(i) for submit, i in zip(submits, (2, 3, 4))]
            for a in announcements:
                a.__exit__(None, None, None)
            # The open announcement above still keeps the one free lane waiting, up to an hour.
            time.sleep(0.05)
            assert sizes == [[1]] and batcher.queued == 3
        # Nothing is coming any more: the free lane takes its share, 2 of 3, then the last one, all
        # while the first lane is still held.
        assert [f.result(timeout=HANG) for f in futures] == [2, 3, 4]
        assert sizes == [[1], [2, 3], [4]] and not first.done()
        gate.set()
        assert first.result(timeout=HANG) == 1
    finally:
        gate.set()
        batcher.close()


def test_a_lane_that_waits_for_more_lets_another_take_the_items() -> None:
    """With two lanes waiting on one queue, every item is run exactly once."""
    batcher = Batcher(lambda items: [i + 1 for i in items], max_batch=4, max_wait=0.005, lanes=2)
    try:
        with ThreadPoolExecutor(8) as pool:
            def one(i: int) -> int:
                with batcher.announce() as submit:
                    return submit(i).result(timeout=HANG)

            assert list(pool.map(one, range(200))) == list(range(1, 201))
        assert batcher.stats()["images"] == 200
    finally:
        batcher.close()


# ---------------------------------------------------------------------------------- settings


def test_batch_settings_are_checked(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ({"max_batch": 0}, {"max_batch": 2.5}, {"max_batch": True}, {"max_wait_ms": -1},
                {"max_wait_ms": float("nan")}, {"max_wait_ms": float("inf")}, {"lanes": 0}, {"lanes": True},
                {"lanes": 1.5}):
        with pytest.raises(DahashError, match=next(iter(bad))):
            create_app(setup["index"], **bad)
    line = one_line_error(capsys, main(["serve", "--index", str(setup["index"]), "--max-batch", "0"]))
    assert "--max-batch" in line
    line = one_line_error(capsys, main(["serve", "--index", str(setup["index"]), "--max-wait-ms", "-5"]))
    assert "--max-wait-ms" in line
    line = one_line_error(capsys, main(["serve", "--index", str(setup["index"]), "--lanes", "0"]))
    assert "--lanes" in line


def test_serve_runs_each_lane_on_its_share_of_the_threads(setup: dict[str, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve``: by default one lane per thread with batching, each lane on one torch thread;
    ``--lanes 1`` gives the one lane every thread; without batching, no lanes."""
    import torch
    import uvicorn

    seen: list[tuple[int, int, int]] = []

    def fake_run(app: Any, **kwargs: Any) -> None:
        # Read in a new thread, as a lane is: FAISS's OpenMP setting shares the calling thread's count.
        with ThreadPoolExecutor(1) as pool:
            lane_threads = pool.submit(torch.get_num_threads).result()
        batcher = app.state.dahash.batcher
        seen.append((lane_threads, batcher.lanes if batcher else 0, kwargs["port"]))

    monkeypatch.setattr(uvicorn, "run", fake_run)
    threads = torch.get_num_threads()
    try:
        serve_module.serve(setup["index"], threads=2, port=1)
        serve_module.serve(setup["index"], threads=2, lanes=1, port=2)
        serve_module.serve(setup["index"], threads=3, lanes=2, port=3)
        serve_module.serve(setup["index"], threads=2, max_batch=1, port=4)
        with pytest.raises(DahashError, match="lanes"):
            serve_module.serve(setup["index"], threads=2, lanes=0)
    finally:
        torch.set_num_threads(threads)
    assert seen == [(1, 2, 1), (2, 1, 2), (1, 2, 3), (2, 0, 4)]


def test_help_shows_the_batch_flags_and_their_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-batch" in text and "(default 16)" in text
    assert "--max-wait-ms" in text and "(default 10)" in text


def test_not_an_image_and_too_many_pixels_in_batched_mode(setup: dict[str, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(setup["index"])
    good = Path(setup["queries"][0]).read_bytes()
    with TestClient(app) as client:
        for junk in (b"hello", good[: len(good) // 2]):
            response = client.post("/search", files={"image": ("a.png", junk, "image/png")})
            assert response.status_code == 415, response.text
        monkeypatch.setattr(uploads_module, "MAX_PIXELS", 100)
        response = client.post("/search", files={"image": ("a.png", good, "image/png")})
        assert response.status_code == 413 and "100 pixels" in response.json()["detail"]
        monkeypatch.undo()
        assert client.post("/search", files={"image": ("a.png", good, "image/png")}).status_code == 200
        # A failed upload leaves no announced request behind for the batcher to wait for.
        assert app.state.dahash.batcher._coming == 0


# ------------------------------------------------------------------------- another engine


needs_onnxruntime = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                       reason="onnxruntime is not installed (pip install 'dahash[onnx]')")


@needs_onnxruntime
def test_serve_on_onnxruntime_answers_as_search_on_onnxruntime(setup: dict[str, Any]) -> None:
    """Concurrent uploads (batched by the server) and ``dahash search --engine onnxruntime`` give the
    same answers; the server's backbone runs on ONNX Runtime and the run's export is reused."""
    k = 5
    want = []
    queries = setup["queries"][:6]  # the mirrored images: in no cache, so each goes through the engine
    for query in queries:  # each alone: the answer the server gives every upload, batched or not
        paths, predicted, result = search_images(setup["index"], [query], k, engine="onnxruntime")
        assert paths == [query]
        want.append({"predicted": predicted[0], "ids": result.ids[0].tolist(), "distances": result.distances[0].tolist()})
    app = create_app(setup["index"], engine="onnxruntime")
    assert app.state.dahash.encoder.run.backbone.engine == "onnxruntime"
    exports = sorted((Path(setup["run"]).parent / "cache" / "onnx").glob("*.onnx"))
    assert len(exports) == 1  # made by search_images, reused by the server

    def post(path: str) -> dict[str, Any]:
        response = client.post("/search", files={"image": (Path(path).name, Path(path).read_bytes(), "image/png")},
                               data={"k": str(k)})
        assert response.status_code == 200, response.text
        body = response.json()
        return {"predicted": body["predicted"], "ids": [h["id"] for h in body["hits"]],
                "distances": [h["distance"] for h in body["hits"]]}

    with TestClient(app) as client, ThreadPoolExecutor(len(queries)) as pool:
        got = list(pool.map(post, queries))
    assert got == want


@needs_onnxruntime
def test_search_cli_engine_flag(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """``dahash search --engine onnxruntime --json`` prints the hits the Python API gives."""
    query = setup["queries"][0]
    assert main(["search", "--index", str(setup["index"]), "--image", query, "--top-k", "5",
                 "--engine", "onnxruntime", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    _, predicted, result = search_images(setup["index"], [query], 5, engine="onnxruntime")
    assert printed[0]["predicted"] == predicted[0]
    assert [h["id"] for h in printed[0]["hits"]] == result.ids[0].tolist()
    assert [h["distance"] for h in printed[0]["hits"]] == result.distances[0].tolist()
