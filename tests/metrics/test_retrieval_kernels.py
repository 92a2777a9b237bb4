"""The compiled counting kernels of dahash.metrics against the numpy implementation they replaced
(tests/metrics/retrieval_reference.py), on random codes with many ties."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import retrieval_reference as reference  # tests/metrics/ is on sys.path (no __init__.py)

from dahash.metrics import (
    average_precisions,
    hamming_kernels,
    hamming_ranking,
    mean_average_precision,
    precision_at_k,
    precision_recall_curve,
    precision_within_radius,
)

TOL = 1e-12


def _problem(seed: int, n_q: int, n_db: int, bits: int, n_classes: int = 4):
    """Clustered random codes: few bits and few classes give large tie groups and label-less
    queries; half the queries copy a database code (distance 0 ties)."""
    rng = np.random.default_rng(seed)
    protos = rng.random((n_classes, bits)) < 0.5
    y_db = rng.integers(0, n_classes, n_db)
    db = np.packbits(protos[y_db] ^ (rng.random((n_db, bits)) < 0.25), axis=1)
    q = np.packbits(rng.random((n_q, bits)) < 0.5, axis=1)
    q[: n_q // 2] = db[rng.integers(0, n_db, n_q // 2)]
    # Query labels include one class absent from the database.
    return q, rng.integers(0, n_classes + 1, n_q), db, y_db


def _close(got, want) -> None:
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL, equal_nan=True)


CASES = [
    # bits, n_q, n_db: 1-2 bytes (huge tie groups), odd byte widths (24, 40, 72: padding and a
    # second word), 64 bits; n_db above the kernels' tile of 1024 items in some.
    (8, 40, 300),
    (16, 30, 2500),
    (24, 25, 700),
    (40, 20, 1300),
    (64, 20, 2100),
    (72, 15, 500),
    (130, 10, 400),
]


@pytest.mark.parametrize("bits, n_q, n_db", CASES)
@pytest.mark.parametrize("exclude_self", [False, True])
def test_kernels_match_the_reference_implementation(bits: int, n_q: int, n_db: int, exclude_self: bool) -> None:
    q, qy, db, dby = _problem(bits, n_q, n_db, bits)
    if exclude_self:
        # Every code a query: 1,100 of them still put most selves past the first tile.
        q, qy = db, dby = db[:1100], dby[:1100]
    args = (q, qy, db, dby)
    kw = {"exclude_self": exclude_self}
    for top_k in (None, 1, 10, len(db) + 5):
        _close(average_precisions(*args, top_k=top_k, **kw), reference.average_precisions(*args, top_k=top_k, **kw))
        _close(mean_average_precision(*args, top_k=top_k, **kw),
               reference.mean_average_precision(*args, top_k=top_k, **kw))
        got = hamming_ranking(q, db, top_k, **kw)
        want = reference.hamming_ranking(q, db, top_k, **kw)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
    for k in (1, 7, 100, len(db) + 5):
        _close(precision_at_k(*args, k, **kw), reference.precision_at_k(*args, k, **kw))
    for chunk_size in (None, 3):
        for got, want in zip(precision_recall_curve(*args, chunk_size=chunk_size, **kw),
                             reference.precision_recall_curve(*args, chunk_size=chunk_size, **kw)):
            _close(got, want)
        for radius in (0, 2, bits // 3, bits + 10):
            _close(precision_within_radius(*args, radius, chunk_size=chunk_size, **kw),
                   reference.precision_within_radius(*args, radius, chunk_size=chunk_size, **kw))


def test_exclude_self_drops_item_i_even_when_query_i_differs_from_it() -> None:
    # As before the kernels: query i's own index leaves its ranking, whatever the two codes are.
    q, qy, db, dby = _problem(3, 1100, 1100, 16)
    q, qy = q[::-1].copy(), qy[::-1].copy()
    args = (q, qy, db, dby)
    _close(average_precisions(*args, exclude_self=True, top_k=50),
           reference.average_precisions(*args, exclude_self=True, top_k=50))
    for got, want in zip(hamming_ranking(q, db, 30, exclude_self=True),
                         reference.hamming_ranking(q, db, 30, exclude_self=True)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(precision_recall_curve(*args, exclude_self=True),
                         reference.precision_recall_curve(*args, exclude_self=True)):
        _close(got, want)


def test_results_do_not_depend_on_chunks_or_threads() -> None:
    q, qy, db, dby = _problem(1, 70, 1500, 16)
    want = reference.average_precisions(q, qy, db, dby)
    threads = numba.get_num_threads()
    try:
        for n in sorted({1, threads}):
            numba.set_num_threads(n)
            for chunk_size in (None, 1, 13):
                np.testing.assert_array_equal(average_precisions(q, qy, db, dby, chunk_size=chunk_size), want)
    finally:
        numba.set_num_threads(threads)


def test_label_dtypes_and_layouts_compare_exactly_and_compile_once() -> None:
    q, qy, db, dby = _problem(2, 30, 400, 24)
    want = reference.average_precisions(q, qy, db, dby)
    for ql, dl in ((qy.astype(np.uint8), dby.astype(np.int16)), (qy.astype(np.int32), dby.astype(np.uint64))):
        np.testing.assert_array_equal(average_precisions(q, ql, db, dl), want)
    # Labels beyond 2**53, which int64/uint64 promotion (to float64) would merge, and negatives.
    big_db = np.array([2**63, 2**63 + 1, 2**63 + 1, 5, 2**63], dtype=np.uint64)
    for big_q in (np.array([2**63 + 1, 2**63, 2**63 + 1, 5], dtype=np.uint64),
                  np.array([-1, 0, 5, 2**62], dtype=np.int64)):
        args = (q[:4], big_q, db[:5], big_db)
        _close(average_precisions(*args), reference.average_precisions(*args))
    # Read-only, strided and Fortran-ordered codes are copied into the kernels' one layout.
    ro = db.copy()
    ro.setflags(write=False)
    strided_labels = np.repeat(dby, 2)[::2]
    np.testing.assert_array_equal(average_precisions(np.asfortranarray(q), qy, ro, strided_labels), want)
    wide = np.zeros((db.shape[0], 6), dtype=np.uint8)
    wide[:, ::2] = db
    np.testing.assert_array_equal(average_precisions(q, qy, wide[:, ::2], dby), want)
    for kernel in (hamming_kernels.ranked_relevant, hamming_kernels.distance_histograms):
        assert len(kernel.signatures) == 1, kernel.signatures


def test_popcount_intrinsic_counts_every_bit() -> None:
    words = np.array([0, 1, 2**63, 2**64 - 1, 0x5555555555555555, 12345678901234567], dtype=np.uint64)

    @numba.njit
    def counts(w: np.ndarray) -> np.ndarray:
        out = np.empty(w.shape[0], dtype=np.int64)
        for i in range(w.shape[0]):
            out[i] = hamming_kernels.popcount64(w[i])
        return out

    np.testing.assert_array_equal(counts(words), [int(w).bit_count() for w in words])
