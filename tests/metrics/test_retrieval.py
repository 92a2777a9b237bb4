"""Tests of dahash.metrics.retrieval against hand-computed cases and a naive reference."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any, Callable

import numpy as np
import pytest

from dahash.codes import pack_codes
from dahash.errors import DataError
from dahash.metrics import (
    average_precisions,
    default_chunk_size,
    hamming_ranking,
    mean_average_precision,
    precision_at_k,
    precision_recall_curve,
    precision_within_radius,
)
from dahash.metrics import retrieval


def bits(*strings: str) -> np.ndarray:
    """Pack codes written as bit strings, e.g. bits("0001", "1111")."""
    return pack_codes(np.array([[1 if c == "1" else -1 for c in s] for s in strings]))


def labels(*values: int) -> np.ndarray:
    """An int64 label array."""
    return np.array(values, dtype=np.int64)


# Shared 4-bit example.  Database (index: code, label):
#   0: 0001 l0    1: 0011 l1    2: 0000 l1    3: 0111 l0    4: 1000 l0
DB = bits("0001", "0011", "0000", "0111", "1000")
DB_LABELS = labels(0, 1, 1, 0, 0)
# q1 = 0000 (label 0): distances [1, 2, 0, 3, 1]
#   stable ranking 2(d0) 0(d1) 4(d1) 1(d2) 3(d3); rel = [0, 1, 1, 0, 1], R = 3
#   AP = (P@2 + P@3 + P@5) / 3 = (1/2 + 2/3 + 3/5) / 3 = 53/90
# q2 = 1111 (label 1): distances [3, 2, 4, 1, 3]
#   stable ranking 3(d1) 1(d2) 0(d3) 4(d3) 2(d4); rel = [0, 1, 0, 0, 1], R = 2
#   AP = (P@2 + P@5) / 2 = (1/2 + 2/5) / 2 = 9/20
Q = bits("0000", "1111")
Q_LABELS = labels(0, 1)
AP_Q1 = 53 / 90
AP_Q2 = 9 / 20


def test_hamming_ranking_hand_case() -> None:
    indices, distances = hamming_ranking(Q, DB)
    np.testing.assert_array_equal(indices, [[2, 0, 4, 1, 3], [3, 1, 0, 4, 2]])
    np.testing.assert_array_equal(distances, [[0, 1, 1, 2, 3], [1, 2, 3, 3, 4]])
    top_idx, top_dist = hamming_ranking(Q, DB, top_k=3)
    np.testing.assert_array_equal(top_idx, [[2, 0, 4], [3, 1, 0]])
    np.testing.assert_array_equal(top_dist, [[0, 1, 1], [1, 2, 3]])
    assert hamming_ranking(Q, DB, top_k=99)[0].shape == (2, 5)


def test_average_precision_hand_case() -> None:
    ap = average_precisions(Q, Q_LABELS, DB, DB_LABELS)
    np.testing.assert_allclose(ap, [AP_Q1, AP_Q2])
    assert mean_average_precision(Q, Q_LABELS, DB, DB_LABELS) == pytest.approx(
        (AP_Q1 + AP_Q2) / 2
    )


def test_map_at_top_k_counts_relevant_within_k() -> None:
    # top 3: q1 rel = [0, 1, 1] -> R = 2, AP = (1/2 + 2/3) / 2 = 7/12
    #        q2 rel = [0, 1, 0] -> R = 1, AP = (1/2) / 1 = 1/2
    ap = average_precisions(Q, Q_LABELS, DB, DB_LABELS, top_k=3)
    np.testing.assert_allclose(ap, [7 / 12, 1 / 2])
    assert mean_average_precision(Q, Q_LABELS, DB, DB_LABELS, top_k=3) == pytest.approx(13 / 24)
    # top 1: neither query has a relevant item -> nan, and mAP over no query is 0.
    assert np.isnan(average_precisions(Q, Q_LABELS, DB, DB_LABELS, top_k=1)).all()
    assert mean_average_precision(Q, Q_LABELS, DB, DB_LABELS, top_k=1) == 0.0


def test_queries_without_relevant_items_are_left_out_of_map() -> None:
    q = bits("0000", "1111", "0101")
    q_labels = labels(0, 1, 7)  # label 7 is absent from the database
    ap = average_precisions(q, q_labels, DB, DB_LABELS)
    assert np.isnan(ap[2])
    assert mean_average_precision(q, q_labels, DB, DB_LABELS) == pytest.approx(
        (AP_Q1 + AP_Q2) / 2
    )
    assert mean_average_precision(q[2:], q_labels[2:], DB, DB_LABELS) == 0.0


# Tie case: query 0000 (label 0) against A = 0001 l1 (d1), B = 0010 l0 (d1), C = 1111 l0 (d4).
#   order A, B, C:  ranking A B C, rel = [0, 1, 1]: AP = (1/2 + 2/3) / 2 = 7/12, P@1 = 0
#   order C, B, A:  ranking B A C, rel = [1, 0, 1]: AP = (1/1 + 2/3) / 2 = 5/6,  P@1 = 1
TIE_Q = bits("0000")
TIE_Q_LABELS = labels(0)
TIE_DB = bits("0001", "0010", "1111")
TIE_DB_LABELS = labels(1, 0, 0)


def test_ties_are_broken_in_database_order() -> None:
    args = (TIE_Q, TIE_Q_LABELS, TIE_DB, TIE_DB_LABELS)
    rev = (TIE_Q, TIE_Q_LABELS, TIE_DB[::-1], TIE_DB_LABELS[::-1])
    assert mean_average_precision(*args) == pytest.approx(7 / 12)
    assert mean_average_precision(*rev) == pytest.approx(5 / 6)
    assert precision_at_k(*args, 1) == 0.0
    assert precision_at_k(*rev, 1) == 1.0
    np.testing.assert_array_equal(hamming_ranking(TIE_Q, TIE_DB)[0], [[0, 1, 2]])
    np.testing.assert_array_equal(hamming_ranking(TIE_Q, TIE_DB[::-1])[0], [[1, 2, 0]])


def test_large_tie_groups_keep_database_order() -> None:
    # Hundreds of equal distances: numpy's default (unstable) sort would reorder them.
    rng = np.random.default_rng(3)
    db = bits(*["".join(rng.choice(["0", "1"], size=8)) for _ in range(400)])
    q = bits("00000000", "11110000")
    indices, distances = hamming_ranking(q, db)
    for row in range(2):
        full = np.array([bin(int(x) ^ int(q[row, 0])).count("1") for x in db[:, 0]])
        # lexsort on (index, distance): by distance, then by database index.
        expected = np.lexsort((np.arange(400), full))
        np.testing.assert_array_equal(indices[row], expected)
        np.testing.assert_array_equal(distances[row], full[expected])


# Within-domain set (exclude_self):
#   0: 0000 l0   1: 0001 l1   2: 0011 l0   3: 1111 l1
# distances: row0 [0,1,2,4]  row1 [1,0,1,3]  row2 [2,1,0,2]  row3 [4,3,2,0]
#   q0: ranking 1 2 3        rel [0,1,0]  AP = 1/2
#   q1: ranking 0 2 3 (tie)  rel [0,0,1]  AP = 1/3
#   q2: ranking 1 0 3 (tie)  rel [0,1,0]  AP = 1/2
#   q3: ranking 2 1 0        rel [0,1,0]  AP = 1/2
#   mAP = (1/2 + 1/3 + 1/2 + 1/2) / 4 = 11/24
SELF = bits("0000", "0001", "0011", "1111")
SELF_LABELS = labels(0, 1, 0, 1)


def test_exclude_self_hand_case() -> None:
    indices, distances = hamming_ranking(SELF, SELF, exclude_self=True)
    np.testing.assert_array_equal(indices, [[1, 2, 3], [0, 2, 3], [1, 0, 3], [2, 1, 0]])
    np.testing.assert_array_equal(distances, [[1, 2, 4], [1, 1, 3], [1, 2, 2], [2, 3, 4]])
    args = (SELF, SELF_LABELS, SELF, SELF_LABELS)
    np.testing.assert_allclose(
        average_precisions(*args, exclude_self=True), [1 / 2, 1 / 3, 1 / 2, 1 / 2]
    )
    assert mean_average_precision(*args, exclude_self=True) == pytest.approx(11 / 24)
    # Without exclusion q0 ranks itself first: rel [1,0,1,0], AP = (1 + 2/3) / 2 = 5/6.
    assert average_precisions(*args)[0] == pytest.approx(5 / 6)
    # Each query has exactly 1 relevant item among its 3 others.
    assert precision_at_k(*args, 10, exclude_self=True) == pytest.approx(1 / 3)
    # Radius 0 retrieves only the query itself, which is excluded: precision 0 for all.
    assert precision_within_radius(*args, 0, exclude_self=True) == 0.0
    assert precision_within_radius(*args, 0) == 1.0
    precision, recall, _ = precision_recall_curve(*args, exclude_self=True, n_bits=4)
    assert precision[-1] == pytest.approx(1 / 3)
    assert recall[-1] == pytest.approx(1.0)
    assert np.isnan(precision[0]) and recall[0] == 0.0


def test_exclude_self_removes_the_query_not_its_duplicate() -> None:
    codes = bits("0000", "0000", "1111")
    indices, distances = hamming_ranking(codes, codes, exclude_self=True)
    np.testing.assert_array_equal(indices, [[1, 2], [0, 2], [0, 1]])
    np.testing.assert_array_equal(distances, [[0, 4], [0, 4], [4, 4]])


def test_exclude_self_requires_same_sizes() -> None:
    with pytest.raises(DataError, match="n_q == n_db"):
        mean_average_precision(Q, Q_LABELS, DB, DB_LABELS, exclude_self=True)
    with pytest.raises(DataError, match="n_q == n_db"):
        hamming_ranking(Q, DB, exclude_self=True)


def test_precision_recall_curve_hand_case() -> None:
    # q1 distances [1,2,0,3,1], relevant items 0,3,4 (total 3):
    #   retrieved(r=0..4) = 1,3,4,5,5  relevant retrieved = 0,2,2,3,3
    #   precision = 0, 2/3, 1/2, 3/5, 3/5   recall = 0, 2/3, 2/3, 1, 1
    # q2 distances [3,2,4,1,3], relevant items 1,2 (total 2):
    #   retrieved = 0,1,2,4,5  relevant retrieved = 0,0,1,1,2
    #   precision = -, 0, 1/2, 1/4, 2/5     recall = 0, 0, 1/2, 1/2, 1
    precision, recall, radii = precision_recall_curve(Q, Q_LABELS, DB, DB_LABELS, n_bits=4)
    np.testing.assert_array_equal(radii, [0, 1, 2, 3, 4])
    # r=0 averages over q1 only (q2 retrieves nothing).
    np.testing.assert_allclose(precision, [0, 1 / 3, 1 / 2, (3 / 5 + 1 / 4) / 2, 1 / 2])
    np.testing.assert_allclose(recall, [0, 1 / 3, 7 / 12, 3 / 4, 1])
    # n_bits defaults to the byte width: radii 0..8, flat beyond the 4 real bits.
    precision8, recall8, radii8 = precision_recall_curve(Q, Q_LABELS, DB, DB_LABELS)
    np.testing.assert_array_equal(radii8, np.arange(9))
    np.testing.assert_allclose(precision8[4:], 1 / 2)
    np.testing.assert_allclose(recall8[4:], 1.0)


def test_precision_recall_curve_endpoint_and_empty_radius() -> None:
    # At r = n_bits everything is retrieved: recall 1, precision = fraction relevant.
    precision, recall, _ = precision_recall_curve(Q[1:], Q_LABELS[1:], DB, DB_LABELS, n_bits=4)
    assert recall[-1] == 1.0
    assert precision[-1] == pytest.approx(2 / 5)
    # q2 retrieves nothing at radius 0: precision is undefined there.
    assert np.isnan(precision[0])


def test_precision_recall_curve_query_without_relevant_items() -> None:
    # A label-7 query (code 0000, same distances as q1) counts for precision (0 when it
    # retrieves anything) but not for recall.
    q = bits("0000", "0000")
    q_labels = labels(0, 7)
    precision, recall, _ = precision_recall_curve(q, q_labels, DB, DB_LABELS, n_bits=4)
    np.testing.assert_allclose(precision, np.array([0, 2 / 3, 1 / 2, 3 / 5, 3 / 5]) / 2)
    np.testing.assert_allclose(recall, [0, 2 / 3, 2 / 3, 1, 1])
    precision, recall, _ = precision_recall_curve(q[1:], q_labels[1:], DB, DB_LABELS, n_bits=4)
    assert np.isnan(recall).all()


def test_precision_recall_curve_rejects_bad_n_bits() -> None:
    with pytest.raises(DataError, match="n_bits"):
        precision_recall_curve(Q, Q_LABELS, DB, DB_LABELS, n_bits=9)
    # Distances of up to 4 do not fit 3 bits (as if the padding were not zero).
    with pytest.raises(DataError, match="exceeds n_bits"):
        precision_recall_curve(Q, Q_LABELS, DB, DB_LABELS, n_bits=3)


def test_precision_at_k_hand_case() -> None:
    args = (Q, Q_LABELS, DB, DB_LABELS)
    # q1 ranked rel [0,1,1,0,1], q2 ranked rel [0,1,0,0,1]
    assert precision_at_k(*args, 1) == 0.0
    assert precision_at_k(*args, 4) == pytest.approx((2 / 4 + 1 / 4) / 2)
    # k > n_db uses the whole database: (3/5 + 2/5) / 2.
    assert precision_at_k(*args, 10) == pytest.approx(1 / 2)
    assert precision_at_k(*args, 10) == precision_at_k(*args, 5)


def test_precision_within_radius_query_retrieving_nothing() -> None:
    # db: 00000000 l0, 00000011 l1, 11111111 l0
    # q1 = 00000001 l0: distances 1, 1, 7 -> radius 2 retrieves 2 items, 1 relevant: 1/2
    # q2 = 11110000 l0: distances 4, 6, 4 -> retrieves nothing: precision 0
    db = bits("00000000", "00000011", "11111111")
    db_labels = labels(0, 1, 0)
    q = bits("00000001", "11110000")
    q_labels = labels(0, 0)
    assert precision_within_radius(q, q_labels, db, db_labels) == pytest.approx(1 / 4)
    assert precision_within_radius(q, q_labels, db, db_labels, radius=0) == 0.0
    assert precision_within_radius(q, q_labels, db, db_labels, radius=8) == pytest.approx(2 / 3)


def test_precision_within_radius_shared_example() -> None:
    # q1 within 2: items 0,1,2,4 (labels 0,1,1,0) -> 2/4; q2 within 2: items 1,3 -> 1/2.
    assert precision_within_radius(Q, Q_LABELS, DB, DB_LABELS, 2) == pytest.approx(1 / 2)


# ---------------------------------------------------------------- naive reference


def _naive_ranking(
    q_row: np.ndarray, db: np.ndarray, reverse_ties: bool = False
) -> tuple[list[int], list[int]]:
    """Stable ranking and distances of one query, with Python ints only (``reverse_ties``: ties in
    reverse database order instead, a wrong ranking for the guard test)."""
    q_int = int.from_bytes(q_row.tobytes(), "big")
    dist = [bin(q_int ^ int.from_bytes(row.tobytes(), "big")).count("1") for row in db]
    if reverse_ties:
        return sorted(range(len(db)), key=lambda j: (dist[j], -j)), dist
    return sorted(range(len(db)), key=lambda j: dist[j]), dist  # Python's sort is stable


def _naive_map(
    q: np.ndarray,
    ql: np.ndarray,
    db: np.ndarray,
    dbl: np.ndarray,
    top_k: int | None = None,
    exclude_self: bool = False,
    reverse_ties: bool = False,
) -> float:
    """mAP by the definition, one query and one rank at a time."""
    aps = []
    for i in range(len(q)):
        order, _ = _naive_ranking(q[i], db, reverse_ties)
        if exclude_self:
            order.remove(i)
        if top_k is not None:
            order = order[:top_k]
        hits, total = 0, 0.0
        for rank, j in enumerate(order, start=1):
            if dbl[j] == ql[i]:
                hits += 1
                total += hits / rank
        if hits:
            aps.append(total / hits)
    return sum(aps) / len(aps) if aps else 0.0


def _naive_pr(
    q: np.ndarray, ql: np.ndarray, db: np.ndarray, dbl: np.ndarray, n_bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """PR curve by the definition, one radius and one query at a time."""
    precision, recall = [], []
    for r in range(n_bits + 1):
        p_vals, r_vals = [], []
        for i in range(len(q)):
            _, dist = _naive_ranking(q[i], db)
            retrieved = [j for j in range(len(db)) if dist[j] <= r]
            rel_ret = sum(dbl[j] == ql[i] for j in retrieved)
            n_rel = sum(dbl[j] == ql[i] for j in range(len(db)))
            if retrieved:
                p_vals.append(rel_ret / len(retrieved))
            if n_rel:
                r_vals.append(rel_ret / n_rel)
        precision.append(sum(p_vals) / len(p_vals) if p_vals else math.nan)
        recall.append(sum(r_vals) / len(r_vals) if r_vals else math.nan)
    return np.array(precision), np.array(recall)


def _random_problem(
    seed: int, n_q: int, n_db: int, n_bytes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random packed codes and labels with many distance ties."""
    rng = np.random.default_rng(seed)
    # Few distinct bits and labels give many distance ties and some label-less queries.
    db = rng.integers(0, 256, size=(n_db, n_bytes), dtype=np.uint8)
    q = rng.integers(0, 256, size=(n_q, n_bytes), dtype=np.uint8)
    q[: n_q // 2] = db[rng.integers(0, n_db, n_q // 2)]
    return q, rng.integers(0, 6, n_q), db, rng.integers(0, 5, n_db)


def test_map_matches_naive_reference_with_many_ties() -> None:
    q, ql, db, dbl = _random_problem(0, 40, 300, 1)
    assert mean_average_precision(q, ql, db, dbl) == pytest.approx(_naive_map(q, ql, db, dbl))
    assert mean_average_precision(q, ql, db, dbl, top_k=25) == pytest.approx(
        _naive_map(q, ql, db, dbl, top_k=25)
    )
    assert mean_average_precision(db, dbl, db, dbl, exclude_self=True) == pytest.approx(
        _naive_map(db, dbl, db, dbl, exclude_self=True)
    )


def test_another_tie_order_would_be_caught() -> None:
    # Guards the reference test above: on its data, ties broken in any other order than the
    # database's change mAP (the counting kernels sort nothing, so this replaces the earlier
    # guard that swapped numpy's stable argsort for quicksort).
    q, ql, db, dbl = _random_problem(0, 40, 300, 1)
    reversed_ties = _naive_map(q, ql, db, dbl, reverse_ties=True)
    assert reversed_ties != pytest.approx(_naive_map(q, ql, db, dbl), abs=1e-12)
    assert mean_average_precision(q, ql, db, dbl) != pytest.approx(reversed_ties, abs=1e-12)


def test_pr_curve_and_precisions_match_naive_reference() -> None:
    q, ql, db, dbl = _random_problem(1, 15, 120, 2)
    precision, recall, radii = precision_recall_curve(q, ql, db, dbl)
    ref_p, ref_r = _naive_pr(q, ql, db, dbl, 16)
    np.testing.assert_allclose(precision, ref_p)
    np.testing.assert_allclose(recall, ref_r)
    for k in (1, 7, 500):
        expected = []
        for i in range(len(q)):
            order, _ = _naive_ranking(q[i], db)
            top = order[:k]
            expected.append(sum(dbl[j] == ql[i] for j in top) / len(top))
        assert precision_at_k(q, ql, db, dbl, k) == pytest.approx(np.mean(expected))
    for radius in (0, 2, 5):
        expected = []
        for i in range(len(q)):
            _, dist = _naive_ranking(q[i], db)
            within = [j for j in range(len(db)) if dist[j] <= radius]
            rel = sum(dbl[j] == ql[i] for j in within)
            expected.append(rel / len(within) if within else 0.0)
        assert precision_within_radius(q, ql, db, dbl, radius) == pytest.approx(np.mean(expected))


@pytest.mark.parametrize("exclude_self", [False, True])
def test_chunk_size_does_not_change_results(exclude_self: bool) -> None:
    q, ql, db, dbl = _random_problem(2, 30, 30, 3)
    if exclude_self:
        q, ql = db, dbl
    results = []
    for chunk_size in (1, 7, None):
        kw = {"exclude_self": exclude_self, "chunk_size": chunk_size}
        results.append(
            (
                hamming_ranking(q, db, top_k=10, **kw),
                average_precisions(q, ql, db, dbl, **kw),
                precision_recall_curve(q, ql, db, dbl, n_bits=24, **kw),
                precision_at_k(q, ql, db, dbl, 5, **kw),
                precision_within_radius(q, ql, db, dbl, 8, **kw),
            )
        )
    for other in results[1:]:
        np.testing.assert_array_equal(other[0][0], results[0][0][0])
        np.testing.assert_array_equal(other[0][1], results[0][0][1])
        np.testing.assert_allclose(other[1], results[0][1], equal_nan=True)
        for got, want in zip(other[2], results[0][2]):
            np.testing.assert_allclose(got, want, equal_nan=True)
        assert other[3] == pytest.approx(results[0][3])
        assert other[4] == pytest.approx(results[0][4])


# ---------------------------------------------------------------- validation


def test_label_validation() -> None:
    with pytest.raises(DataError, match="db_labels has 4 labels"):
        mean_average_precision(Q, Q_LABELS, DB, DB_LABELS[:4])
    with pytest.raises(DataError, match="query_labels must be a 1-D integer"):
        mean_average_precision(Q, Q_LABELS.astype(float), DB, DB_LABELS)
    with pytest.raises(DataError, match="query_labels must be a 1-D integer"):
        precision_at_k(Q, Q_LABELS[:, None], DB, DB_LABELS, 1)


def test_code_and_argument_validation() -> None:
    with pytest.raises(DataError, match="db_packed"):
        mean_average_precision(Q, Q_LABELS, DB.astype(np.int32), DB_LABELS)
    with pytest.raises(DataError, match="bytes per code"):
        precision_within_radius(Q, Q_LABELS, np.zeros((5, 2), np.uint8), DB_LABELS)
    with pytest.raises(DataError, match="query_packed holds no codes"):
        hamming_ranking(Q[:0], DB)
    with pytest.raises(DataError, match="k must be >= 1"):
        precision_at_k(Q, Q_LABELS, DB, DB_LABELS, 0)
    with pytest.raises(DataError, match="chunk_size"):
        mean_average_precision(Q, Q_LABELS, DB, DB_LABELS, chunk_size=0)
    with pytest.raises(DataError, match="radius"):
        precision_within_radius(Q, Q_LABELS, DB, DB_LABELS, -1)


# ---------------------------------------------------------------- memory


def test_working_set_for_10k_by_100k_fits_2_gib() -> None:
    n_q, n_db, n_bytes = 10_000, 100_000, 8
    chunk = default_chunk_size(n_db)
    assert 1 <= chunk < n_q
    chunk_bytes = chunk * n_db * retrieval.BYTES_PER_PAIR
    inputs = (n_q + n_db) * (n_bytes + 8)  # codes + int64 labels
    # Word views and the hamming scratch buffer (uint64 XOR + uint8 counts, bounded).
    extras = (n_q + n_db) * 8 + 9 * (1 << 22)
    outputs = n_q * 8 + 2 * (64 + 1) * 8
    assert chunk_bytes <= retrieval.CHUNK_MEMORY_BYTES
    assert chunk_bytes + inputs + extras + outputs < 2 * 2**30


@pytest.mark.parametrize(
    "metric",
    [
        lambda q, ql, db, dbl, cs: mean_average_precision(q, ql, db, dbl, chunk_size=cs),
        lambda q, ql, db, dbl, cs: precision_recall_curve(q, ql, db, dbl, chunk_size=cs),
        lambda q, ql, db, dbl, cs: precision_at_k(q, ql, db, dbl, 100, chunk_size=cs),
        lambda q, ql, db, dbl, cs: precision_within_radius(q, ql, db, dbl, 2, chunk_size=cs),
    ],
    ids=["map", "pr_curve", "precision_at_k", "precision_within_radius"],
)
def test_measured_peak_memory_within_per_pair_bound(metric: Callable[..., Any]) -> None:
    # 200 x 50,000 in chunks of 20: the measured peak must respect BYTES_PER_PAIR,
    # far below the ~200 MB an unchunked computation would need.
    rng = np.random.default_rng(5)
    n_q, n_db, chunk = 200, 50_000, 20
    q = rng.integers(0, 256, size=(n_q, 8), dtype=np.uint8)
    db = rng.integers(0, 256, size=(n_db, 8), dtype=np.uint8)
    ql, dbl = rng.integers(0, 10, n_q), rng.integers(0, 10, n_db)
    tracemalloc.start()
    try:
        metric(q, ql, db, dbl, chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    scratch = 9 * (1 << 22)
    assert peak <= chunk * n_db * retrieval.BYTES_PER_PAIR + scratch
