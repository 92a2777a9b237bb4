"""``dahash serve``: an HTTP API and a small web page over a Hamming index (FastAPI + uvicorn).

Endpoints (the OpenAPI schema is at ``/openapi.json``, the interactive docs at ``/docs``):

* ``GET /health`` -> ``{"status": "ok"}``;
* ``GET /stats`` -> the index's ``stats()`` plus ``run`` (the run directory that encodes queries),
  ``n_bits`` and ``index`` (its path);
* ``POST /search`` with either a multipart upload (field ``image``, optional form field ``k``) or a
  JSON body ``{"code": "<hex of the packed code>" | [0, 1, ...], "k": 10}`` ->
  ``{"predicted", "code", "n_bits", "hits": [{"rank", "id", "distance", "path", "label",
  "predicted", "thumbnail"}]}``;
* ``GET /thumbnail/{id}`` -> a JPEG of at most :data:`THUMBNAIL_SIZE` px a side of an indexed image;
* ``GET /`` -> a self-contained page (no CDN) to drop an image on and see its nearest images.

An uploaded image is written to a private temporary file and encoded as ``dahash search`` encodes
it, so the API's codes and hits are the CLI's (features come from the same feature cache, keyed by
file content; uploads read it but are not added to it).

Dynamic batching: concurrent uploads are decoded side by side in worker threads, then go through
the backbone and the head together, in ``lanes`` worker threads that each run one batch at a time
(:class:`dahash.retrieval.batching.Batcher`): a batch holds at most ``max_batch`` uploads (16 by default) and waits at most
``max_wait_ms`` (10) after its first upload for more, and only while other uploads are still
being decoded, so a lone upload never waits. Each upload gets its own row; its code is the one
encoding it alone would give: a batch of one is that very computation (the same pixels through the
same kernels), a larger batch rounds the network's output differently by a few 1e-6, and an
upload of a larger batch whose output has a component within :data:`SIGN_MARGIN` of 0 (where that
could flip a bit) is run again as a batch of one, in its lane, from its decoded pixels. With
``max_batch=1`` every upload is encoded on its own in its request's thread, as before batching.

Safety and limits:

* the body of ``POST /search`` is capped: a ``Content-Length`` above the cap is refused before
  anything is read, and the bytes actually received are counted while reading (chunked uploads
  included), so a lying or absent header cannot get past it (413);
* images are opened with Pillow only after the upload is complete; anything Pillow cannot decode
  is a 415, and images of more than :data:`dahash.retrieval.uploads.MAX_PIXELS` pixels a 413,
  before any decoding;
* ``/thumbnail/{id}`` takes an integer id only; the file it reads is the path the index stores
  for that id, never anything taken from the request, and an id that is not in the index is a 404;
* at most ``max_concurrent`` requests (16 by default) encode and search at a time (a batch holds
  at most that many uploads); a request that finds every slot taken waits for one up to
  ``queue_timeout`` seconds (30 by default), then gets a 503 with ``Retry-After``. Waiting
  requests hold no thread.

Nothing is global: the index, the encoder, the thumbnail cache, the limiter and the batcher belong
to the app that :func:`create_app` returns (``app.state.dahash``); the batcher's lanes start with
the first upload and stop when the server shuts down.

Uploads are saved and checked, and ``code`` and ``k`` parsed, in :mod:`dahash.retrieval.uploads`;
the settings are checked and defaulted in :mod:`dahash.retrieval.settings`; the web page is
:mod:`dahash.retrieval.page`.
"""


import asyncio
import contextlib
import io
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from dahash.codes import pack_codes, unpack_codes
from dahash.errors import ConfigError, DahashError, DataError
from dahash.images.loading import ImageLoadError, open_image
from dahash.index import open_index
from dahash.retrieval.access import COOKIE, LOGIN_PAGE, LOOPBACK, OPEN_PATHS, check_exposure, key_matches, offered_key
from dahash.retrieval.batching import Batcher
from dahash.retrieval.page import PAGE
from dahash.retrieval.search import run_of
from dahash.retrieval.settings import check_settings, default_lanes, default_threads, require_server_packages
from dahash.retrieval.uploads import (MAX_K, MULTIPART_OVERHEAD, NotAnImage, TooLarge, TooManyPixels, capped,
                                      check_upload_header, check_upload_image, parse_code, parse_k, save_upload,
                                      upload_suffix)
from dahash.runs.loading import PreparedImage, prepare_image, prepared_outputs

log = logging.getLogger(__name__)

__all__ = ["create_app", "serve", "THUMBNAIL_SIZE", "SIGN_MARGIN"]

THUMBNAIL_SIZE = 160
# Thumbnails kept in memory (about 5 KB each).
THUMBNAIL_CACHE = 2048
# An upload of a batch of several whose output u has a component closer to 0 than this is run again alone:
# a batch rounds u differently from a batch of one by a few 1e-6 (3.4e-6 at most, EfficientNet-Lite0
# and a 64-bit head, batches of 2 to 16), so beyond this margin the signs, hence the code, are the same.
SIGN_MARGIN = 1e-3

class _Limiter:
    """At most ``n`` requests doing encode/search work at once; a request waits up to ``timeout``
    seconds for a slot, then gets a 503.

    The asyncio semaphore is made on first use in the running event loop (and again if the loop
    changes, as with a TestClient used without ``with``): asyncio primitives belong to one loop.
    """

    def __init__(self, n: int, timeout: float) -> None:
        self.n, self.timeout = n, timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None
        self.busy = 0  # slots in use, for /stats

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._sem is None or self._loop is not loop:
            self._loop, self._sem = loop, asyncio.Semaphore(self.n)
        return self._sem

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        from fastapi import HTTPException

        sem = self._semaphore()
        try:
            await asyncio.wait_for(sem.acquire(), self.timeout)
        except asyncio.TimeoutError:
            raise HTTPException(503, f"the server is busy ({self.n} searches running and no slot freed "
                                     f"within {self.timeout:g} s); retry shortly",
                                headers={"Retry-After": "1"}) from None
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
            sem.release()


class _State:
    """Everything one app serves: the index, its run's encoder, the limits and the thumbnail cache."""

    def __init__(self, index_path: str | os.PathLike, run_dir: str | os.PathLike | None, *,
                 max_upload_bytes: int, max_concurrent: int, queue_timeout: float,
                 cache_dir: str | None, max_batch: int, max_wait_ms: float, lanes: int,
                 engine: str | None = None) -> None:
        self.index_path = Path(index_path)
        self.index = open_index(index_path)
        self.encoder = run_of(self.index, index_path, run_dir, engine=engine, cache_dir=cache_dir)
        self.encoder.run.backbone.pin_inference()  # a server never trains its model
        self.n_bits = int(self.encoder.n_bits)
        if int(self.index.n_bits) != self.n_bits:
            raise DataError(f"{index_path} holds {self.index.n_bits}-bit codes but the run "
                            f"{self.encoder.run.run_dir} makes {self.n_bits}-bit codes")
        self.n_bytes = (self.n_bits + 7) // 8
        self.max_upload_bytes = max_upload_bytes
        self.body_cap = max_upload_bytes + MULTIPART_OVERHEAD
        self.cache_dir = cache_dir
        self.limiter = _Limiter(max_concurrent, queue_timeout)
        # max_batch 1: every upload is encoded on its own, in its request's thread (no batcher).
        self.batcher = Batcher(self.encode_batch, max_batch, max_wait_ms / 1000, lanes) if max_batch > 1 else None
        self.encoded_singly = 0  # rows of batches of several run again alone (a component of u near 0)
        self._thumbs: OrderedDict[int, bytes] = OrderedDict()
        self._paths: dict[int, str] = {}  # id -> indexed path, of every hit served so far
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------ search

    def predicted_of_codes(self, codes: np.ndarray) -> list[str | None]:
        """The class DAH predicts for packed codes (eq. 6 with binary codes, as Encoder.encode does)."""
        return self.encoder.predict(unpack_codes(codes, self.n_bits).astype(np.float32))

    def encode_file(self, path: str) -> tuple[np.ndarray, str | None]:
        """(packed code (1, n_bytes), predicted class) of one image file, exactly as ``dahash search``."""
        # Decoded in this thread: one image does not pay for starting worker processes. The cache is
        # read (an indexed image costs no forward pass) but not written: uploads would grow it forever.
        codes, paths, predicted = self.encoder.encode([path], cache_dir=self.cache_dir, progress=False,
                                                      num_workers=0, write_cache=False, report=False)
        if len(paths) != 1:
            raise NotAnImage("the uploaded file could not be decoded as an image")
        return codes, predicted[0]

    def answer_file(self, path: str, k: int, root_path: str) -> tuple[np.ndarray, str | None, list[dict[str, Any]]]:
        """(packed code, predicted class, hits) of an upload checked (:func:`check_upload_image`)
        and encoded on its own: the server's answer with ``max_batch`` 1."""
        check_upload_image(path)
        codes, predicted = self.encode_file(path)
        return codes, predicted, self.search(codes, k, root_path)

    def prepare_upload(self, path: str) -> PreparedImage:
        """An upload checked (:class:`TooManyPixels`, :class:`NotAnImage`) and made ready for a
        batch: its features when the feature cache holds them, else its decoded, preprocessed pixels."""
        check_upload_header(path)
        try:
            return prepare_image(self.encoder.run, path, cache_dir=self.cache_dir)
        except ImageLoadError as exc:
            raise NotAnImage(f"the upload is not a readable image ({exc.reason})") from None

    def encode_batch(self, items: list[PreparedImage]) -> np.ndarray:
        """Hash outputs u of prepared uploads, each row the one encoding its upload alone gives.

        The backbone and the head run once on all of them. A batch of several may round u
        differently from a batch of one (measured: a few 1e-6), which can flip only a component
        within that of 0; a row with a component within SIGN_MARGIN of 0 is therefore run again
        as a batch of one, here in the lane, from the pixels already decoded. A batch of one is
        :func:`~dahash.runs.loading.image_outputs` of the file, bit for bit (tested), so its row
        needs no check; every other row has the signs, hence the code, of one-by-one encoding,
        and the predicted class (eq. 6 with binary codes) and the hits depend on the code alone.
        """
        u = prepared_outputs(self.encoder.run, items)
        if len(items) > 1:
            near_zero = np.flatnonzero(np.abs(u).min(1) < SIGN_MARGIN)
            for i in near_zero:
                u[i] = prepared_outputs(self.encoder.run, [items[i]])[0]
            if len(near_zero):
                with self._lock:
                    self.encoded_singly += len(near_zero)
        return u

    def answer_of_output(self, u: np.ndarray, k: int, root_path: str
                         ) -> tuple[np.ndarray, str | None, list[dict[str, Any]]]:
        """(packed code (1, n_bytes), predicted class, hits) of an upload from its row ``u`` of
        :meth:`encode_batch`: the very answer of :meth:`encode_file` and :meth:`search`."""
        row = np.asarray(u, dtype=np.float32)[None, :]
        codes = pack_codes(row)
        return codes, self.encoder.predict(row)[0], self.search(codes, k, root_path)

    def close(self) -> None:
        """Stop the batcher's lanes (the server is shutting down)."""
        if self.batcher is not None:
            self.batcher.close()

    def search(self, codes: np.ndarray, k: int, root_path: str) -> list[dict[str, Any]]:
        """The hits of one query code as JSON-able dicts (padding dropped)."""
        result = self.index.search(codes, k)
        hits = []
        for rank, (i, d, meta) in enumerate(zip(result.ids[0].tolist(), result.distances[0].tolist(),
                                                result.metadata[0]), start=1):
            if i < 0:
                continue
            meta = meta or {}
            path = meta.get("path")
            if isinstance(path, str):
                with self._lock:
                    self._paths[i] = path
            hits.append({"rank": rank, "id": i, "distance": d, "path": path, "label": meta.get("label"),
                         "predicted": meta.get("predicted"), "thumbnail": f"{root_path}/thumbnail/{i}"})
        return hits

    # -------------------------------------------------------------------------- thumbnails

    def indexed_path(self, item_id: int) -> str | None:
        """The path the index stores for ``item_id``, or None if the id is not in the index."""
        if not -(2 ** 63) <= item_id < 2 ** 63 or not bool(self.index.contains([item_id])[0]):
            return None
        with self._lock:
            known = self._paths.get(item_id)
        if known is not None:
            return known
        item = self.index.get_metadata([item_id])[0]
        path = item.get("path") if isinstance(item, dict) else None
        return path if isinstance(path, str) else None

    def thumbnail(self, item_id: int, path: str) -> bytes:
        """JPEG bytes of the indexed image ``path`` of ``item_id``, at most THUMBNAIL_SIZE px a side."""
        with self._lock:
            if item_id in self._thumbs:
                self._thumbs.move_to_end(item_id)
                return self._thumbs[item_id]
        data = make_thumbnail(path)
        with self._lock:
            self._thumbs[item_id] = data
            while len(self._thumbs) > THUMBNAIL_CACHE:
                self._thumbs.popitem(last=False)
        return data


def make_thumbnail(path: str) -> bytes:
    """A JPEG of the image file at ``path`` (an indexed path), fitted in THUMBNAIL_SIZE px squares."""
    img = open_image(path, min_side=THUMBNAIL_SIZE)  # a large JPEG decodes at a fraction of its size
    img.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()


_HIT_SCHEMA = {
    "type": "object",
    "properties": {
        "rank": {"type": "integer"}, "id": {"type": "integer", "format": "int64"},
        "distance": {"type": "integer", "description": "Hamming distance"},
        "path": {"type": "string", "nullable": True}, "label": {"type": "string", "nullable": True},
        "predicted": {"type": "string", "nullable": True},
        "thumbnail": {"type": "string", "description": "URL of a small JPEG of the hit"},
    },
}
_SEARCH_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["image"],
                "properties": {"image": {"type": "string", "format": "binary"},
                               "k": {"type": "integer", "default": 10, "minimum": 1, "maximum": MAX_K}}}},
            "application/json": {"schema": {
                "type": "object", "required": ["code"],
                "properties": {"code": {"oneOf": [
                    {"type": "string", "description": "hex of the packed code bytes (bit j of the code is "
                                                      "bit 7 - j % 8 of byte j // 8)"},
                    {"type": "array", "items": {"type": "integer", "enum": [0, 1]}}]},
                    "k": {"type": "integer", "default": 10, "minimum": 1, "maximum": MAX_K}}}},
        },
    },
    "responses": {
        "200": {"description": "the query's predicted class and its nearest indexed images",
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"predicted": {"type": "string", "nullable": True},
                                   "code": {"type": "string"}, "n_bits": {"type": "integer"},
                                   "hits": {"type": "array", "items": _HIT_SCHEMA}}}}}},
        "400": {"description": "bad code, k or request"}, "413": {"description": "upload over the size cap"},
        "415": {"description": "not an image, or neither multipart nor JSON"},
        "503": {"description": "every search slot stayed busy for queue_timeout seconds"},
    },
}


def create_app(index_path: str | os.PathLike, run_dir: str | os.PathLike | None = None, *,
               max_upload_bytes: int = 10 * 2 ** 20, max_concurrent: int = 16, queue_timeout: float = 30.0,
               cache_dir: str | None = None, max_batch: int = 16, max_wait_ms: float = 10.0, lanes: int = 1,
               api_key: str | None = None, engine: str | None = None) -> Any:
    """A FastAPI app serving the index at ``index_path``, whose queries the run that built it
    (or ``run_dir``, holding the same model) encodes; see the module docstring.

    The index and the encoder are loaded here, once: a missing or corrupt index, or a run whose
    model is not the index's, is a :class:`DahashError` now rather than on the first request.
    ``cache_dir`` is the feature cache (default: the run's, as ``dahash search``). Concurrent
    uploads are encoded together, up to ``max_batch`` at a time, a batch waiting at most
    ``max_wait_ms`` for stragglers, ``lanes`` batches at a time; ``max_batch=1`` encodes each upload
    on its own. With ``api_key``, every route but ``/health`` needs it (:mod:`dahash.retrieval.access`).
    ``engine`` runs the backbone (default: the run's, as ``dahash search``).
    """
    require_server_packages()
    check_settings(max_upload_bytes=max_upload_bytes, max_concurrent=max_concurrent,
                    queue_timeout=queue_timeout, max_batch=max_batch, max_wait_ms=max_wait_ms, lanes=lanes)
    from fastapi import FastAPI

    state = _State(index_path, run_dir, max_upload_bytes=max_upload_bytes, max_concurrent=max_concurrent,
                   queue_timeout=float(queue_timeout), cache_dir=cache_dir, max_batch=max_batch,
                   max_wait_ms=float(max_wait_ms), lanes=lanes, engine=engine)
    app = FastAPI(title="dahash", version=_version(), lifespan=_lifespan,
                  description=f"Hamming search over the index {state.index_path} "
                              f"({state.n_bits}-bit codes of the run {state.encoder.run.run_dir}).")
    app.state.dahash = state
    if api_key is not None:
        _require_key(app, api_key)
    _add_routes(app, state)
    return app


def _require_key(app: Any, api_key: str) -> None:
    """Every request but the open paths must offer ``api_key``: 401 for the API, the key form for the page;
    ``POST /login`` turns a correct key into the page's cookie."""
    from fastapi import Request
    from fastapi.responses import HTMLResponse, RedirectResponse

    @app.middleware("http")
    async def check_key(request: Request, call_next: Any) -> Any:
        if request.url.path in OPEN_PATHS:
            return await call_next(request)
        if key_matches(api_key, offered_key(dict(request.headers), dict(request.cookies))):
            return await call_next(request)
        if request.method == "GET" and request.url.path == "/":
            return HTMLResponse(LOGIN_PAGE, status_code=401)
        return _error(401, "this server needs its API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                      **{"WWW-Authenticate": "Bearer"})

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Any:
        async with request.form(max_files=0, max_fields=1, max_part_size=4096) as form:
            offered = form.get("key")
        if not isinstance(offered, str) or not key_matches(api_key, offered):
            return HTMLResponse(LOGIN_PAGE.replace("<p>This server", "<p><b>Wrong key.</b> This server"),
                                status_code=401)
        page = RedirectResponse("./", status_code=303)
        page.set_cookie(COOKIE, offered, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return page


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:
    """Stop the upload batcher's lanes when the server shuts down."""
    from starlette.concurrency import run_in_threadpool

    yield
    await run_in_threadpool(app.state.dahash.close)


def _add_routes(app: Any, state: _State) -> None:
    """The endpoints of the module docstring, each handing its work to a function below."""
    from fastapi import Request
    from fastapi.responses import HTMLResponse, Response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE.replace("__MAX_UPLOAD__", str(state.max_upload_bytes)))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats")
    def stats() -> dict[str, Any]:
        return _stats(state)

    @app.post("/search", openapi_extra=_SEARCH_OPENAPI)
    async def search(request: Request) -> Any:
        return await _search(state, request)

    @app.get("/thumbnail/{item_id}", response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}, "description": "a JPEG thumbnail"},
                        404: {"description": "no such id in the index, or its file is gone"}})
    async def thumbnail(item_id: int) -> Response:
        return await _thumbnail(state, item_id)


def _error(status: int, message: str, **headers: str) -> Any:
    """A JSON error answer ``{"detail": message}``."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": message}, status_code=status, headers=headers or None)


def _too_large(state: _State) -> Any:
    return _error(413, f"the upload is larger than the {_size(state.max_upload_bytes)} cap")


def _stats(state: _State) -> dict[str, Any]:
    """GET /stats: the index's stats, what serves it and its limits, and how uploads were batched."""
    batching = {"max_batch": 1} if state.batcher is None else state.batcher.stats()
    batching["encoded_singly"] = state.encoded_singly
    return {**state.index.stats(), "n_bits": state.n_bits, "run": str(Path(state.encoder.run.run_dir).resolve()),
            "index": str(state.index_path.resolve()), "classes": list(state.encoder.classes),
            "max_upload_bytes": state.max_upload_bytes, "max_concurrent": state.limiter.n,
            "queue_timeout": state.limiter.timeout, "busy": state.limiter.busy, "max_k": MAX_K,
            "batching": batching}


async def _search(state: _State, request: Any) -> Any:
    """POST /search: refuse a declared size over the cap, then answer an upload or a code by the
    body's media type."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            return _error(400, f"invalid Content-Length {declared!r}")
        if int(declared) > state.body_cap:
            return _too_large(state)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = capped(request, state.body_cap)
    root = request.scope.get("root_path", "")
    try:
        if media == "multipart/form-data":
            return await _search_upload(state, body, root)
        if media == "application/json" or media.endswith("+json"):
            return await _search_code(state, body, root)
    except TooLarge:
        return _too_large(state)
    except DataError as exc:
        return _error(400, str(exc))
    return _error(415, "send the query as multipart/form-data (an 'image' file field and optional 'k') "
                       f"or as JSON {{\"code\": ..., \"k\": ...}}, not {media or 'an untyped body'}")


async def _search_upload(state: _State, request: Any, root: str) -> Any:
    """An image upload: saved to a private temporary file, then encoded and searched in a slot."""
    from starlette.concurrency import run_in_threadpool

    async with request.form(max_files=1, max_fields=8, max_part_size=MULTIPART_OVERHEAD) as form:
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            return _error(400, "no image: send the file in the multipart field 'image'")
        k = parse_k(form.get("k", "10"))
        suffix = upload_suffix(upload.filename)
        with tempfile.TemporaryDirectory(prefix="dahash-serve-") as tmp:
            # The name is ours: the client's filename never reaches the filesystem.
            target = os.path.join(tmp, f"query{suffix}")
            size = await run_in_threadpool(save_upload, upload.file, target, state.max_upload_bytes)
            if size == 0:
                return _error(400, "the uploaded image is empty")
            async with state.limiter.slot():
                try:
                    codes, predicted, hits = await _answer_upload(state, target, k, root)
                except NotAnImage as exc:
                    return _error(415, str(exc))
                except TooManyPixels as exc:
                    return _error(413, str(exc))
                except DahashError as exc:  # the run or the index, not the upload: e.g. its model file is gone
                    return _error(500, f"encoding or searching the upload failed: {exc}")
    return _answer(state, codes, predicted, hits)


async def _answer_upload(state: _State, path: str, k: int, root: str
                         ) -> tuple[np.ndarray, str | None, list[dict[str, Any]]]:
    """(packed code (1, n_bytes), predicted class, hits) of a saved upload: decoded in a worker
    thread (so concurrent uploads decode in parallel), encoded in the batcher's next batch, then
    searched in a worker thread; or, with ``max_batch`` 1, checked, encoded on its own and
    searched in one worker thread."""
    from starlette.concurrency import run_in_threadpool

    if state.batcher is None:
        return await run_in_threadpool(state.answer_file, path, k, root)
    with state.batcher.announce() as submit:
        item = await run_in_threadpool(state.prepare_upload, path)
        u = await asyncio.wrap_future(submit(item))
    return await run_in_threadpool(state.answer_of_output, u, k, root)


async def _search_code(state: _State, request: Any, root: str) -> Any:
    """A JSON query ``{"code": ..., "k": ...}``: the code's predicted class and hits."""
    import json

    from starlette.concurrency import run_in_threadpool

    raw = await request.body()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(400, f"the body is not valid JSON ({exc})")
    if not isinstance(data, dict) or "code" not in data:
        return _error(400, 'the JSON body must be an object {"code": <hex or list of 0/1 bits>, "k": 10}')
    unknown = sorted(set(data) - {"code", "k"})
    if unknown:
        return _error(400, f"unknown fields {unknown}; expected code and k")
    codes = parse_code(data["code"], state.n_bits)
    k = parse_k(data.get("k", 10))
    async with state.limiter.slot():
        predicted = (await run_in_threadpool(state.predicted_of_codes, codes))[0]
        hits = await run_in_threadpool(state.search, codes, k, root)
    return _answer(state, codes, predicted, hits)


def _answer(state: _State, codes: np.ndarray, predicted: str | None, hits: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON answer of POST /search."""
    return {"predicted": predicted, "code": codes[0].tobytes().hex(), "n_bits": state.n_bits, "hits": hits}


async def _thumbnail(state: _State, item_id: int) -> Any:
    """GET /thumbnail/{id}: the JPEG of an indexed image, or a 404."""
    from fastapi.responses import Response
    from starlette.concurrency import run_in_threadpool

    path = await run_in_threadpool(state.indexed_path, item_id)
    if path is None:
        return _error(404, f"no item {item_id} in the index")
    try:
        data = await run_in_threadpool(state.thumbnail, item_id, path)
    except DataError as exc:  # the indexed file was moved, deleted or damaged since indexing
        return _error(404, f"item {item_id}: its image cannot be read any more ({_reason(exc)})")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


def _reason(exc: DataError) -> str:
    return getattr(exc, "reason", None) or "unreadable"


def _size(n: int) -> str:
    return f"{n / 2 ** 20:g} MiB" if n >= 2 ** 20 else f"{n} bytes"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("dahash")
    except Exception:  # noqa: BLE001 - a source checkout that is not installed
        return "0"


def serve(index_path: str | os.PathLike, run_dir: str | os.PathLike | None = None, *, host: str = "127.0.0.1",
          port: int = 8000, max_upload_bytes: int = 10 * 2 ** 20, max_concurrent: int = 16,
          queue_timeout: float = 30.0, cache_dir: str | None = None, log_level: str = "info",
          threads: int | None = None, max_batch: int = 16, max_wait_ms: float = 10.0,
          lanes: int | None = None, api_key: str | None = None, allow_no_key: bool = False,
          engine: str | None = None) -> None:
    """Load the index and serve it with uvicorn until interrupted (loopback only unless ``host`` says).

    ``threads`` is the cores this process uses (FAISS's thread count); by default
    :func:`default_threads`. ``max_batch`` and ``max_wait_ms`` bound the batches of concurrent
    uploads (``max_batch=1``: each upload encoded on its own); ``lanes`` batches run side by side
    (by default :func:`default_lanes`: one per thread), each on ``threads // lanes`` torch threads
    (or engine threads: ``engine`` runs the backbone, default the run's).
    ``api_key`` guards every route but ``/health``; a ``host`` beyond loopback without one is refused
    unless ``allow_no_key``.
    """
    require_server_packages()
    check_exposure(host, api_key, allow_no_key)
    import faiss
    import torch
    import uvicorn

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port must be an integer from 0 to 65535, got {port!r}")
    if threads is None:
        threads = default_threads(max_concurrent, max_batch)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer, got {threads!r}")
    if lanes is None:
        lanes = default_lanes(threads, max_batch)
    app = create_app(index_path, run_dir, max_upload_bytes=max_upload_bytes, max_concurrent=max_concurrent,
                     queue_timeout=queue_timeout, cache_dir=cache_dir, max_batch=max_batch, max_wait_ms=max_wait_ms,
                     lanes=lanes, api_key=api_key, engine=engine)
    # This function owns the process (it runs until interrupted), so setting its thread pools is not
    # a side effect on anyone else; create_app, which tests run in-process, leaves them alone. Set
    # after create_app has checked lanes, and before any lane starts (they start with the first
    # upload and take the torch thread count then).
    torch.set_num_threads(max(1, threads // lanes))
    faiss.omp_set_num_threads(threads)
    if host not in LOOPBACK and api_key is None:
        log.warning(f"warning: serving on {host} without an API key (--allow-no-key): anyone who can reach it can "
                    "search the index and list its file paths")
    uvicorn.run(app, host=host, port=port, log_level=log_level)
