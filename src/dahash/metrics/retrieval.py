"""Retrieval evaluation of Venkateswara et al., CVPR 2017, Sec. 5.4 (mAP and precision-recall on Hamming ranking).

Protocol (as in the authors' implementation): the queries are the target-domain
hash codes, the database is the source-domain hash codes, and a database item
is relevant to a query when both carry the same class label.  The database is
ranked per query by Hamming distance with ties broken in database order (a
stable sort).  For the within-domain protocol (query set == database set) pass
``exclude_self=True``: query ``i`` is then removed from its own ranking.

All functions take packed codes (see :mod:`dahash.codes`) and 1-D integer label
arrays.  The work is done by the compiled kernels of
:mod:`dahash.metrics.hamming_kernels`, spread over numba's threads (one per core unless
``NUMBA_NUM_THREADS`` or ``numba.set_num_threads`` say otherwise): a Hamming distance takes
only ``8 * bytes + 1`` values, so each query's ranking is a counting sort over those values
(counts per distance, then ranks from their prefix sums), never a sort of the database.  The
working memory is O(threads * (bits + largest class)), never O(n_q * n_db), except for the
output of :func:`hamming_ranking`, which is that size by nature.  ``chunk_size`` groups the
queries whose results are summed together (as the numpy implementation before the kernels did,
so that the results are the same to the last bit for the same ``chunk_size``); it no longer
sets the working memory.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from dahash.codes import as_packed, check_n_bits, distance_dtype, to_words
from dahash.errors import DataError
from dahash.metrics.hamming_kernels import counting_ranking, distance_histograms, ranked_relevant

__all__ = [
    "hamming_ranking",
    "average_precisions",
    "mean_average_precision",
    "precision_recall_curve",
    "precision_at_k",
    "precision_within_radius",
    "default_chunk_size",
]

# Target working memory of one chunk of queries in the numpy implementation that preceded the
# kernels; default_chunk_size still derives the default chunk from it, so that results keep
# their summation order.  The kernels' working memory is far below it.
CHUNK_MEMORY_BYTES = 256 * 2**20

# Upper bound on the bytes per (query, database item) pair of a chunk in that implementation
# (distances, argsort indices and scratch, relevance masks, hits, precisions), rounded up.
BYTES_PER_PAIR = 48

# Queries per kernel call (whole chunks): enough to keep every thread busy, few enough that a
# call takes about a second at most.  Per-query outputs of a call stay within _BLOCK_BYTES.
_BLOCK_QUERIES = 2048
_BLOCK_BYTES = 64 * 2**20


def default_chunk_size(n_db: int) -> int:
    """Queries per chunk: those whose working set would fill CHUNK_MEMORY_BYTES at BYTES_PER_PAIR."""
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


def _class_ids(query_labels: np.ndarray, db_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query ids, database ids, class sizes): int32 ids equal exactly where the labels are equal,
    -1 for a query label absent from the database; the size of each database class (int64).

    One id dtype whatever the labels' dtypes keeps the kernels to one compiled version each.
    """
    common = np.result_type(query_labels.dtype, db_labels.dtype)
    if not np.issubdtype(common, np.integer):
        # int64 with uint64 promotes to float64, which would merge labels above 2**53: compare
        # them as Python integers instead (exactly as numpy's == does).
        common = np.dtype(object)
    query = query_labels.astype(common, copy=False)
    classes, db_ids = np.unique(db_labels.astype(common, copy=False), return_inverse=True)
    db_ids = db_ids.reshape(-1)
    pos = np.minimum(np.searchsorted(classes, query), len(classes) - 1)
    found = np.asarray(classes[pos] == query, dtype=bool)
    query_ids = np.where(found, pos, -1).astype(np.int32)
    sizes = np.bincount(db_ids, minlength=len(classes)).astype(np.int64)
    return query_ids, db_ids.astype(np.int32), sizes


class _Problem:
    """Validated inputs shared by every metric: codes as kernel-ready words, class ids, chunking."""

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
        # Distances 0..8 * n_bytes (the zero padding of to_words adds nothing).
        self.n_dist = 8 * self.n_bytes + 1
        # Fresh C-ordered, writable copies: the kernels' one compiled signature.  The database
        # words are transposed so that a tile reads one word of consecutive items.
        self.query_words = np.array(to_words(query), order="C")
        self.db_words_t = np.array(to_words(db).T, order="C")
        if query_labels is not None:
            query_labels = _check_labels(query_labels, self.n_q, "query_labels", "query_packed")
            db_labels = _check_labels(db_labels, self.n_db, "db_labels", "db_packed")
            self.query_ids, self.db_ids, self.class_sizes = _class_ids(query_labels, db_labels)

    def blocks(self, bytes_per_query: int = 0) -> Iterator[slice]:
        """Row slices of whole chunks, one kernel call each: about _BLOCK_QUERIES queries, fewer
        when ``bytes_per_query`` of output would exceed _BLOCK_BYTES (never under one chunk)."""
        rows = _BLOCK_QUERIES
        if bytes_per_query:
            rows = min(rows, max(1, _BLOCK_BYTES // bytes_per_query))
        step = max(1, rows // self.chunk_size) * self.chunk_size
        for start in range(0, self.n_q, step):
            yield slice(start, min(start + step, self.n_q))

    def chunks(self, block: slice) -> Iterator[tuple[slice, slice]]:
        """(rows of the query set, the same rows within ``block``) of each chunk in ``block``."""
        for start in range(block.start, block.stop, self.chunk_size):
            stop = min(start + self.chunk_size, block.stop)
            yield slice(start, stop), slice(start - block.start, stop - block.start)

    def ranked_relevant(self, rows: slice, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(AP, relevant items) of each query in ``rows`` over the top ``length`` of its ranking."""
        return ranked_relevant(
            self.query_words[rows], self.query_ids[rows], rows.start, self.db_words_t, self.db_ids,
            self.exclude_self, length, self.n_dist, self.class_sizes,
        )

    def histograms(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """(all, relevant): per query in ``rows``, its ranked items per Hamming distance 0..8 * n_bytes."""
        return distance_histograms(
            self.query_words[rows], self.query_ids[rows], rows.start, self.db_words_t, self.db_ids,
            self.exclude_self, self.n_dist,
        )


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
    for rows in problem.blocks():
        counting_ranking(
            problem.query_words[rows], rows.start, problem.db_words_t, problem.exclude_self,
            problem.n_dist, indices[rows], distances[rows],
        )
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
    length = problem.n_ranked if top_k is None else min(top_k, problem.n_ranked)
    ap = np.empty(problem.n_q, dtype=np.float64)
    for rows in problem.blocks():
        # The k-th relevant item of a ranking has k hits, so AP = (1/R) * sum_k k / rank_k over
        # the relevant items only, summed in ranked order.
        ap[rows] = problem.ranked_relevant(rows, length)[0]
    return ap


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
    precision_sum = np.zeros(n_bits + 1)
    precision_count = np.zeros(n_bits + 1, dtype=np.int64)
    recall_sum = np.zeros(n_bits + 1)
    recall_count = 0
    # Two int64 histograms per query come back from each kernel call.
    for block in problem.blocks(bytes_per_query=2 * 8 * problem.n_dist):
        block_all, block_rel = problem.histograms(block)
        if block_all[:, n_bits + 1 :].any():
            raise DataError(
                f"a Hamming distance exceeds n_bits={n_bits}: "
                "n_bits is too small or the padding bits are not zero"
            )
        for _, local in problem.chunks(block):
            hist_all, hist_rel = block_all[local], block_rel[local]
            retrieved = np.cumsum(hist_all[:, : n_bits + 1], axis=1)
            rel_retrieved = np.cumsum(hist_rel[:, : n_bits + 1], axis=1)
            # The excluded self is in no histogram.
            total_relevant = hist_rel.sum(axis=1)
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
    length = min(k, problem.n_ranked)
    total = 0.0
    for block in problem.blocks():
        hits = problem.ranked_relevant(block, length)[1]
        for _, local in problem.chunks(block):
            total += float((hits[local] / length).sum())
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
    # Every distance is at most 8 * n_bytes; the excluded self is in no histogram.
    radius = min(radius, problem.n_dist - 1)
    total = 0.0
    for block in problem.blocks(bytes_per_query=2 * 8 * problem.n_dist):
        block_all, block_rel = problem.histograms(block)
        retrieved_all = block_all[:, : radius + 1].sum(axis=1)
        rel_retrieved_all = block_rel[:, : radius + 1].sum(axis=1)
        for _, local in problem.chunks(block):
            retrieved, rel_retrieved = retrieved_all[local], rel_retrieved_all[local]
            total += float((rel_retrieved[retrieved > 0] / retrieved[retrieved > 0]).sum())
    return total / problem.n_q
