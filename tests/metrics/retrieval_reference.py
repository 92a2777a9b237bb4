"""Reference implementation of the retrieval metrics: dahash.metrics.retrieval as it was before the
compiled kernels (numpy: Hamming distances of a chunk of queries, a stable argsort per query).

Kept unchanged (but for the imports, now public, from dahash.codes) so that
tests/metrics/test_retrieval_kernels.py and benchmarks/metrics_map.py compare the kernels with
it.  Its definition: the database ranked per query by Hamming distance, ties in database order.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from dahash.codes import as_packed, check_n_bits, distance_dtype, hamming_distance
from dahash.errors import DataError

__all__ = [
    "hamming_ranking",
    "average_precisions",
    "mean_average_precision",
    "precision_recall_curve",
    "precision_at_k",
    "precision_within_radius",
    "default_chunk_size",
]

# Target working memory of one chunk of queries.
CHUNK_MEMORY_BYTES = 256 * 2**20

# Upper bound on the bytes held per (query, database item) pair inside a chunk:
# distances (<= 4) + stable-argsort indices (8) + relevance masks in database and
# ranked order (2) + int32 cumulative hits (4) + float64 precisions (8) + the
# argsort's own scratch (8) + popcount scratch (<= 9), rounded up.
BYTES_PER_PAIR = 48


def default_chunk_size(n_db: int) -> int:
    """Queries per chunk so that one chunk's working set stays within CHUNK_MEMORY_BYTES."""
    return max(1, CHUNK_MEMORY_BYTES // (BYTES_PER_PAIR * max(1, int(n_db))))


def _check_labels(labels: Any, n: int, name: str, codes_name: str) -> np.ndarray:
    """Validate a 1-D integer label array with one label per code."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"{name} must be a 1-D integer array, got dtype {arr.dtype} and shape {arr.shape}"
        )
    if arr.shape[0] != n:
        raise DataError(f"{name} has {arr.shape[0]} labels but {codes_name} has {n} codes")
    return arr


def _check_positive_int(value: Any, name: str, allow_zero: bool = False) -> int:
    """Return ``value`` as int after checking it is a (positive or non-negative) integer."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{name} must be an integer, got {value!r}")
    if value < (0 if allow_zero else 1):
        raise DataError(f"{name} must be {'>= 0' if allow_zero else '>= 1'}, got {value}")
    return int(value)


class _Problem:
    """Validated inputs shared by every metric: codes as words, labels, chunking."""

    def __init__(
        self,
        query_packed: Any,
        db_packed: Any,
        exclude_self: bool,
        chunk_size: int | None,
        query_labels: Any = None,
        db_labels: Any = None,
    ) -> None:
        query = as_packed(query_packed, "query_packed")
        db = as_packed(db_packed, "db_packed")
        if query.shape[1] != db.shape[1]:
            raise DataError(
                f"query_packed has {query.shape[1]} bytes per code but db_packed has {db.shape[1]}"
            )
        self.n_q, self.n_bytes = query.shape
        self.n_db = db.shape[0]
        if self.n_q == 0:
            raise DataError("query_packed holds no codes")
        if self.n_db == 0:
            raise DataError("db_packed holds no codes")
        self.exclude_self = bool(exclude_self)
        if self.exclude_self:
            if self.n_q != self.n_db:
                raise DataError(
                    "exclude_self=True needs the query set to be the database "
                    f"(n_q == n_db), got n_q={self.n_q} and n_db={self.n_db}"
                )
            if self.n_db < 2:
                raise DataError("exclude_self=True needs at least 2 codes, got 1")
        # Items ranked per query: the database, less the query itself if excluded.
        self.n_ranked = self.n_db - int(self.exclude_self)
        self.chunk_size = (
            default_chunk_size(self.n_db)
            if chunk_size is None
            else _check_positive_int(chunk_size, "chunk_size")
        )
        self.dtype = distance_dtype(self.n_bytes)
        # Sorts after every real distance, so the excluded self lands last in a stable ranking.
        self.sentinel = 8 * self.n_bytes + 1
        self.query = query
        self.db = db
        if query_labels is not None:
            self.query_labels = _check_labels(query_labels, self.n_q, "query_labels", "query_packed")
            self.db_labels = _check_labels(db_labels, self.n_db, "db_labels", "db_packed")

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield (query slice, distances of that chunk x database), self pairs set to the sentinel."""
        for start in range(0, self.n_q, self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, self.n_q))
            dist = hamming_distance(self.query[rows], self.db)
            if self.exclude_self:
                local = np.arange(dist.shape[0])
                dist[local, local + start] = self.sentinel
            yield rows, dist

    def relevance(self, rows: slice) -> np.ndarray:
        """Boolean (chunk, n_db) mask of database items sharing the query's label."""
        return self.db_labels[None, :] == self.query_labels[rows, None]

    def ranking(self, dist: np.ndarray, top_k: int | None) -> np.ndarray:
        """Stable Hamming ranking of a chunk, self removed, truncated to top_k."""
        # NumPy's stable sort of small integers is a radix sort: one pass per byte, so uint8
        # keys (codes up to 248 bits, sentinel included) sort faster than uint16 ones, in the same order.
        keys = dist.astype(np.uint8) if self.sentinel <= np.iinfo(np.uint8).max else dist
        order = np.argsort(keys, axis=1, kind="stable")
        length = self.n_ranked if top_k is None else min(top_k, self.n_ranked)
        # Slicing (not a copy) keeps one index array alive per chunk.
        return order[:, :length]


def hamming_ranking(
    query_packed: np.ndarray,
    db_packed: np.ndarray,
    top_k: int | None = None,
    *,
    exclude_self: bool = False,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (indices, distances), each (n_q, L): database indices by Hamming distance, ties in database order.

    L is ``n_db`` (``n_db - 1`` with ``exclude_self``), or ``min(top_k, L)``.
    Indices are intp; distances use the dtype of :func:`dahash.codes.hamming_distance`.
    """
    problem = _Problem(query_packed, db_packed, exclude_self, chunk_size)
    if top_k is not None:
        top_k = _check_positive_int(top_k, "top_k")
    length = problem.n_ranked if top_k is None else min(top_k, problem.n_ranked)
    indices = np.empty((problem.n_q, length), dtype=np.intp)
    distances = np.empty((problem.n_q, length), dtype=problem.dtype)
    for rows, dist in problem.chunks():
        order = problem.ranking(dist, top_k)
        indices[rows] = order
        distances[rows] = np.take_along_axis(dist, order, axis=1)
    return indices, distances


def average_precisions(
    query_packed: np.ndarray,
    query_labels: np.ndarray,
    db_packed: np.ndarray,
    db_labels: np.ndarray,
    *,
    top_k: int | None = None,
    exclude_self: bool = False,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Return the per-query average precision (float64, nan for a query with no relevant item ranked).

    AP_q = (1/R_q) * sum_k P@k * rel_k over the stable Hamming ranking.  With
    ``top_k`` the sum stops at rank top_k and R_q counts the relevant items
    within the top_k only (the "mAP@k" convention of the hashing literature).
    """
    problem = _Problem(query_packed, db_packed, exclude_self, chunk_size, query_labels, db_labels)
    if top_k is not None:
        top_k = _check_positive_int(top_k, "top_k")
    ap = np.empty(problem.n_q, dtype=np.float64)
    for rows, dist in problem.chunks():
        relevant = problem.relevance(rows)
        order = problem.ranking(dist, top_k)
        ranked_rel = _gather_rows(relevant, order)
        del order, relevant
        # The k-th relevant item of a ranking has k hits, so AP = (1/R) * sum_k k / rank_k over
        # the relevant ranks only: no cumulative sum or precision over every ranked item.
        row, pos = np.nonzero(ranked_rel)
        del ranked_rel
        n_rows = rows.stop - rows.start
        n_relevant = np.bincount(row, minlength=n_rows)
        first = np.cumsum(n_relevant) - n_relevant
        k = np.arange(1, len(row) + 1, dtype=np.float64) - np.repeat(first, n_relevant)
        sums = np.bincount(row, weights=k / (pos + 1.0), minlength=n_rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            ap[rows] = np.where(n_relevant > 0, sums / n_relevant, np.nan)
    return ap


# Rankings at least this long are gathered row by row (see _gather_rows).
_ROW_GATHER_MIN = 4096


def _gather_rows(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``np.take_along_axis(values, order, axis=1)``; for long rows one ``np.take`` per row, which
    is 2-3x faster than the broadcast fancy index of take_along_axis (benchmarks/README.md)."""
    if order.shape[1] < _ROW_GATHER_MIN:
        return np.take_along_axis(values, order, axis=1)
    out = np.empty(order.shape, dtype=values.dtype)
    for r in range(order.shape[0]):
        np.take(values[r], order[r], out=out[r])
    return out


def mean_average_precision(
    query_packed: np.ndarray,
    query_labels: np.ndarray,
    db_packed: np.ndarray,
    db_labels: np.ndarray,
    *,
    top_k: int | None = None,
    exclude_self: bool = False,
    chunk_size: int | None = None,
) -> float:
    """Return mAP: the mean of :func:`average_precisions` over queries with a relevant item (0.0 if none)."""
    ap = average_precisions(
        query_packed,
        query_labels,
        db_packed,
        db_labels,
        top_k=top_k,
        exclude_self=exclude_self,
        chunk_size=chunk_size,
    )
    valid = ~np.isnan(ap)
    return float(ap[valid].mean()) if valid.any() else 0.0


def precision_recall_curve(
    query_packed: np.ndarray,
    query_labels: np.ndarray,
    db_packed: np.ndarray,
    db_labels: np.ndarray,
    *,
    n_bits: int | None = None,
    exclude_self: bool = False,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (precision, recall, radii) of Hamming-radius retrieval for radii r = 0..n_bits.

    For each query, retrieved(r) is the set of database items within distance r.
    precision[r] is the mean of relevant_retrieved/retrieved over queries with
    retrieved(r) > 0 (nan if there is none); recall[r] is the mean of
    relevant_retrieved/total_relevant over queries with at least one relevant
    item (nan if there is none).  ``n_bits`` defaults to 8 * bytes per code.

    Args:
        n_bits: code length; distances above it mean non-zero padding bits and raise DataError.
    """
    problem = _Problem(query_packed, db_packed, exclude_self, chunk_size, query_labels, db_labels)
    n_bits = 8 * problem.n_bytes if n_bits is None else check_n_bits(n_bits, problem.n_bytes)
    # Bins 0..n_bits plus one for the excluded self (sentinel) and anything beyond it.
    n_bins = problem.sentinel + 1
    precision_sum = np.zeros(n_bits + 1)
    precision_count = np.zeros(n_bits + 1, dtype=np.int64)
    recall_sum = np.zeros(n_bits + 1)
    recall_count = 0
    for rows, dist in problem.chunks():
        n_rows = dist.shape[0]
        # Offsetting each row's distances into its own bin range turns one
        # bincount into per-query histograms, with no loop over queries.
        flat = dist.astype(np.intp)
        flat += (np.arange(n_rows, dtype=np.intp) * n_bins)[:, None]
        relevant = problem.relevance(rows)
        hist_all = np.bincount(flat.ravel(), minlength=n_rows * n_bins).reshape(n_rows, n_bins)
        hist_rel = np.bincount(flat[relevant], minlength=n_rows * n_bins).reshape(n_rows, n_bins)
        del flat, relevant
        if hist_all[:, n_bits + 1 : problem.sentinel].any():
            raise DataError(
                f"a Hamming distance exceeds n_bits={n_bits}: "
                "n_bits is too small or the padding bits are not zero"
            )
        retrieved = np.cumsum(hist_all[:, : n_bits + 1], axis=1)
        rel_retrieved = np.cumsum(hist_rel[:, : n_bits + 1], axis=1)
        # The sentinel bin (self when excluded) is never relevant-retrievable.
        total_relevant = hist_rel[:, : problem.sentinel].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = rel_retrieved / retrieved
        has_retrieved = retrieved > 0
        precision_sum += np.where(has_retrieved, precision, 0.0).sum(axis=0)
        precision_count += has_retrieved.sum(axis=0)
        has_relevant = total_relevant > 0
        recall_sum += (rel_retrieved[has_relevant] / total_relevant[has_relevant, None]).sum(axis=0)
        recall_count += int(has_relevant.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        precision_curve = precision_sum / precision_count
    recall_curve = recall_sum / recall_count if recall_count else np.full(n_bits + 1, np.nan)
    return precision_curve, recall_curve, np.arange(n_bits + 1)


def precision_at_k(
    query_packed: np.ndarray,
    query_labels: np.ndarray,
    db_packed: np.ndarray,
    db_labels: np.ndarray,
    k: int,
    *,
    exclude_self: bool = False,
    chunk_size: int | None = None,
) -> float:
    """Return the mean over all queries of the fraction of relevant items among the top k of the stable ranking.

    A k larger than the ranked list (n_db, or n_db - 1 with ``exclude_self``)
    uses the whole list, i.e. the denominator is min(k, list length).
    """
    problem = _Problem(query_packed, db_packed, exclude_self, chunk_size, query_labels, db_labels)
    k = _check_positive_int(k, "k")
    total = 0.0
    for rows, dist in problem.chunks():
        order = problem.ranking(dist, k)
        hits = _gather_rows(problem.relevance(rows), order).sum(axis=1)
        total += float((hits / order.shape[1]).sum())
    return total / problem.n_q


def precision_within_radius(
    query_packed: np.ndarray,
    query_labels: np.ndarray,
    db_packed: np.ndarray,
    db_labels: np.ndarray,
    radius: int = 2,
    *,
    exclude_self: bool = False,
    chunk_size: int | None = None,
) -> float:
    """Return the mean over all queries of relevant/retrieved among database items within Hamming ``radius``.

    A query retrieving nothing within the radius contributes precision 0, the
    usual convention of deep-hashing evaluations (e.g. DPSH, DHN).
    """
    problem = _Problem(query_packed, db_packed, exclude_self, chunk_size, query_labels, db_labels)
    radius = _check_positive_int(radius, "radius", allow_zero=True)
    # Keep the excluded self (at the sentinel) outside every radius.
    radius = min(radius, problem.sentinel - 1)
    total = 0.0
    for rows, dist in problem.chunks():
        within = dist <= radius
        retrieved = within.sum(axis=1)
        np.logical_and(within, problem.relevance(rows), out=within)
        rel_retrieved = within.sum(axis=1)
        total += float((rel_retrieved[retrieved > 0] / retrieved[retrieved > 0]).sum())
    return total / problem.n_q
