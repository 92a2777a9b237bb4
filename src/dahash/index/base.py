"""The one interface of every Hamming-distance index backend (FAISS binary indexes, Milvus):
packed codes in (see :mod:`dahash.codes`), external int64 ids and per-item metadata kept beside them."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dahash.errors import DataError

__all__ = ["HammingIndex", "SearchResult", "check_packed_codes"]


def check_packed_codes(codes: Any, n_bits: int, name: str = "codes") -> np.ndarray:
    """``codes`` as a C-contiguous uint8 (n, ceil(n_bits/8)) array with zero padding bits, else a
    DataError naming ``name``. Non-zero pad bits would add to every distance computed on whole bytes."""
    n_bytes = (n_bits + 7) // 8
    arr = np.asarray(codes)
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != n_bytes:
        raise DataError(f"{name} must be a 2-D uint8 array of packed {n_bits}-bit codes "
                        f"(shape (n, {n_bytes})), got dtype {arr.dtype} and shape {arr.shape}")
    n_pad = 8 * n_bytes - n_bits
    if n_pad and arr.size and (arr[:, -1] & np.uint8((1 << n_pad) - 1)).any():
        raise DataError(f"{name} has non-zero padding bits beyond n_bits={n_bits}; was it packed with more bits?")
    return np.ascontiguousarray(arr)


class HitMetadata(Sequence):
    """``metadata[query][rank]`` of a search, each row built when first read: a server reads one row of many,
    and building every row took 5-10 % of a 2,000-query search of 100,000 codes. ``lookup`` maps an id to its
    metadata (None for the padding id) and must not change afterwards. Compares equal to the lists it stands for."""

    def __init__(self, ids: np.ndarray, lookup: Callable[[int], dict[str, Any] | None]) -> None:
        self._ids = ids
        self._lookup = lookup
        self._rows: dict[int, list[dict[str, Any] | None]] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, query: Any) -> Any:
        if isinstance(query, slice):
            return [self[q] for q in range(*query.indices(len(self)))]
        q = range(len(self))[query]  # negative indices, and an IndexError past the end
        if q not in self._rows:
            self._rows[q] = list(map(self._lookup, self._ids[q].tolist()))
        return self._rows[q]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self))


@dataclass(frozen=True)
class SearchResult:
    """Hits of a batch of queries, best first; rows with fewer than k hits are padded with id -1,
    distance -1 and metadata None."""

    ids: np.ndarray  # (n_queries, k) int64
    distances: np.ndarray  # (n_queries, k) int32 Hamming distances
    metadata: Sequence[list[dict[str, Any] | None]]  # [query][rank]: a list, or HitMetadata


class HammingIndex(ABC):
    """``add(codes, ids, metadata)``, ``search(codes, k)``, ``remove(ids)``, ``save``/``load``, ``len``.

    ``codes`` are packed uint8 rows of ``ceil(n_bits / 8)`` bytes; ``ids`` are distinct int64
    external ids (adding an id that is already present is an error; -1 is reserved for padding);
    ``metadata`` is one JSON-able dict per code (e.g. ``{"path": ..., "label": ...}``), returned
    with every hit; omitted, each item gets ``{}``. A search with ``k < 1`` is a DataError.
    """

    n_bits: int

    @abstractmethod
    def add(self, codes: np.ndarray, ids: Sequence[int] | np.ndarray,
            metadata: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Insert codes under their ids."""

    @abstractmethod
    def search(self, codes: np.ndarray, k: int = 10) -> SearchResult:
        """The k nearest items of each query code by Hamming distance."""

    @abstractmethod
    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Delete these ids (unknown ones are ignored); returns how many were removed."""

    @abstractmethod
    def contains(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Boolean array: whether each id is in the index."""

    @abstractmethod
    def get_metadata(self, ids: Sequence[int] | np.ndarray) -> list[dict[str, Any] | None]:
        """The stored metadata of each id (None for an id not in the index)."""

    @abstractmethod
    def save(self, path: str | os.PathLike) -> None:
        """Write the index to the directory ``path`` (atomically: a crash keeps the previous one)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike, *, n_bits: int | None = None,
             model: str | None = None) -> "HammingIndex":
        """Read an index written by :meth:`save`; a corrupt one, or one whose code length or model
        differs from ``n_bits`` / ``model`` when given, is a DataError naming the path."""

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """``backend`` ("faiss" or "milvus"), ``kind`` (the backend's index type), n_bits, count,
        model and bytes per code, for ``/stats`` and the CLI."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of items in the index."""
