"""Compiled (numba) kernels of the retrieval metrics: Hamming rankings by counting, not sorting.

A Hamming distance between codes of ``n_bytes`` bytes takes one of ``n_dist = 8 * n_bytes + 1``
values, so a query's stable ranking (ties in database order) is a counting sort: with
``before[d]`` the number of ranked items at a distance below ``d`` and ``p`` an item's position
among the items at its distance, in database order (1-based), the item's rank is ``before[d] + p``.

Each kernel makes one pass over the database per query (two for :func:`counting_ranking`), in
tiles of ``TILE`` items: XOR + popcount of the tile into a small buffer, a loop the compiler
vectorises (AVX-512 ``vpopcntq`` where the CPU has it), then a scalar pass over the buffer that
counts the items per *key*, ``2 * distance + relevant`` (the distance alone in
:func:`counting_ranking`; :func:`distance_histograms` counts into four
interleaved histograms, item ``j`` into histogram ``j % 4``, which measured a little faster).
The excluded self gets a key of its own (``void``) that no sum reads.  Nothing of size
n_q x n_db is held, and per query only O(n_dist) counters and O(largest class) relevant items.

Inputs, of one type each so that every kernel compiles once (``cache=True`` keeps the machine
code between processes):

* ``q_words``: (n, n_words) uint64, C order: the queries' codes as 64-bit words;
* ``q_ids``: (n,) int32 class ids of the queries (-1: a class absent from the database);
* ``first``: the index of ``q_words[0]`` in the full query set (for ``exclude_self``);
* ``db_words_t``: (n_words, n_db) uint64, C order: the database's words, transposed, so that the
  tile loop reads one word of consecutive items at unit stride;
* ``db_ids``: (n_db,) int32 class ids of the database; equal ids mean relevant;
* ``exclude_self``: leave database item ``first + r`` out of query ``r``'s ranking.

Queries are spread over numba's threads (``numba.set_num_threads``, ``NUMBA_NUM_THREADS``); each
query's result depends on that query alone, so no result depends on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

__all__ = ["TILE", "popcount64", "ranked_relevant", "distance_histograms", "counting_ranking"]

# Database items per tile: the tile's keys (uint32, 4 KiB) stay in L1 between the two loops.
TILE = 1024
# Interleaved histograms per query in distance_histograms.
_LANES = 4


@intrinsic
def popcount64(typingctx, x):  # noqa: ARG001 (numba's intrinsic protocol)
    """Number of set bits of a uint64, as int64 (LLVM's ctpop: one instruction where the CPU has it)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.ctpop(args[0])

    return types.int64(types.uint64), codegen


@njit(cache=True, inline="always")
def _tile_distances(q_words, r, db_words_t, t0, t1, buf):
    """buf[: t1 - t0] = Hamming distances between query row ``r`` and database items t0..t1-1."""
    # Slices, not t0 + j indices: an index that could be negative gets numba's wraparound
    # check, which keeps LLVM from vectorising the loop (8x slower).
    n = t1 - t0
    q = q_words[r, 0]
    seg = db_words_t[0, t0:t1]
    for j in range(n):
        buf[j] = np.uint32(popcount64(q ^ seg[j]))
    for w in range(1, q_words.shape[1]):
        q = q_words[r, w]
        seg = db_words_t[w, t0:t1]
        for j in range(n):
            buf[j] += np.uint32(popcount64(q ^ seg[j]))


@njit(cache=True, inline="always")
def _tile_distances_but(q_words, r, db_words_t, t0, t1, buf, skip, void):
    """:func:`_tile_distances`, with ``void`` for item ``skip`` (the excluded self)."""
    _tile_distances(q_words, r, db_words_t, t0, t1, buf)
    if t0 <= skip < t1:
        buf[skip - t0] = void


@njit(cache=True, inline="always")
def _tile_keys(q_words, q_ids, r, db_words_t, db_ids, t0, t1, buf, skip, void):
    """buf[: t1 - t0] = 2 * distance + relevant for items t0..t1-1; ``void`` for item ``skip``."""
    _tile_distances(q_words, r, db_words_t, t0, t1, buf)
    label = q_ids[r]
    ids = db_ids[t0:t1]
    for j in range(t1 - t0):
        buf[j] = np.uint32(2) * buf[j] + np.uint32(ids[j] == label)
    if t0 <= skip < t1:
        buf[skip - t0] = void


@njit(cache=True, parallel=True)
def ranked_relevant(q_words, q_ids, first, db_words_t, db_ids, exclude_self, length, n_dist, class_sizes):
    """Per query: (AP, number of relevant items) over the top ``length`` of its stable ranking.

    AP = (1/R) * sum of hits/rank over the R relevant items ranked within the top ``length``,
    summed in ranked order (nan when R = 0).  ``class_sizes[c]``: the database items of class id c.
    """
    n_rows = q_words.shape[0]
    n_db = db_words_t.shape[1]
    void = np.uint32(2 * n_dist)
    ap = np.empty(n_rows, dtype=np.float64)
    hits = np.zeros(n_rows, dtype=np.int64)
    for r in prange(n_rows):
        skip = first + r if exclude_self else -1
        counts = np.zeros(2 * n_dist + 1, dtype=np.int32)
        # The query's relevant items, in database order: distance and position within it.
        n_max = class_sizes[q_ids[r]] if q_ids[r] >= 0 else 0
        rel_d = np.empty(max(n_max, 1), dtype=np.int64)
        rel_p = np.empty(max(n_max, 1), dtype=np.int64)
        buf = np.empty(TILE, dtype=np.uint32)
        n_rel = 0
        for t0 in range(0, n_db, TILE):
            t1 = min(t0 + TILE, n_db)
            _tile_keys(q_words, q_ids, r, db_words_t, db_ids, t0, t1, buf, skip, void)
            for j in range(t1 - t0):
                key = buf[j]
                counts[key] += 1
                if key & np.uint32(1):
                    # A relevant item: its position among the items at its distance so far.
                    d = key >> np.uint32(1)
                    rel_d[n_rel] = d
                    rel_p[n_rel] = counts[2 * d] + counts[2 * d + 1]
                    n_rel += 1
        # before[d]: ranked items at a smaller distance; slot[d]: the ranked slot of bin d's next
        # relevant item (relevant items at smaller distances come first).
        before = np.empty(n_dist, dtype=np.int64)
        slot = np.empty(n_dist, dtype=np.int64)
        below = 0
        below_rel = 0
        for d in range(n_dist):
            before[d] = below
            slot[d] = below_rel
            below += counts[2 * d] + counts[2 * d + 1]
            below_rel += counts[2 * d + 1]
        # The relevant items' ranks in ranked order (a stable counting sort by distance): the
        # k-th (0-based) has k + 1 hits.
        rank = np.empty(max(n_rel, 1), dtype=np.int64)
        for k in range(n_rel):
            d = rel_d[k]
            rank[slot[d]] = before[d] + rel_p[k]
            slot[d] += 1
        total = 0.0
        n_hits = 0
        for k in range(n_rel):
            if rank[k] > length:
                break
            n_hits += 1
            total += (k + 1.0) / rank[k]
        hits[r] = n_hits
        ap[r] = total / n_hits if n_hits > 0 else np.nan
    return ap, hits


@njit(cache=True, parallel=True)
def distance_histograms(q_words, q_ids, first, db_words_t, db_ids, exclude_self, n_dist):
    """(all, relevant): int64 (n, n_dist) counts of each query's ranked items per Hamming distance."""
    n_rows = q_words.shape[0]
    n_db = db_words_t.shape[1]
    void = np.uint32(2 * n_dist)
    hist_all = np.zeros((n_rows, n_dist), dtype=np.int64)
    hist_rel = np.zeros((n_rows, n_dist), dtype=np.int64)
    for r in prange(n_rows):
        skip = first + r if exclude_self else -1
        counts = np.zeros((_LANES, 2 * n_dist + 1), dtype=np.int32)
        buf = np.empty(TILE, dtype=np.uint32)
        for t0 in range(0, n_db, TILE):
            t1 = min(t0 + TILE, n_db)
            _tile_keys(q_words, q_ids, r, db_words_t, db_ids, t0, t1, buf, skip, void)
            n = t1 - t0
            n4 = n - n % _LANES
            for j in range(0, n4, _LANES):
                counts[0, buf[j]] += 1
                counts[1, buf[j + 1]] += 1
                counts[2, buf[j + 2]] += 1
                counts[3, buf[j + 3]] += 1
            for j in range(n4, n):
                counts[0, buf[j]] += 1
        for d in range(n_dist):
            n_d_rel = 0
            n_d = 0
            for lane in range(_LANES):
                n_d_rel += counts[lane, 2 * d + 1]
                n_d += counts[lane, 2 * d]
            hist_rel[r, d] = n_d_rel
            hist_all[r, d] = n_d + n_d_rel
    return hist_all, hist_rel


@njit(cache=True, parallel=True)
def counting_ranking(q_words, first, db_words_t, exclude_self, n_dist, indices, distances):
    """Fill ``indices[r]`` and ``distances[r]`` with query r's stable ranking, cut to their width."""
    n_rows = q_words.shape[0]
    n_db = db_words_t.shape[1]
    length = indices.shape[1]
    void = np.uint32(n_dist)
    for r in prange(n_rows):
        skip = first + r if exclude_self else -1
        counts = np.zeros(n_dist + 1, dtype=np.int64)
        buf = np.empty(TILE, dtype=np.uint32)
        for t0 in range(0, n_db, TILE):
            t1 = min(t0 + TILE, n_db)
            _tile_distances_but(q_words, r, db_words_t, t0, t1, buf, skip, void)
            for j in range(t1 - t0):
                counts[buf[j]] += 1
        # next_slot[d]: the output slot of the next item at distance d; items beyond ``last``
        # (the distance at which the output fills up) are never written.
        next_slot = np.empty(n_dist + 1, dtype=np.int64)
        below = 0
        last = n_dist
        for d in range(n_dist):
            next_slot[d] = below
            below += counts[d]
            if below >= length and last == n_dist:
                last = d
        row_idx = indices[r]
        row_dist = distances[r]
        for t0 in range(0, n_db, TILE):
            t1 = min(t0 + TILE, n_db)
            _tile_distances_but(q_words, r, db_words_t, t0, t1, buf, skip, void)
            for j in range(t1 - t0):
                d = buf[j]
                if d > last:
                    continue
                pos = next_slot[d]
                next_slot[d] = pos + 1
                if pos < length:
                    row_idx[pos] = t0 + j
                    row_dist[pos] = d
