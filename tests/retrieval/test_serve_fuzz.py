"""Property-based fuzzing of ``POST /search``: any JSON body, any code and k, any multipart upload
(damaged images, odd filenames, extra and repeated fields, malformed framing) and any
Content-Type and Content-Length header either answer 200 with a well-formed result or a 4xx
whose body is ``{"detail": <one line>}``; never a 500, never an unhandled exception."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from fuzzing import damaged, fuzz_settings  # noqa: E402 (tests/ is on sys.path)
from tiny_runs import backbone_built_once, tiny_dslr_index  # noqa: E402, F401 (the fixture must be in this module)
from dahash.retrieval.serve import create_app  # noqa: E402
from dahash.retrieval.uploads import MAX_K  # noqa: E402

FUZZ = fuzz_settings(40)
N_BITS = 16

pytestmark = pytest.mark.usefixtures("backbone_built_once")

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=8)
HEX = st.text(alphabet="0123456789abcdefABCDEF", max_size=8)
CODES = (HEX | HEX.map(lambda h: "0x" + h) | HEX.map(lambda h: f" {h}\n")
         | st.lists(st.integers(-1, 2), max_size=20) | st.lists(st.sampled_from([0, 1, True, 0.0, "1"]), min_size=16,
                                                                max_size=16)
         | JSON)
KS = st.integers(-3, MAX_K + 3) | st.sampled_from([1.0, "5", True, None, [], 2**64]) | JSON
# Printable ASCII: what an HTTP client can put in a header at all.
HEADER = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
MEDIA = st.sampled_from(["application/json", "multipart/form-data", "application/ld+json", "text/plain",
                         "image/jpeg", "multipart/form-data; boundary=x", "APPLICATION/JSON; charset=utf-8"]) | HEADER


@pytest.fixture(scope="module")
def served(tiny_office31: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    setup = tiny_dslr_index(tiny_office31, tmp_path_factory.mktemp("serve-fuzz"), bits=N_BITS)
    jpeg = io.BytesIO()
    Image.open(setup["dslr"][0]).save(jpeg, format="JPEG")
    with TestClient(create_app(setup["index"]), raise_server_exceptions=True) as client:
        yield client, jpeg.getvalue()


def check_answer(response: Any, k: int | None = None) -> None:
    """A well-formed result, or a client error with a one-line detail."""
    assert response.status_code in (200, 400, 413, 415, 422), (response.status_code, response.text)
    body = response.json()
    if response.status_code != 200:
        assert set(body) == {"detail"} and isinstance(body["detail"], str), body
        assert body["detail"] and "\n" not in body["detail"], body
        return
    assert set(body) == {"predicted", "code", "n_bits", "hits"} and body["n_bits"] == N_BITS
    assert len(bytes.fromhex(body["code"])) == (N_BITS + 7) // 8
    assert 1 <= len(body["hits"]) <= (k or MAX_K)
    distances = [hit["distance"] for hit in body["hits"]]
    assert distances == sorted(distances) and all(0 <= d <= N_BITS for d in distances)


def _valid_code(code: Any) -> bool:
    """Whether ``code`` is a query code of N_BITS the API documents (hex, optional 0x, or 0/1 bits)."""
    if isinstance(code, list):
        return len(code) == N_BITS and all(type(b) is int and b in (0, 1) for b in code)
    if not isinstance(code, str):
        return False
    text = code.strip()
    text = text[2:] if text[:2].lower() == "0x" else text
    return len(text) == N_BITS // 4 and all(c in "0123456789abcdefABCDEF" for c in text)


@FUZZ
@given(body=JSON)
def test_any_json_body(served: Any, body: Any) -> None:
    client, _ = served
    check_answer(client.post("/search", content=json.dumps(body), headers={"content-type": "application/json"}))


@FUZZ
@given(code=CODES, k=KS, drop_k=st.booleans(), extra=st.dictionaries(st.text(max_size=5), JSON, max_size=2))
def test_any_code_and_k(served: Any, code: Any, k: Any, drop_k: bool, extra: dict) -> None:
    client, _ = served
    body = {"code": code, **({} if drop_k else {"k": k}), **extra}
    response = client.post("/search", content=json.dumps(body), headers={"content-type": "application/json"})
    check_answer(response, k if type(k) is int and not drop_k else None)
    if (response.status_code != 200 and _valid_code(code) and not extra.keys() - {"code", "k"}
            and (drop_k or (type(k) is int and 1 <= k <= MAX_K))):
        pytest.fail(f"a valid query was refused: {body} -> {response.text}")


@FUZZ
@given(raw=st.binary(max_size=200), media=MEDIA)
def test_any_bytes_under_any_content_type(served: Any, raw: bytes, media: str) -> None:
    client, _ = served
    check_answer(client.post("/search", content=raw, headers={"content-type": media}))


@FUZZ
@given(length=HEADER, media=st.sampled_from(["application/json", "multipart/form-data; boundary=b"]))
def test_any_content_length(served: Any, length: str, media: str) -> None:
    client, _ = served
    check_answer(client.post("/search", content=b'{"code": "0000"}', headers={"content-type": media,
                                                                            "content-length": length}))


@FUZZ
@given(data=st.data(), name=st.text(max_size=30), field=st.sampled_from(["image", "image", "file", "Image"]),
       k=st.none() | st.text(max_size=6) | st.integers(-2, MAX_K + 2).map(str),
       extra=st.dictionaries(st.sampled_from(["k", "x", "image", "code"]), st.text(max_size=8), max_size=2))
def test_any_upload(served: Any, data: st.DataObject, name: str, field: str, k: str | None,
                    extra: dict[str, str]) -> None:
    client, jpeg = served
    image = damaged(jpeg, data.draw, keep=True)
    form = {**extra, **({} if k is None else {"k": k})}
    response = client.post("/search", files={field: (name, image, "image/jpeg")}, data=form)
    check_answer(response)


@FUZZ
@given(data=st.data())
def test_damaged_multipart_framing(served: Any, data: st.DataObject) -> None:
    client, jpeg = served
    body = (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n" + jpeg[:300] + b"\r\n--b\r\n"
            b"Content-Disposition: form-data; name=\"k\"\r\n\r\n3\r\n--b--\r\n")
    raw = damaged(body, data.draw, keep=True)
    check_answer(client.post("/search", content=raw, headers={"content-type": "multipart/form-data; boundary=b"}))


def test_the_fuzzers_reach_both_outcomes(served: Any) -> None:
    # The checks above would pass vacuously if every request were refused; a valid one is not.
    client, jpeg = served
    ok = client.post("/search", json={"code": "0" * (N_BITS // 4), "k": 3})
    assert ok.status_code == 200 and len(ok.json()["hits"]) == 3
    assert client.post("/search", files={"image": ("q.jpg", jpeg, "image/jpeg")}, data={"k": "2"}).status_code == 200
    np.testing.assert_equal(client.post("/search", json={"code": "zz"}).status_code, 400)
