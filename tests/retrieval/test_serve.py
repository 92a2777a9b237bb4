"""``dahash serve`` (:mod:`dahash.retrieval.serve`): the HTTP API and web page over an index, with FastAPI's
TestClient and, once, a real uvicorn server on a free loopback port under ~50 concurrent searches.

One tiny DAH run is trained on the Office-31-like ``tiny_office31`` images (amazon -> webcam, as in
tests/test_search.py) and the 18 dslr images are indexed (FAISS flat). 16-bit codes of near-identical
tiny images tie a lot, so "an upload finds itself" means: rank 1 at distance 0, the image among the
distance-0 hits, and the very same ids and distances as :func:`dahash.retrieval.search.search_images`.
"""

from __future__ import annotations

import io
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
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from tiny_runs import backbone_built_once, running_server, tiny_dslr_index  # noqa: F401 (the fixture must be in this module)
from cli_errors import one_line_error  # noqa: E402
from dahash.retrieval import serve as serve_module  # noqa: E402
from dahash.retrieval import uploads as uploads_module  # noqa: E402
from dahash.cli import main  # noqa: E402
from dahash.errors import DahashError  # noqa: E402
from dahash.index import open_index  # noqa: E402
from dahash.retrieval.search import build_index, model_id, path_ids, search_images  # noqa: E402
from dahash.retrieval.serve import THUMBNAIL_SIZE, create_app  # noqa: E402
from dahash.retrieval.uploads import MAX_K  # noqa: E402

N_BITS = 16


pytestmark = pytest.mark.usefixtures("backbone_built_once")


@pytest.fixture(scope="module")
def setup(tiny_office31: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A trained run, a flat index of the 18 dslr images and their paths (tests must not change them)."""
    return tiny_dslr_index(tiny_office31, tmp_path_factory.mktemp("serve"), bits=N_BITS)


@pytest.fixture(scope="module")
def client(setup: dict[str, Any]) -> Any:
    with TestClient(create_app(setup["index"])) as c:
        yield c


def _upload(client: Any, data: bytes, name: str = "query.jpg", **form: Any) -> httpx.Response:
    return client.post("/search", files={"image": (name, data, "image/jpeg")},
                       data={k: str(v) for k, v in form.items()})


def _indexed_codes(index: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids, packed codes) of a saved FAISS index (its documented codes.npy / ids.npy files)."""
    return np.load(index / "ids.npy"), np.load(index / "codes.npy")


def _detail(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"detail"}, body
    return str(body["detail"])


# ----------------------------------------------------------------------------- health and stats


def test_health_and_stats(client: Any, setup: dict[str, Any]) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    stats = client.get("/stats").json()
    assert stats["count"] == 18 and stats["n_bits"] == N_BITS and stats["bytes_per_code"] == 2
    assert stats["backend"] == "faiss" and stats["kind"] == "flat"
    assert stats["model"] == model_id(setup["run"])
    assert stats["run"] == str(setup["run"].resolve()) and stats["index"] == str(setup["index"].resolve())
    assert stats["max_concurrent"] == 16 and stats["max_upload_bytes"] == 10 * 2 ** 20
    assert stats["batching"]["max_batch"] == 16 and stats["batching"]["max_wait_ms"] == 10
    assert sorted(stats["classes"]) == ["bike", "mug", "pen"]
    # Everything the index itself reports is there, unchanged.
    for key, value in open_index(setup["index"]).stats().items():
        assert stats[key] == value


# --------------------------------------------------------------------------------------- search


@pytest.mark.parametrize("which", [0, 7, 15])
def test_upload_of_an_indexed_image_gives_the_cli_hits(client: Any, setup: dict[str, Any], which: int) -> None:
    path = setup["dslr"][which]
    response = _upload(client, Path(path).read_bytes(), name=Path(path).name, k=6)
    assert response.status_code == 200, response.text
    data = response.json()
    _, predicted, result = search_images(setup["index"], [path], k=6)
    assert data["predicted"] == predicted[0]
    assert [h["id"] for h in data["hits"]] == result.ids[0].tolist()
    assert [h["distance"] for h in data["hits"]] == result.distances[0].tolist()
    assert [h["rank"] for h in data["hits"]] == [1, 2, 3, 4, 5, 6]
    # It finds itself: rank 1 at distance 0, and itself among the distance-0 hits when they fit.
    own = int(path_ids([path])[0])
    assert data["hits"][0]["distance"] == 0
    ids, codes = _indexed_codes(setup["index"])
    own_code = codes[ids == own][0]
    assert data["code"] == own_code.tobytes().hex() and data["n_bits"] == N_BITS
    ties = int((codes == own_code).all(1).sum())
    if ties <= 6:
        assert own in [h["id"] for h in data["hits"] if h["distance"] == 0]
    for hit, meta in zip(data["hits"], result.metadata[0]):
        assert (hit["path"], hit["label"], hit["predicted"]) == (meta["path"], meta["label"], meta["predicted"])
        assert hit["thumbnail"] == f"/thumbnail/{hit['id']}"
    # The default k is 10.
    assert len(_upload(client, Path(path).read_bytes()).json()["hits"]) == 10


def test_search_by_hex_code_and_by_bits(client: Any, setup: dict[str, Any]) -> None:
    ids, codes = _indexed_codes(setup["index"])
    index = open_index(setup["index"])
    for row in (0, 9, 17):
        code = codes[row:row + 1]
        want = index.search(code, 18)
        bits = np.unpackbits(code[0])[:N_BITS].tolist()
        answers = [client.post("/search", json={"code": code[0].tobytes().hex(), "k": 18}),
                   client.post("/search", json={"code": code[0].tobytes().hex().upper(), "k": 18}),
                   client.post("/search", json={"code": bits, "k": 18})]
        for response in answers:
            assert response.status_code == 200, response.text
            data = response.json()
            assert [h["id"] for h in data["hits"]] == want.ids[0].tolist()
            assert [h["distance"] for h in data["hits"]] == want.distances[0].tolist()
            assert data["code"] == code[0].tobytes().hex()
        # The class predicted for a code is the one predicted for the image that has it.
        path = next(m["path"] for i, m in zip(want.ids[0], want.metadata[0]) if i == ids[row])
        _, predicted, _ = search_images(setup["index"], [path], k=1)
        assert {r.json()["predicted"] for r in answers} == {predicted[0]}
    # k beyond the index: no padding rows; k left out: 10.
    hexcode = codes[0].tobytes().hex()
    assert len(client.post("/search", json={"code": hexcode, "k": 25}).json()["hits"]) == 18
    assert len(client.post("/search", json={"code": hexcode}).json()["hits"]) == 10


# ----------------------------------------------------------------------------------- thumbnails


def test_thumbnail_of_an_indexed_image(client: Any, setup: dict[str, Any]) -> None:
    ids, _ = _indexed_codes(setup["index"])
    for item in ids[:3].tolist():  # ids no search has returned yet, and one that it has
        response = client.get(f"/thumbnail/{item}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        img = Image.open(io.BytesIO(response.content))
        assert img.format == "JPEG" and max(img.size) <= THUMBNAIL_SIZE
    hit = client.post("/search", json={"code": "0000", "k": 1}).json()["hits"][0]
    assert client.get(hit["thumbnail"]).status_code == 200


def test_a_big_image_is_scaled_to_the_thumbnail_cap(setup: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "images" / "mug"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (300, 640, 3), dtype=np.uint8)).save(folder / "wide.png")
    index = tmp_path / "index"
    assert build_index(setup["run"], [str(folder)], index, progress=False) == 1
    item = int(path_ids([str(folder / "wide.png")])[0])
    with TestClient(create_app(index)) as c:
        response = c.get(f"/thumbnail/{item}")
        assert response.status_code == 200
        img = Image.open(io.BytesIO(response.content))
        assert img.format == "JPEG" and img.size == (THUMBNAIL_SIZE, 75)
        assert len(response.content) < 20_000
        # The indexed file disappears: the cached thumbnail is still served; uncached, a clear 404.
        (folder / "wide.png").unlink()
        assert c.get(f"/thumbnail/{item}").content == response.content
    with TestClient(create_app(index)) as c:
        response = c.get(f"/thumbnail/{item}")
        assert response.status_code == 404 and "cannot be read" in _detail(response)


def test_thumbnail_of_an_unknown_id_is_404(client: Any) -> None:
    for item in ("12345", "-1", "0", str(2 ** 70), str(-(2 ** 70))):
        response = client.get(f"/thumbnail/{item}")
        assert response.status_code == 404, (item, response.text)
        assert "not in the index" in _detail(response) or "no item" in _detail(response)


def test_a_path_in_a_thumbnail_request_never_reads_a_file(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(serve_module, "make_thumbnail", lambda path: opened.append(path) or b"")
    for url in ("/thumbnail/../../etc/passwd", "/thumbnail/..%2F..%2Fetc%2Fpasswd", "/thumbnail/%2Fetc%2Fpasswd",
                "/thumbnail/abc", "/thumbnail/1.5", "/thumbnail/", "/thumbnail/1/../../etc/passwd",
                "/thumbnail/0x10", "/thumbnail/%00"):
        response = client.get(url)
        assert response.status_code in (404, 422), (url, response.status_code)
    assert opened == []


# ---------------------------------------------------------------------------------- bad input


def test_not_an_image_is_refused_and_the_server_keeps_serving(client: Any, setup: dict[str, Any]) -> None:
    good = Path(setup["dslr"][3]).read_bytes()
    for junk in (b"hello, not an image", good[: len(good) // 2], b"\x89PNG\r\n\x1a\n" + b"\0" * 40):
        response = _upload(client, junk)
        assert response.status_code == 415, response.text
        assert "image" in _detail(response)
        assert _upload(client, good, k=3).status_code == 200
    response = _upload(client, b"")
    assert response.status_code == 400 and "empty" in _detail(response)
    # No image field, a text body, a JSON body that is not a code query.
    response = client.post("/search", files={"photo": ("a.jpg", good, "image/jpeg")})
    assert response.status_code == 400 and "'image'" in _detail(response)
    response = client.post("/search", content=b"abc", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "multipart" in _detail(response)
    for body in (b"{not json", b"[1, 2]", b'{"k": 3}', b'{"code": "0000", "extra": 1}'):
        response = client.post("/search", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, body
    assert _upload(client, good).status_code == 200


def test_uploads_read_the_feature_cache_but_do_not_grow_it(client: Any, setup: dict[str, Any]) -> None:
    cache = setup["run"].parent / "cache"
    entries = sorted(cache.rglob("*.npy"))
    assert entries
    # An image nobody indexed (the same picture mirrored, so other bytes) is encoded and not cached.
    image = Image.open(setup["dslr"][2]).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    for _ in range(2):
        response = _upload(client, buffer.getvalue(), name="new.png", k=3)
        assert response.status_code == 200, response.text
    assert sorted(cache.rglob("*.npy")) == entries


def test_too_many_pixels_is_413_before_decoding(client: Any, setup: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    good = Path(setup["dslr"][5]).read_bytes()  # 40 x 40 pixels
    monkeypatch.setattr(uploads_module, "MAX_PIXELS", 1000)
    response = _upload(client, good)
    assert response.status_code == 413 and "1000 pixels" in _detail(response)
    monkeypatch.setattr(uploads_module, "MAX_PIXELS", 10 ** 9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # Pillow's own decompression-bomb guard
    response = _upload(client, good)
    assert response.status_code == 413 and "too large" in _detail(response)
    monkeypatch.undo()
    assert _upload(client, good).status_code == 200


def test_wrong_code_length_names_both_lengths(client: Any) -> None:
    response = client.post("/search", json={"code": "abcdef"})
    assert response.status_code == 400
    assert "24 bits" in _detail(response) and "16 bits" in _detail(response)
    response = client.post("/search", json={"code": [1, 0] * 7 + [1]})
    assert response.status_code == 400
    assert "15 bits" in _detail(response) and "16 bits" in _detail(response)
    for code in ("zzzz", [1, 2] * 8, [True, False] * 8, 1234, None):
        response = client.post("/search", json={"code": code})
        assert response.status_code == 400, code
        assert "code" in _detail(response)


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1, "ten", 2.5, True])
def test_k_out_of_range_is_400(client: Any, setup: dict[str, Any], k: Any) -> None:
    response = client.post("/search", json={"code": "0000", "k": k})
    assert response.status_code == 400 and "k must be" in _detail(response)
    if not isinstance(k, bool):
        response = _upload(client, Path(setup["dslr"][0]).read_bytes(), k=k)
        assert response.status_code == 400 and "k must be" in _detail(response)


def test_an_oversized_upload_is_413(setup: dict[str, Any]) -> None:
    good = Path(setup["dslr"][0]).read_bytes()
    cap = len(good) + 100
    with TestClient(create_app(setup["index"], max_upload_bytes=cap)) as small:
        assert _upload(small, good).status_code == 200
        # Over the cap but within the multipart allowance: caught while the file's bytes are counted.
        response = _upload(small, good + b"\0" * 200)
        assert response.status_code == 413 and "cap" in _detail(response)
        # Far over: refused from Content-Length alone.
        response = _upload(small, b"\0" * (cap + 200_000))
        assert response.status_code == 413
        # Chunked, without Content-Length: the bytes received are counted.
        boundary = "xyzzy"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode()

        def chunks() -> Any:
            yield head
            for _ in range(40):
                yield b"\0" * 8192
            yield f"\r\n--{boundary}--\r\n".encode()

        response = small.post("/search", content=chunks(),
                              headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert "content-length" not in {k.lower() for k in response.request.headers}
        assert response.status_code == 413
        # And it keeps serving.
        assert _upload(small, good).status_code == 200
        response = small.post("/search", content=b"{}", headers={"content-type": "application/json",
                                                                 "content-length": "x"})
        assert response.status_code in (400, 413)


def test_a_full_server_answers_503_after_the_queue_timeout(setup: dict[str, Any]) -> None:
    app = create_app(setup["index"], max_concurrent=1, queue_timeout=0.2)
    state = app.state.dahash
    slow_search = state.search

    def slow(*args: Any) -> Any:
        time.sleep(1.0)
        return slow_search(*args)

    state.search = slow  # holds its slot for 1 s
    with TestClient(app) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(c.post, "/search", json={"code": "0000", "k": 2})
        deadline = time.monotonic() + 10
        while state.limiter.busy == 0:  # the first request holds the only slot
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second = c.post("/search", json={"code": "0000", "k": 2})
        assert second.status_code == 503 and second.headers["retry-after"] == "1"
        assert "busy" in _detail(second)
        assert first.result().status_code == 200
        state.search = slow_search
        assert c.post("/search", json={"code": "0000", "k": 2}).status_code == 200


# ----------------------------------------------------------------------------- page and schema


def test_the_page_has_the_drop_zone_and_its_script(client: Any) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    for needle in ('id="drop"', 'id="file"', 'id="results"', 'id="error"', 'id="predicted"', 'id="k"',
                   "<script>", "<style>", 'fetch("search"', '"hit"', "dataTransfer", "hit.thumbnail"):
        assert needle in page, needle
    # Offline: nothing is loaded from elsewhere.
    assert "<script src" not in page and "<link" not in page and "//" + "cdn" not in page.lower()
    assert "http://" not in page and "https://" not in page


def test_openapi_lists_the_endpoints(client: Any) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert "post" in paths["/search"]
    assert set(paths["/search"]["post"]["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"/health", "/stats", "/thumbnail/{item_id}"} <= set(paths)
    assert "/" not in paths


# --------------------------------------------------------------------------------------- errors


def test_a_missing_index_is_a_clear_error(tmp_path: Path, setup: dict[str, Any],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DahashError, match="nowhere"):
        create_app(missing)
    line = one_line_error(capsys, main(["serve", "--index", str(missing)]))
    assert str(missing) in line
    with pytest.raises(DahashError, match="max_concurrent"):
        create_app(setup["index"], max_concurrent=0)
    line = one_line_error(capsys, main(["serve", "--index", str(setup["index"]), "--max-upload-mb", "0"]))
    assert "--max-upload-mb" in line
    line = one_line_error(capsys, main(["serve", "--index", str(setup["index"]), "--threads", "0"]))
    assert "threads" in line and "0" in line


@pytest.mark.parametrize("modules", [("fastapi",), ("uvicorn",), ("python_multipart", "multipart")])
def test_missing_server_packages_are_one_line(setup: dict[str, Any], modules: tuple[str, ...],
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # find_spec and import then fail as if not installed
    line = one_line_error(capsys, main(["serve", "--index", str(setup["index"])]))
    assert "pip install 'dahash[serve]'" in line
    with pytest.raises(DahashError, match="not installed"):
        create_app(setup["index"])


# ------------------------------------------------------------------------------- a real server



def test_a_real_server_under_concurrent_searches(setup: dict[str, Any]) -> None:
    with running_server(create_app(setup["index"])) as base:
        images = [Path(p).read_bytes() for p in setup["dslr"]]
        with httpx.Client(base_url=base, timeout=60) as http:
            assert http.get("/health").json() == {"status": "ok"}

            def one(i: int) -> tuple[float, int, Any]:
                start = time.perf_counter()
                if i % 5 == 4:
                    r = http.post("/search", json={"code": "0000", "k": 5})
                else:
                    r = http.post("/search", files={"image": (f"{i}.jpg", images[i % 18], "image/jpeg")},
                                  data={"k": "5"})
                return time.perf_counter() - start, r.status_code, r.json()

            n = 50
            with ThreadPoolExecutor(n) as pool:
                results = list(pool.map(one, range(n)))
        latencies = np.array([r[0] for r in results]) * 1000
        p50, p99 = np.percentile(latencies, 50), np.percentile(latencies, 99)
        print(f"\n{n} concurrent /search requests (max_concurrent=4): p50 {p50:.0f} ms, p99 {p99:.0f} ms")
        assert [r[1] for r in results] == [200] * n, (results, f"p50 {p50:.0f} ms, p99 {p99:.0f} ms")
        for i, (_, _, body) in enumerate(results):
            assert len(body["hits"]) == 5
            if i % 5 != 4:
                assert body["hits"][0]["distance"] == 0, f"p50 {p50:.0f} ms, p99 {p99:.0f} ms"


# --------------------------------------------------------------------------------------- the API key

KEY = "k3y-" + "x" * 28


def test_every_route_but_health_needs_the_key(setup: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    image = Path(setup["dslr"][0]).read_bytes()
    with TestClient(create_app(setup["index"], api_key=KEY)) as c:
        assert c.get("/health").status_code == 200  # a load balancer's check stays open
        for response in (c.get("/stats"), _upload(c, image), c.get("/thumbnail/1"),
                         c.get("/stats", headers={"Authorization": "Bearer " + KEY[:-1] + "y"}),
                         c.get("/stats", headers={"X-API-Key": "wrong"})):
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            assert KEY not in response.text
        assert c.get("/stats", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        answer = c.post("/search", files={"image": ("q.jpg", image, "image/jpeg")}, headers={"X-API-Key": KEY})
        assert answer.status_code == 200 and answer.json()["hits"]
        # The page: without the key, a form; the right key posted to /login becomes an HttpOnly cookie.
        page = c.get("/")
        assert page.status_code == 401 and 'name="key"' in page.text and "fetch(" not in page.text
        assert c.post("/login", data={"key": "nope"}, follow_redirects=False).status_code == 401
        login = c.post("/login", data={"key": KEY}, follow_redirects=False)
        assert login.status_code == 303 and "httponly" in login.headers["set-cookie"].lower()
        assert c.get("/").status_code == 200 and c.get("/stats").status_code == 200  # the cookie carries it
    assert KEY not in caplog.text


def test_the_key_comes_from_a_file_or_the_environment_and_guards_public_hosts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dahash.errors import ConfigError, DataError
    from dahash.retrieval.access import check_exposure, read_key

    monkeypatch.delenv("DAHASH_API_KEY", raising=False)
    assert read_key() is None
    (tmp_path / "key").write_text(KEY + "\n")
    assert read_key(tmp_path / "key") == KEY
    monkeypatch.setenv("DAHASH_API_KEY", KEY)
    assert read_key() == KEY
    monkeypatch.setenv("DAHASH_API_KEY", "short")
    with pytest.raises(ConfigError, match="at least 16 characters") as info:
        read_key()
    assert "short" not in str(info.value)
    with pytest.raises(DataError, match="API key file not found"):
        read_key(tmp_path / "missing")
    check_exposure("127.0.0.1", None, False)
    check_exposure("0.0.0.0", KEY, False)
    check_exposure("0.0.0.0", None, True)
    with pytest.raises(ConfigError, match="--allow-no-key"):
        check_exposure("0.0.0.0", None, False)


def test_serving_beyond_loopback_without_a_key_is_refused(setup: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAHASH_API_KEY", raising=False)
    line = one_line_error(capsys, main(["serve", "--index", str(setup["index"]), "--host", "0.0.0.0"]), 2)
    assert "give an API key" in line and "--allow-no-key" in line
