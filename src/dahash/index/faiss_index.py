"""The embedded FAISS backend of :class:`dahash.index.base.HammingIndex`: FAISS's binary indexes
(``IndexBinaryFlat``, ``IndexBinaryIVF``, ``IndexBinaryHNSW``; Douze et al., "The Faiss
library", 2024) over the packed codes of :mod:`dahash.codes`, with external int64 ids, per-item
metadata and an atomically saved on-disk directory.

Kinds:

* ``"flat"``: exhaustive search, exact (``IndexBinaryIDMap`` over ``IndexBinaryFlat``);
* ``"ivf"``: inverted lists over a flat quantizer (``IndexBinaryIVF``), trained on the first
  :meth:`FaissIndex.add`, searching ``nprobe`` of its ``nlist`` lists;
* ``"hnsw"``: a navigable small-world graph (``IndexBinaryHNSW``; Malkov & Yashunin, TPAMI 2020),
  searched with ``max(ef_search, k)`` candidates.

FAISS binary indexes take a dimension ``d`` that is a multiple of 8 and compare whole bytes, so
the index dimension is ``8 * ceil(n_bits / 8)``: the pad bits of packed codes are zero in every
code (checked on input), so they never change a distance and any ``n_bits >= 1`` works for every
kind.

On disk an index is one directory: ``manifest.json`` (format version, n_bits, kind, parameters,
model, count and the sha256 of each data file), ``codes.npy``, ``ids.npy``, ``metadata.json`` and,
for ``ivf`` and ``hnsw``, ``index.faiss`` (``faiss.write_index_binary``).  A ``flat`` index has no
FAISS file: it is rebuilt from ``codes.npy`` on load, which is exact and costs one copy of the
codes.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import socket
import tempfile
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from dahash.errors import ConfigError, DataError
from dahash.index.base import HammingIndex, HitMetadata, SearchResult, check_packed_codes
from dahash.io import file_sha256
from dahash.validation import check_choice, check_int

__all__ = ["FaissIndex", "KINDS", "FORMAT_VERSION"]

KINDS = ("flat", "ivf", "hnsw")
FORMAT_VERSION = 1
_FORMAT = "dahash-faiss-index"

MANIFEST = "manifest.json"
CODES_FILE = "codes.npy"
IDS_FILE = "ids.npy"
METADATA_FILE = "metadata.json"
FAISS_FILE = "index.faiss"

# Search results use -1 as the id of a padding slot, so it cannot be an item's id.
_PAD_ID = -1


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_OWNER = "owner.json"  # in a save's temporary directory: which process writes it
STALE_SECONDS = 3600.0


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _temporary_prefix(path: Path) -> str:
    """``.<index name>.<host tag>-<pid>-``: a save's temporary directory names its writer from the moment
    it exists (a kill before the owner file is written leaves no other trace of who made it)."""
    return f".{path.name}.{_host_tag()}-{os.getpid()}-"


def _host_tag() -> str:
    return f"h{zlib.crc32(socket.gethostname().encode()):08x}"


def _writer_of(rest: str) -> int | None:
    """The pid in a temporary directory's name after ``.<index name>.``, when this host made it."""
    tag, _, remainder = rest.partition("-")
    pid, sep, _ = remainder.partition("-")
    return int(pid) if tag == _host_tag() and sep and pid.isdigit() else None


def _remove_stale_temporaries(path: Path, keep: Path | None = None) -> list[Path]:
    """Delete the temporary directories of saves of ``path`` whose writer died (killed mid-save);
    returns them. A directory is stale when the process named in its owner file, on this host, is
    gone, or, without a readable owner file, when it is older than :data:`STALE_SECONDS`. A live
    writer's directory, or one from another host sharing the folder, is never touched."""
    removed = []
    host = socket.gethostname()
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if tmp == keep or not tmp.is_dir():
            continue
        try:
            with open(tmp / _OWNER, encoding="utf-8") as f:
                owner = json.load(f)
            stale = owner.get("host") == host and not _process_alive(int(owner["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            # Killed before its owner file was written: the name says who made it (_temporary_prefix).
            writer = _writer_of(tmp.name[len(path.name) + 2:])
            try:
                stale = (not _process_alive(writer) if writer is not None
                         else time.time() - tmp.stat().st_mtime > STALE_SECONDS)
            except OSError:
                continue
        if stale:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _backup_path(path: Path) -> Path:
    """Where :meth:`FaissIndex.save` parks the previous index during the swap."""
    return path.with_name(f".{path.name}.bak")


def _json_copy(value: Any, what: str) -> Any:
    """``value`` after a strict JSON round trip, so the in-memory metadata is exactly what
    :meth:`FaissIndex.load` will read back (tuples become lists, keys become strings)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} is not JSON-serialisable: {exc}") from exc


class FaissIndex(HammingIndex):
    """A :class:`HammingIndex` held in a FAISS binary index, with ids and metadata beside it.

    The wrapper keeps its own copy of the codes and ids (row order = FAISS insertion order):
    :meth:`save` writes them, ``hnsw`` needs them to rebuild its graph on :meth:`remove`, and
    they make duplicate-id checks cheap.  Metadata is a dict ``id -> JSON-able dict``.

    Not thread-safe: use one writer at a time, and do not mutate the metadata dicts returned
    in a :class:`SearchResult` (they are the index's own).
    """

    def __init__(
        self,
        n_bits: int,
        kind: str = "flat",
        *,
        nlist: int | None = None,
        nprobe: int = 8,
        hnsw_m: int = 16,
        ef_search: int = 64,
        model: str | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self.n_bits = check_int("n_bits", n_bits, low=1)
        self.kind = check_choice("kind", kind, KINDS)
        self.nlist = None if nlist is None else check_int("nlist", nlist, low=1)
        self.nprobe = check_int("nprobe", nprobe, low=1)
        # HNSW needs at least 2 neighbours per node to form a connected graph.
        self.hnsw_m = check_int("hnsw_m", hnsw_m, low=2)
        self.ef_search = check_int("ef_search", ef_search, low=1)
        if model is not None and not isinstance(model, str):
            raise ConfigError(f"model must be a string or None, got {model!r}")
        self.model = model
        if info is not None and not isinstance(info, Mapping):
            raise ConfigError(f"info must be a mapping of facts, got {type(info).__name__}")
        # Free-form JSON-able facts kept in the manifest, e.g. the run directory that encodes queries.
        self.info = _json_copy(dict(info or {}), "info")
        self.n_bytes = (self.n_bits + 7) // 8
        self._codes = np.empty((0, self.n_bytes), dtype=np.uint8)
        self._ids = np.empty(0, dtype=np.int64)
        self._metadata: dict[int, dict[str, Any]] = {}
        self._index = self._new_index()

    # ----------------------------------------------------------------------------- FAISS side

    @property
    def _d(self) -> int:
        """FAISS dimension: whole bytes (see the module docstring on pad bits)."""
        return 8 * self.n_bytes

    def _new_index(self) -> Any:
        """An empty FAISS index of this kind (an ``ivf`` one is untrained)."""
        if self.kind == "flat":
            # IDMap stores the external ids, so search returns them and remove_ids works.
            return faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(self._d))
        if self.kind == "hnsw":
            index = faiss.IndexBinaryHNSW(self._d, self.hnsw_m)
            index.hnsw.efSearch = self.ef_search
            return index
        # ivf: built on the first add, once the training codes fix nlist.
        return None

    def _build_ivf(self, training: np.ndarray) -> Any:
        """A trained ``IndexBinaryIVF``; nlist defaults to about sqrt(n) lists, at most n."""
        n = training.shape[0]
        if self.nlist is None:
            nlist = max(1, min(n, int(round(math.sqrt(n)))))
        elif self.nlist > n:
            # k-means cannot place more centroids than it has points.
            raise DataError(
                f"nlist={self.nlist} exceeds the {n} codes of the first add, which train the "
                "ivf index; add more codes first or lower nlist"
            )
        else:
            nlist = self.nlist
        quantizer = faiss.IndexBinaryFlat(self._d)
        index = faiss.IndexBinaryIVF(quantizer, self._d, nlist)
        # The IVF index must own its quantizer, or Python could free it under FAISS.
        quantizer.this.disown()
        index.own_fields = True
        index.train(training)
        index.nprobe = min(self.nprobe, nlist)
        self.nlist = nlist
        return index

    def _rebuild_hnsw(self) -> None:
        """HNSW cannot delete nodes, so removal rebuilds the graph from the kept codes."""
        self._index = self._new_index()
        if len(self._ids):
            self._index.add(self._codes)

    # ------------------------------------------------------------------------- validation

    def _check_codes(self, codes: Any, name: str) -> np.ndarray:
        return check_packed_codes(codes, self.n_bits, name)

    @staticmethod
    def _check_ids(ids: Any, name: str = "ids") -> np.ndarray:
        """A 1-D int64 array of ids (no range check beyond int64)."""
        arr = np.asarray(ids)
        if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
            raise DataError(
                f"{name} must be a 1-D integer array, got dtype {arr.dtype} and shape {arr.shape}"
            )
        if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise DataError(f"{name} holds {int(arr.max())}, beyond int64")
        return arr.astype(np.int64, copy=False)

    # --------------------------------------------------------------------------- interface

    def add(
        self,
        codes: np.ndarray,
        ids: Sequence[int] | np.ndarray,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Insert codes under their ids (each metadata item a JSON-able dict, or None for ``{}``).

        Everything is validated before the index changes, so a rejected add leaves it as it was.
        The first add of an ``ivf`` index trains it on these codes.
        """
        codes = self._check_codes(codes, "codes")
        ids = self._check_ids(ids)
        n = codes.shape[0]
        if ids.shape[0] != n:
            raise DataError(f"ids has {ids.shape[0]} ids but codes has {n} codes")
        if (ids == _PAD_ID).any():
            raise DataError(f"ids holds {_PAD_ID}, the id search results use for padding")
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise DataError(f"ids repeats id {int(unique[counts > 1][0])} within one add")
        present = np.isin(ids, self._ids)
        if present.any():
            raise DataError(f"id {int(ids[present][0])} is already in the index")
        if metadata is None:
            meta = [{} for _ in range(n)]
        else:
            if isinstance(metadata, (str, bytes, Mapping)) or not isinstance(metadata, Sequence):
                raise DataError(
                    f"metadata must be a sequence of dicts, one per code, got {type(metadata).__name__}"
                )
            if len(metadata) != n:
                raise DataError(f"metadata has {len(metadata)} items but codes has {n} codes")
            meta = []
            for i, item in enumerate(metadata):
                if item is None:
                    item = {}
                if not isinstance(item, Mapping):
                    raise DataError(f"metadata[{i}] must be a dict, got {type(item).__name__}")
                meta.append(_json_copy(dict(item), f"metadata[{i}]"))
        if n == 0:
            return
        if self.kind == "ivf":
            index = self._index if self._index is not None else self._build_ivf(codes)
            index.add_with_ids(codes, ids)
            self._index = index
        elif self.kind == "flat":
            self._index.add_with_ids(codes, ids)
        else:
            # HNSW labels are row positions in self._codes; search maps them to ids.
            self._index.add(codes)
        self._codes = np.concatenate([self._codes, codes])
        self._ids = np.concatenate([self._ids, ids])
        # A new dict, not an update: results of earlier searches read their hits' metadata lazily from the old one.
        self._metadata = {**self._metadata, **dict(zip(ids.tolist(), meta))}

    def search(self, codes: np.ndarray, k: int = 10) -> SearchResult:
        """The k nearest items of each query, nearest first; missing slots are padded."""
        queries = self._check_codes(codes, "codes")
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
            raise DataError(f"k must be an integer >= 1, got {k!r}")
        k = int(k)
        n_q = queries.shape[0]
        out_ids = np.full((n_q, k), _PAD_ID, dtype=np.int64)
        out_dist = np.full((n_q, k), -1, dtype=np.int32)
        n = len(self)
        if n and n_q:
            # Never ask FAISS for more than the index holds: k may be huge, the padding is ours.
            k_eff = min(k, n)
            if self.kind == "hnsw":
                # HNSW returns at most ef candidates, so ef must cover k.
                params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k_eff))
                dist, labels = self._index.search(queries, k_eff, params=params)
                found = labels >= 0
                labels = np.where(found, self._ids[np.where(found, labels, 0)], _PAD_ID)
            else:
                dist, labels = self._index.search(queries, k_eff)
                found = labels >= 0
            out_ids[:, :k_eff] = np.where(found, labels, _PAD_ID)
            out_dist[:, :k_eff] = np.where(found, dist, -1)
        # Each row's metadata is built when read (the padding id -1 is no key: None).
        return SearchResult(ids=out_ids, distances=out_dist, metadata=HitMetadata(out_ids, self._metadata.get))

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Delete these ids (unknown ones are ignored); returns how many were removed."""
        wanted = np.unique(self._check_ids(ids))
        gone = np.isin(self._ids, wanted)
        n_removed = int(gone.sum())
        if n_removed == 0:
            return 0
        removed = self._ids[gone]
        if self.kind == "hnsw":
            self._codes = self._codes[~gone]
            self._ids = self._ids[~gone]
            self._rebuild_hnsw()
        else:
            # Both IndexBinaryIDMap and IndexBinaryIVF delete by external id and keep the
            # remaining items in order, like the compaction of our own arrays below.
            n_faiss = self._index.remove_ids(removed)
            if n_faiss != n_removed:
                raise RuntimeError(f"FAISS removed {n_faiss} items, expected {n_removed}")
            self._codes = self._codes[~gone]
            self._ids = self._ids[~gone]
        gone_ids = set(removed.tolist())
        self._metadata = {i: m for i, m in self._metadata.items() if i not in gone_ids}  # a new dict, as in add
        return n_removed

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def get_metadata(self, ids: Sequence[int] | np.ndarray) -> list[dict[str, Any] | None]:
        """The stored metadata of each id (None for an id not in the index)."""
        return [self._metadata.get(int(i)) for i in np.asarray(ids, dtype=np.int64).ravel()]

    def contains(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Whether each id is in the index."""
        return np.isin(np.asarray(ids, dtype=np.int64).ravel(), self._ids)

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, (int, np.integer)) and int(item_id) in self._metadata

    def params(self) -> dict[str, Any]:
        """The kind's parameters as stored in the manifest (nlist is the trained one, if any)."""
        if self.kind == "ivf":
            return {"nlist": self.nlist, "nprobe": self.nprobe}
        if self.kind == "hnsw":
            return {"hnsw_m": self.hnsw_m, "ef_search": self.ef_search}
        return {}

    def stats(self) -> dict[str, Any]:
        """n_bits, kind, count, model, bytes per code and the kind's parameters."""
        return {
            "backend": "faiss",
            "n_bits": self.n_bits,
            "kind": self.kind,
            "count": len(self),
            "model": self.model,
            "bytes_per_code": self.n_bytes,
            "params": self.params(),
        }

    # ------------------------------------------------------------------------------- save

    def _write_files(self, folder: Path) -> dict[str, str]:
        """Write the data files into ``folder``; returns {file name: sha256}."""
        names = [CODES_FILE, IDS_FILE, METADATA_FILE]
        np.save(folder / CODES_FILE, self._codes, allow_pickle=False)
        np.save(folder / IDS_FILE, self._ids, allow_pickle=False)
        # A list in row order (not a dict): JSON keys would turn the int64 ids into strings.
        with open(folder / METADATA_FILE, "w", encoding="utf-8") as f:
            json.dump([self._metadata[i] for i in self._ids.tolist()], f, allow_nan=False)
        if self.kind != "flat" and self._index is not None:
            faiss.write_index_binary(self._index, str(folder / FAISS_FILE))
            names.append(FAISS_FILE)
        hashes = {}
        for name in names:
            _fsync_file(folder / name)
            hashes[name] = file_sha256(folder / name)
        return hashes

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to the directory ``path``, atomically.

        Everything goes to a sibling temporary directory first (manifest last); then the old
        directory is renamed to ``.<name>.bak``, the new one renamed into place and the backup
        deleted.  A crash before the first rename leaves the old index; between the renames,
        ``path`` is missing and :meth:`load` recovers from the backup; after the second, the
        new index is in place.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise DataError(f"cannot save an index to {path}: it exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not (path / MANIFEST).is_file():
            # Refuse rather than rename away (and later delete) a directory that is not an index.
            raise DataError(f"cannot save an index to {path}: it is a non-empty directory "
                            f"without {MANIFEST}, so not an index")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent))
        backup = _backup_path(path)
        try:
            # Lets a later save tell this directory, if a kill leaves it behind, from a live writer's.
            with open(tmp / _OWNER, "w", encoding="utf-8") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)
            files = self._write_files(tmp)
            manifest = {
                "format": _FORMAT,
                "format_version": FORMAT_VERSION,
                "backend": "faiss",
                "n_bits": self.n_bits,
                "kind": self.kind,
                "params": self.params(),
                "model": self.model,
                "info": self.info,
                "count": len(self),
                "bytes_per_code": self.n_bytes,
                "files": files,
            }
            with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=2)
            _fsync_file(tmp / MANIFEST)
            _fsync_dir(tmp)
            if path.exists():
                if backup.exists():
                    # A backup beside a present index is left over from a crash after the
                    # swap: the index at path is complete, so the backup is not needed.
                    shutil.rmtree(backup)
                os.rename(path, backup)
            (tmp / _OWNER).unlink()
            # With path absent and a backup present (a crash mid-swap), the backup stays until
            # the new index is in place, so some complete index exists at every moment.
            os.rename(tmp, path)
            _fsync_dir(path.parent)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(backup, ignore_errors=True)
        _remove_stale_temporaries(path)

    # ------------------------------------------------------------------------------- load

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        n_bits: int | None = None,
        model: str | None = None,
    ) -> "FaissIndex":
        """Read an index written by :meth:`save`.

        ``n_bits`` and ``model``, when given, must match the manifest.  A missing directory with a
        backup beside it (a crash during :meth:`save`'s swap) is recovered from the backup.  Any
        missing, corrupt or mismatched file raises a DataError naming its path.
        """
        path = Path(path)
        if not path.exists():
            backup = _backup_path(path)
            if not (backup / MANIFEST).is_file():
                raise DataError(f"no index directory at {path}")
            try:
                # Put the previous index back where it belongs; if that is not allowed, read it
                # where it is.
                os.rename(backup, path)
            except OSError:
                path = backup
        if not path.is_dir():
            raise DataError(f"{path} is not an index directory")
        manifest = cls._read_manifest(path)
        m_bits, kind = manifest["n_bits"], manifest["kind"]
        if n_bits is not None and n_bits != m_bits:
            raise DataError(f"index at {path} holds {m_bits}-bit codes, expected n_bits={n_bits}")
        if model is not None and model != manifest.get("model"):
            raise DataError(
                f"index at {path} was built by model {manifest.get('model')!r}, "
                f"expected model {model!r}"
            )
        files = manifest["files"]
        for name, digest in files.items():
            file = path / name
            if not file.is_file():
                raise DataError(f"index file {file} is missing")
            if file_sha256(file) != digest:
                raise DataError(
                    f"index file {file} does not match its sha256 in the manifest "
                    "(truncated or altered)"
                )
        params = manifest["params"]
        try:
            index = cls(m_bits, kind, model=manifest.get("model"), info=manifest.get("info"), **params)
        except (ConfigError, TypeError) as exc:
            raise DataError(f"{path / MANIFEST} has invalid parameters {params!r}: {exc}") from exc
        count = manifest["count"]
        codes = cls._read_npy(path / CODES_FILE)
        ids = cls._read_npy(path / IDS_FILE)
        if codes.dtype != np.uint8 or codes.shape != (count, index.n_bytes):
            raise DataError(f"{path / CODES_FILE} holds {codes.dtype} {codes.shape}, expected "
                            f"uint8 ({count}, {index.n_bytes}) from the manifest")
        if ids.dtype != np.int64 or ids.shape != (count,) or len(np.unique(ids)) != count:
            raise DataError(f"{path / IDS_FILE} must hold {count} distinct int64 ids, "
                            f"got {ids.dtype} {ids.shape}")
        try:
            with open(path / METADATA_FILE, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {path / METADATA_FILE}: {exc}") from exc
        if not isinstance(meta, list) or len(meta) != count \
                or not all(isinstance(m, dict) for m in meta):
            raise DataError(f"{path / METADATA_FILE} must be a list of {count} dicts")
        index._codes, index._ids = codes, ids
        index._metadata = dict(zip(ids.tolist(), meta))
        if kind == "flat":
            if count:
                index._index.add_with_ids(codes, ids)
        elif FAISS_FILE in files:
            index._index = cls._read_faiss(path / FAISS_FILE, index, count)
        elif count or kind == "hnsw":
            # Only an empty, never trained ivf index is saved without a FAISS file.
            raise DataError(f"{path / MANIFEST} lists no {FAISS_FILE} for a {kind} index")
        return index

    @staticmethod
    def _read_manifest(path: Path) -> dict[str, Any]:
        """The validated manifest of the index directory ``path``."""
        file = path / MANIFEST
        if not file.is_file():
            raise DataError(f"index directory {path} has no {MANIFEST}")
        try:
            with open(file, encoding="utf-8") as f:
                manifest = json.load(f)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the index manifest {file}: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
            raise DataError(f"{file} is not a {_FORMAT} manifest")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{file} has format_version {manifest.get('format_version')!r}; "
                            f"this dahash reads version {FORMAT_VERSION}")
        expected = {"n_bits": int, "kind": str, "params": dict, "count": int, "files": dict}
        for key, kind in expected.items():
            if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
                raise DataError(f"{file} lacks a valid {key!r} entry")
        if manifest["kind"] not in KINDS or manifest["count"] < 0:
            raise DataError(f"{file} has an invalid kind or count")
        if not (manifest.get("model") is None or isinstance(manifest["model"], str)):
            raise DataError(f"{file} has a model entry that is not a string")
        required = {CODES_FILE, IDS_FILE, METADATA_FILE}
        if not required <= set(manifest["files"]) or not set(manifest["files"]) <= required | {FAISS_FILE}:
            raise DataError(f"{file} must list the files {sorted(required)} (and {FAISS_FILE})")
        return manifest

    @staticmethod
    def _read_npy(file: Path) -> np.ndarray:
        try:
            return np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {file}: {exc}") from exc

    @staticmethod
    def _read_faiss(file: Path, index: "FaissIndex", count: int) -> Any:
        """The FAISS index of ``file``, checked against the kind, dimension and count."""
        try:
            faiss_index = faiss.read_index_binary(str(file))
        except RuntimeError as exc:
            raise DataError(f"cannot read the FAISS index {file}: {exc}") from exc
        expected = faiss.IndexBinaryIVF if index.kind == "ivf" else faiss.IndexBinaryHNSW
        if not isinstance(faiss_index, expected) or faiss_index.d != index._d \
                or faiss_index.ntotal != count:
            raise DataError(f"{file} is a {type(faiss_index).__name__} of d={faiss_index.d} with "
                            f"{faiss_index.ntotal} items, expected a {expected.__name__} of "
                            f"d={index._d} with {count}")
        if index.kind == "ivf":
            faiss_index.nprobe = min(index.nprobe, faiss_index.nlist)
            index.nlist = faiss_index.nlist
        else:
            faiss_index.hnsw.efSearch = index.ef_search
        return faiss_index
