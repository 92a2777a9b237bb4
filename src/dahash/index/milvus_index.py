"""Milvus backend of :class:`~dahash.index.base.HammingIndex`: packed codes in a Milvus collection.

The collection has three fields: ``id`` (INT64 primary key, ids chosen by the caller), ``code``
(BINARY_VECTOR of ``8 * ceil(n_bits / 8)`` bits: Milvus needs a dimension divisible by 8, and the
pad bits of packed codes are zero, so they never change a distance) and ``meta`` (VARCHAR, the
JSON text of each item's metadata dict).  Distances are Milvus's HAMMING metric; the index is
BIN_FLAT (exact) or BIN_IVF_FLAT (approximate: ``nlist`` clusters, ``nprobe`` of them searched).
Every read runs at consistency level Strong, so a search sees every add and remove before it.

The data lives in the server: :meth:`MilvusIndex.save` writes only a ``manifest.json`` (where the
collection is and what it holds), and :meth:`MilvusIndex.load` reconnects to it.  The collection's
description also records ``n_bits`` and ``model``, so a mismatch is caught even without a manifest.

Talks to the server through pymilvus's ``MilvusClient`` (the ``milvus`` extra, ``pymilvus>=3.0``; its ORM
``Collection`` API is deprecated and goes away in pymilvus 3.1); see DEVELOPERS.md for the test server and for
pointing the backend at a Milvus cluster.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dahash.errors import ConfigError, DahashError, DataError
from dahash.index.base import HammingIndex, SearchResult, check_packed_codes
from dahash.io import write_json

__all__ = ["MilvusIndex", "MilvusUnavailableError", "META_MAX_LENGTH", "MAX_TOP_K"]

# VARCHAR capacity of the ``meta`` field, in UTF-8 bytes (Milvus's own maximum is 65,535).
META_MAX_LENGTH = 65_535
# Milvus refuses a search limit above this (``top k should be in range [1, 16384]``).
MAX_TOP_K = 16_384
# Ids per ``id in [...]`` expression (existence checks and deletes).
_EXPR_CHUNK = 10_000
# Bound on query rows x k of one search call, so that one reply stays far below gRPC's limits.
_SEARCH_PAIRS = 100_000

_INDEX_TYPES = ("BIN_FLAT", "BIN_IVF_FLAT")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_FORMAT = "dahash-hamming-index"
_MANIFEST = "manifest.json"
_MANIFEST_VERSION = 1


class MilvusUnavailableError(DahashError, ConnectionError):
    """The Milvus server at a URI cannot be reached (or refused the credentials)."""


#: Where the server and its credentials come from when not given: never from, or into, a manifest or a log.
ENV_URI, ENV_TOKEN, ENV_DB, ENV_TLS_CA = ("DAHASH_MILVUS_URI", "DAHASH_MILVUS_TOKEN", "DAHASH_MILVUS_DB",
                                         "DAHASH_MILVUS_TLS_CA")
DEFAULT_URI = "http://127.0.0.1:19530"


def _without_credentials(uri: str) -> str:
    """``uri`` with any ``user:password@`` removed (what may be shown or saved)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))


def _pymilvus() -> Any:
    """Import pymilvus, or say which extra installs it."""
    try:
        import pymilvus
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            f"the Milvus backend needs pymilvus>=3.0: pip install 'dahash[milvus]'; import failed: {exc}"
        ) from exc
    return pymilvus


def _secrets(uri: str, token: str | None) -> tuple[str, ...]:
    """The strings a message must never show: the token, and the URI's password and ``user:password``."""
    parts = urllib.parse.urlsplit(uri)
    found = [token or "", parts.password or ""]
    if parts.username is not None and parts.password is not None:
        found.append(f"{parts.username}:{parts.password}")
    # Longest first, so that a secret containing another is replaced whole.
    return tuple(sorted({s for s in found if s}, key=len, reverse=True))


def _message(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """The server's message of a pymilvus error on one line, without its repr noise or any of ``secrets``
    (pymilvus quotes a URI it cannot parse whole, user:password included)."""
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _positive_int(value: Any, name: str, low: int = 1, high: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    return value


def _as_ids(ids: Any, name: str = "ids") -> np.ndarray:
    """Validate ids as a 1-D array of integers that fit int64."""
    arr = np.asarray(ids)
    if arr.size == 0:
        arr = arr.reshape(0).astype(np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        raise DataError(f"{name} must be a 1-D array of integers, got dtype {arr.dtype} and shape {arr.shape}")
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise DataError(f"{name} holds {int(arr.max())}, which does not fit an int64 id")
    return arr.astype(np.int64, copy=False)


def _id_list(ids: np.ndarray) -> str:
    return "[" + ", ".join(str(int(i)) for i in ids) + "]"


class MilvusIndex(HammingIndex):
    """A Hamming index kept in the Milvus collection ``collection`` of the server at ``uri``.

    The collection is created if absent (``create_if_missing``); an existing one must hold codes
    of the same width (and, where recorded, the same ``n_bits`` and ``model``), or a DataError
    names both.  Each instance has its own connection (a dedicated pymilvus ``MilvusClient``, :attr:`client`);
    :meth:`close` releases it.

    ``token`` is ``"user:password"`` for a Milvus with authentication, or an API key (Zilliz
    Cloud); it is never written to the manifest.  ``batch_size`` rows go in one insert call;
    every :meth:`add` ends with a flush.  Metadata dicts are stored as JSON text of at most
    :data:`META_MAX_LENGTH` UTF-8 bytes each; items added without metadata return ``{}``.
    """

    def __init__(
        self,
        n_bits: int,
        uri: str | None = None,
        collection: str = "dahash",
        *,
        index_type: str = "BIN_FLAT",
        nlist: int = 1024,
        nprobe: int = 16,
        token: str | None = None,
        db_name: str | None = None,
        tls_ca: str | None = None,
        model: str | None = None,
        info: dict[str, Any] | None = None,
        batch_size: int = 10_000,
        timeout: float = 10.0,
        create_if_missing: bool = True,
    ) -> None:
        self.n_bits = _positive_int(n_bits, "n_bits")
        self.n_bytes = math.ceil(self.n_bits / 8)
        self.dim = 8 * self.n_bytes
        uri = uri or os.environ.get(ENV_URI) or DEFAULT_URI
        if not isinstance(uri, str):
            raise ConfigError(f"uri must be a string such as http://host:19530, got {type(uri).__name__}")
        # What messages and the manifest show: the address without any user:password in it.
        self.uri = _without_credentials(uri)
        self._target = uri
        if not isinstance(collection, str) or not _NAME_RE.match(collection):
            raise ConfigError(
                f"collection must be a Milvus name (a letter or _, then letters, digits or _, "
                f"at most 255 characters), got {collection!r}"
            )
        self.collection_name = collection
        if index_type not in _INDEX_TYPES:
            raise ConfigError(f"index_type must be one of {', '.join(_INDEX_TYPES)}, got {index_type!r}")
        self.index_type = index_type
        self.nlist = _positive_int(nlist, "nlist", 1, 65_536)
        self.nprobe = _positive_int(nprobe, "nprobe", 1, 65_536)
        if model is not None and not isinstance(model, str):
            raise ConfigError(f"model must be a string or None, got {model!r}")
        self.model = model
        if info is not None and not isinstance(info, Mapping):
            raise ConfigError(f"info must be a mapping of facts, got {type(info).__name__}")
        # Free-form JSON-able facts kept in the manifest, e.g. the run directory that encodes queries.
        self.info = json.loads(json.dumps(dict(info or {})))
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.timeout = float(timeout)
        self._pm = _pymilvus()
        self._client: Any = None
        token = token if token is not None else os.environ.get(ENV_TOKEN)
        self._secrets = _secrets(uri, token)
        self._connect(token, db_name if db_name is not None else os.environ.get(ENV_DB),
                      tls_ca if tls_ca is not None else os.environ.get(ENV_TLS_CA))
        try:
            self._open(create_if_missing)
        except BaseException:
            self.close()
            raise

    # -- connection and collection ------------------------------------------------------------

    def _connect(self, token: str | None, db_name: str | None, tls_ca: str | None) -> None:
        pm = self._pm
        options: dict[str, Any] = {"db_name": db_name} if db_name else {}
        if tls_ca:  # a server certificate signed by a private CA
            options |= {"secure": True, "server_pem_path": tls_ca}
        try:
            # dedicated: pymilvus would otherwise share one channel among clients of the same address and
            # token, whatever their database, and never close it.
            self._client = pm.MilvusClient(uri=self._target, token=token or "", timeout=self.timeout,
                                           dedicated=True, **options)
        except pm.MilvusException as exc:
            # pymilvus says the same for a server that is down and one that refused the token.
            raise MilvusUnavailableError(
                f"cannot connect to Milvus at {self.uri} (within {self.timeout:g} s): {_message(exc, self._secrets)}; "
                "check the address, and the token if the server requires one"
            ) from None

    @contextmanager
    def _rpc(self, what: str) -> Iterator[None]:
        """Turn a pymilvus error into a one-line DataError naming the collection and the server."""
        try:
            yield
        except self._pm.MilvusException as exc:
            raise DataError(
                f"Milvus {what} on collection {self.collection_name!r} at {self.uri} failed: "
                f"{_message(exc, self._secrets)}"
            ) from None

    def _description(self) -> str:
        return json.dumps({"format": _FORMAT, "n_bits": self.n_bits, "model": self.model})

    def _index_params(self) -> Any:
        index_params = self._pm.MilvusClient.prepare_index_params()
        params = {"nlist": self.nlist} if self.index_type == "BIN_IVF_FLAT" else {}
        index_params.add_index("code", index_type=self.index_type, metric_type="HAMMING", params=params)
        return index_params

    def _search_params(self) -> dict[str, Any]:
        params = {"nprobe": self.nprobe} if self.index_type == "BIN_IVF_FLAT" else {}
        return {"metric_type": "HAMMING", "params": params}

    def _open(self, create_if_missing: bool) -> None:
        pm = self._pm
        client = self.client
        name = self.collection_name
        with self._rpc("opening"):
            if not client.has_collection(name):
                if not create_if_missing:
                    raise DataError(f"Milvus at {self.uri} has no collection {name!r}")
                schema = pm.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                                       description=self._description())
                schema.add_field("id", pm.DataType.INT64, is_primary=True)
                schema.add_field("code", pm.DataType.BINARY_VECTOR, dim=self.dim)
                schema.add_field("meta", pm.DataType.VARCHAR, max_length=META_MAX_LENGTH)
                client.create_collection(name, schema=schema, consistency_level="Strong")
            else:
                self._check_existing(client.describe_collection(name))
            if not client.list_indexes(name, field_name="code"):
                client.create_index(name, self._index_params())
            else:
                self._check_index()
            client.load_collection(name)

    def _check_existing(self, description: Mapping[str, Any]) -> None:
        """An existing collection (``describe_collection``) must have our schema, code width, n_bits and model."""
        name = self.collection_name
        fields = {f["name"]: f for f in description.get("fields", [])}
        DT = self._pm.DataType
        expected = {"id": DT.INT64, "code": DT.BINARY_VECTOR, "meta": DT.VARCHAR}
        got = {n: f.get("type") for n, f in fields.items()}
        if set(got) != set(expected) or any(got[n] != t for n, t in expected.items()) \
                or not fields["id"].get("is_primary"):
            raise DataError(
                f"collection {name!r} at {self.uri} is not a dahash Hamming index: fields "
                f"{ {n: getattr(t, 'name', t) for n, t in got.items()} }, expected "
                f"id INT64 (primary), code BINARY_VECTOR, meta VARCHAR"
            )
        dim = int(fields["code"].get("params", {}).get("dim", -1))
        if dim != self.dim:
            raise DataError(
                f"collection {name!r} at {self.uri} holds {dim}-bit codes ({dim // 8} bytes), "
                f"but n_bits={self.n_bits} needs {self.dim}-bit codes ({self.n_bytes} bytes)"
            )
        try:
            info = json.loads(description.get("description") or "")
        except ValueError:
            info = None
        if isinstance(info, dict) and info.get("format") == _FORMAT:
            stored_bits = info.get("n_bits")
            if stored_bits is not None and stored_bits != self.n_bits:
                raise DataError(
                    f"collection {name!r} at {self.uri} holds codes of n_bits={stored_bits}, "
                    f"but this index was asked for n_bits={self.n_bits}"
                )
            stored_model = info.get("model")
            if stored_model is not None:
                if self.model is not None and self.model != stored_model:
                    raise DataError(
                        f"collection {name!r} at {self.uri} holds codes of model {stored_model!r}, "
                        f"but this index was asked for model {self.model!r}"
                    )
                self.model = stored_model

    def _check_index(self) -> None:
        client = self.client
        (index_name, *_) = client.list_indexes(self.collection_name, field_name="code")
        # describe_index flattens the build parameters (nlist) beside index_type and metric_type.
        params = dict(client.describe_index(self.collection_name, index_name))
        existing = params.get("index_type")
        if existing != self.index_type:
            raise DataError(
                f"collection {self.collection_name!r} at {self.uri} is indexed with {existing}, "
                f"but index_type={self.index_type!r} was asked for"
            )
        metric = params.get("metric_type")
        if metric is not None and metric != "HAMMING":
            raise DataError(
                f"collection {self.collection_name!r} at {self.uri} is indexed for metric {metric}, "
                "but a Hamming index needs HAMMING"
            )
        inner = params.get("params") or {}
        if isinstance(inner, str):
            inner = json.loads(inner)
        nlist = inner.get("nlist", params.get("nlist"))
        if nlist is not None:
            # A build parameter: the existing index's value is the one in force.
            self.nlist = int(nlist)

    def close(self) -> None:
        """Release this instance's connection (the collection and its data stay in the server)."""
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing must not fail
                pass

    def __enter__(self) -> "MilvusIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def drop(self) -> None:
        """Delete the collection and all its data from the server, then close the connection."""
        with self._rpc("drop"):
            self.client.drop_collection(self.collection_name)
        self.close()

    def wait_for_index(self, timeout: float = 120.0) -> None:
        """Block until every flushed row is served from an indexed, sealed segment.

        After a flush Milvus builds the index of the new segment, then the query node swaps the
        segment in (every ``queryCoord.UpdateNextTargetInterval``, 10 s by default); until then a
        search scans those rows by brute force: exact, only slower.  Useful before measuring
        BIN_IVF_FLAT's recall or speed.  A DataError after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        client = self.client
        name = self.collection_name
        with self._rpc("waiting for the index"):
            (index_name, *_) = client.list_indexes(name, field_name="code")
            while True:
                index = client.describe_index(name, index_name)
                if index.get("state") == "Failed":
                    raise DataError(f"Milvus failed to build the {self.index_type} index of collection {name!r} "
                                    f"at {self.uri} (the server's logs say why)")
                total = int(client.get_collection_stats(name)["row_count"])  # rows flushed, deleted ones included
                # A sealed segment is first served without its index (index_id 0) and swapped for the
                # indexed one later; only then do searches use BIN_IVF_FLAT.
                sealed = sum(s.num_rows for s in client.list_loaded_segments(name)
                             if s.state_name == "Sealed" and s.index_id)
                if sealed >= total:
                    return
                if time.monotonic() > deadline:
                    raise DataError(
                        f"collection {self.collection_name!r} at {self.uri}: only {sealed} of {total} "
                        f"rows are served from indexed segments after {timeout:g} s"
                    )
                time.sleep(0.25)

    @property
    def client(self) -> Any:
        """The pymilvus ``MilvusClient`` of this index's connection (for inspection, e.g.
        ``client.query(index.collection_name, ...)``; prefer this class's methods to change the collection)."""
        if self._client is None:
            raise DataError(f"the MilvusIndex of collection {self.collection_name!r} is closed")
        return self._client

    # -- validation -----------------------------------------------------------------------------

    def _as_codes(self, codes: Any, name: str) -> np.ndarray:
        return check_packed_codes(codes, self.n_bits, name)

    def _meta_texts(self, metadata: Any, n: int) -> list[str]:
        if metadata is None:
            return ["{}"] * n
        if isinstance(metadata, (str, bytes, Mapping)) or not isinstance(metadata, Sequence):
            raise DataError(f"metadata must be a sequence of dicts (one per code), got {type(metadata).__name__}")
        if len(metadata) != n:
            raise DataError(f"metadata has {len(metadata)} entries but codes has {n} rows")
        texts = []
        for i, item in enumerate(metadata):
            if not isinstance(item, Mapping):
                raise DataError(f"metadata[{i}] must be a dict, got {type(item).__name__}")
            try:
                text = json.dumps(dict(item), ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                raise DataError(f"metadata[{i}] is not JSON-serialisable: {exc}") from None
            size = len(text.encode("utf-8"))
            if size > META_MAX_LENGTH:
                raise DataError(
                    f"metadata[{i}] is {size} bytes of JSON, over the {META_MAX_LENGTH}-byte limit "
                    "of the Milvus meta field"
                )
            texts.append(text)
        return texts

    def _existing(self, ids: np.ndarray) -> np.ndarray:
        """Those of ``ids`` (distinct) present in the collection."""
        found: list[int] = []
        for start in range(0, len(ids), _EXPR_CHUNK):
            chunk = ids[start:start + _EXPR_CHUNK]
            rows = self.client.query(self.collection_name, filter=f"id in {_id_list(chunk)}",
                                     output_fields=["id"], consistency_level="Strong")
            found.extend(int(r["id"]) for r in rows)
        return np.array(sorted(found), dtype=np.int64)

    # -- HammingIndex ---------------------------------------------------------------------------

    def get_metadata(self, ids: Sequence[int] | np.ndarray) -> list[dict[str, Any] | None]:
        """The stored metadata of each id (None for an id not in the collection)."""
        arr = np.asarray(ids, dtype=np.int64).ravel()
        found: dict[int, dict[str, Any]] = {}
        unique = np.unique(arr)
        with self._rpc("query"):
            for start in range(0, len(unique), _EXPR_CHUNK):
                rows = self.client.query(self.collection_name,
                                         filter=f"id in {_id_list(unique[start:start + _EXPR_CHUNK])}",
                                         output_fields=["id", "meta"], consistency_level="Strong")
                found.update({int(r["id"]): json.loads(r["meta"]) if r["meta"] else {} for r in rows})
        return [found.get(int(i)) for i in arr]

    def contains(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Whether each id is in the collection."""
        arr = np.asarray(ids, dtype=np.int64).ravel()
        return np.isin(arr, self._existing(np.unique(arr)))

    def add(self, codes: np.ndarray, ids: Sequence[int] | np.ndarray,
            metadata: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Insert codes under their ids (all-or-nothing for bad input; ids must be new and distinct).

        The existence check and the insert are not one transaction: two writers adding the same
        id at once can both succeed.  A failed insert deletes the batches already inserted.
        """
        codes = self._as_codes(codes, "codes")
        ids = _as_ids(ids)
        n = codes.shape[0]
        if len(ids) != n:
            raise DataError(f"ids has {len(ids)} entries but codes has {n} rows")
        texts = self._meta_texts(metadata, n)
        if n == 0:
            return
        if (ids == -1).any():
            raise DataError("ids must not contain -1: it marks the padding of search results")
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            dup = uniq[counts > 1]
            raise DataError(f"ids repeat within the batch: {dup[:10].tolist()}"
                            f"{' ...' if len(dup) > 10 else ''} ({len(dup)} ids)")
        with self._rpc("add"):
            present = self._existing(uniq)
            if len(present):
                raise DataError(
                    f"ids already in collection {self.collection_name!r}: {present[:10].tolist()}"
                    f"{' ...' if len(present) > 10 else ''} ({len(present)} ids)"
                )
            done = 0
            try:
                for start in range(0, n, self.batch_size):
                    stop = min(start + self.batch_size, n)
                    self.client.insert(self.collection_name, [
                        {"id": i, "code": row.tobytes(), "meta": text}
                        for i, row, text in zip(ids[start:stop].tolist(), codes[start:stop], texts[start:stop])
                    ])
                    done = stop
            except BaseException:
                if done:
                    try:
                        self._delete(ids[:done])
                    except Exception:  # noqa: BLE001 - the original error matters more
                        pass
                raise
            self.client.flush(self.collection_name)

    def search(self, codes: np.ndarray, k: int = 10) -> SearchResult:
        """The k nearest items of each query code by Hamming distance (ties in the server's order)."""
        codes = self._as_codes(codes, "codes")
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) \
                or not 1 <= k <= MAX_TOP_K:
            raise DataError(f"k must be an integer in 1..{MAX_TOP_K} (Milvus's top-k limit), got {k!r}")
        k = int(k)
        n_q = codes.shape[0]
        ids = np.full((n_q, k), -1, dtype=np.int64)
        distances = np.full((n_q, k), -1, dtype=np.int32)
        metadata: list[list[dict[str, Any] | None]] = [[None] * k for _ in range(n_q)]
        step = max(1, min(MAX_TOP_K, _SEARCH_PAIRS // k))
        with self._rpc("search"):
            for start in range(0, n_q, step):
                batch = codes[start:start + step]
                result = self.client.search(
                    self.collection_name, [row.tobytes() for row in batch], anns_field="code",
                    search_params=self._search_params(), limit=k, output_fields=["meta"],
                    consistency_level="Strong",
                )
                for offset, hits in enumerate(result):
                    q = start + offset
                    hit_ids = list(hits.ids)
                    m = len(hit_ids)
                    if not m:
                        continue
                    ids[q, :m] = hit_ids
                    distances[q, :m] = np.rint(np.asarray(hits.distances, dtype=np.float64))
                    for r, hit in enumerate(hits):
                        text = hit["entity"].get("meta")
                        metadata[q][r] = json.loads(text) if text else {}
        return SearchResult(ids=ids, distances=distances, metadata=metadata)

    def _delete(self, ids: np.ndarray) -> None:
        for start in range(0, len(ids), _EXPR_CHUNK):
            self.client.delete(self.collection_name, filter=f"id in {_id_list(ids[start:start + _EXPR_CHUNK])}")

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Delete these ids (unknown ones are ignored); returns how many were present and removed.

        (Milvus's own delete count is the number of ids in the expression, present or not, so
        the present ones are looked up first.)
        """
        ids = np.unique(_as_ids(ids))
        if not len(ids):
            return 0
        with self._rpc("remove"):
            present = self._existing(ids)
            if len(present):
                self._delete(present)
        return int(len(present))

    def __len__(self) -> int:
        """Live entities, by ``count(*)`` (``num_entities`` still counts deleted rows)."""
        with self._rpc("count"):
            rows = self.client.query(self.collection_name, filter="", output_fields=["count(*)"],
                                     consistency_level="Strong")
        return int(rows[0]["count(*)"])

    def params(self) -> dict[str, Any]:
        """The index type's parameters (``nlist`` of the built index, ``nprobe`` of searches)."""
        if self.index_type == "BIN_IVF_FLAT":
            return {"nlist": self.nlist, "nprobe": self.nprobe}
        return {}

    def stats(self) -> dict[str, Any]:
        """n_bits, backend, kind (the Milvus index type), count, model, bytes per code, parameters
        and where the collection is."""
        return {
            "n_bits": self.n_bits,
            "backend": "milvus",
            "kind": self.index_type,
            "count": len(self),
            "model": self.model,
            "bytes_per_code": self.n_bytes,
            "params": self.params(),
            "uri": self.uri,
            "collection": self.collection_name,
        }

    def manifest(self) -> dict[str, Any]:
        """What :meth:`save` writes: where the collection is and what it holds (no credentials)."""
        return {
            "backend": "milvus",
            "version": _MANIFEST_VERSION,
            "uri": self.uri,
            "collection": self.collection_name,
            "n_bits": self.n_bits,
            "index_type": self.index_type,
            "params": self.params(),
            "model": self.model,
            "info": self.info,
            "batch_size": self.batch_size,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Flush the collection and write ``path/manifest.json`` atomically; the data stays in Milvus."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise DataError(f"{path} exists and is not a directory")
        with self._rpc("flush"):
            self.client.flush(self.collection_name)
        write_json(path / _MANIFEST, self.manifest())

    @staticmethod
    def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
        """The validated manifest of a saved Milvus index directory."""
        file = Path(path) / _MANIFEST
        try:
            manifest = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{file} is missing: {path} is not a saved Milvus index") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"{file} is not a readable JSON manifest: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("backend") != "milvus":
            got = manifest.get("backend") if isinstance(manifest, dict) else type(manifest).__name__
            raise DataError(f"{file} is not a Milvus index manifest (backend {got!r})")
        checks = {"uri": str, "collection": str, "n_bits": int, "index_type": str, "params": dict}
        for key, typ in checks.items():
            value = manifest.get(key)
            if not isinstance(value, typ) or isinstance(value, bool):
                raise DataError(f"{file}: {key} must be a {typ.__name__}, got {value!r}")
        if manifest.get("model") is not None and not isinstance(manifest["model"], str):
            raise DataError(f"{file}: model must be a string or null, got {manifest['model']!r}")
        return manifest

    @classmethod
    def load(cls, path: str | os.PathLike, *, n_bits: int | None = None, model: str | None = None,
             token: str | None = None, uri: str | None = None, db_name: str | None = None,
             tls_ca: str | None = None,
             timeout: float = 10.0) -> "MilvusIndex":
        """Reconnect to the collection named by ``path/manifest.json`` (which must exist in the server).

        ``n_bits`` / ``model``, when given, must match the manifest (DataError naming both);
        ``uri`` overrides the manifest's server address (e.g. the same data behind another host
        name) and ``token`` supplies the credentials, which the manifest never holds.
        """
        manifest = cls.read_manifest(path)
        file = Path(path) / _MANIFEST
        if n_bits is not None and n_bits != manifest["n_bits"]:
            raise DataError(
                f"{file} holds codes of n_bits={manifest['n_bits']}, but n_bits={n_bits} was asked for"
            )
        if model is not None and model != manifest.get("model"):
            raise DataError(
                f"{file} holds codes of model {manifest.get('model')!r}, but model {model!r} was asked for"
            )
        params = manifest["params"]
        kwargs: dict[str, Any] = {}
        for key in ("nlist", "nprobe"):
            if key in params:
                kwargs[key] = params[key]
        if isinstance(manifest.get("batch_size"), int):
            kwargs["batch_size"] = manifest["batch_size"]
        index = cls(
            manifest["n_bits"], uri or os.environ.get(ENV_URI) or manifest["uri"], manifest["collection"],
            index_type=manifest["index_type"], token=token, db_name=db_name, tls_ca=tls_ca, model=manifest.get("model"),
            info=manifest.get("info"), timeout=timeout, create_if_missing=False, **kwargs,
        )
        return index
