"""Hamming-distance search over packed hash codes: FAISS binary indexes embedded in the process (the
default: exact flat, IVF, HNSW) or a Milvus server for collections that outgrow one machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dahash.errors import DataError
from dahash.index.base import HammingIndex, SearchResult
from dahash.index.faiss_index import FaissIndex
from dahash.index.milvus_index import MilvusIndex

__all__ = ["FaissIndex", "HammingIndex", "SearchResult", "open_index"]


def open_index(path: str | os.PathLike, *, n_bits: int | None = None, model: str | None = None) -> HammingIndex:
    """The index saved in the directory ``path``, whichever backend wrote it (its manifest says)."""
    manifest = Path(path) / "manifest.json"
    if not manifest.is_file() and not Path(path).is_dir():
        # FaissIndex.load also recovers an index whose save was cut off between its two renames.
        return FaissIndex.load(path, n_bits=n_bits, model=model)
    try:
        backend = json.loads(manifest.read_text(encoding="utf-8")).get("backend")
    except (OSError, ValueError, AttributeError) as exc:
        raise DataError(f"{manifest}: not a readable index manifest ({exc})") from None
    if backend == "milvus":
        return MilvusIndex.load(path, n_bits=n_bits, model=model)
    if backend == "faiss":
        return FaissIndex.load(path, n_bits=n_bits, model=model)
    raise DataError(f"{manifest}: unknown index backend {backend!r} (expected faiss or milvus)")
