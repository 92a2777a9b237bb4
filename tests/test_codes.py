"""Tests of dahash.codes: binarisation, packing and Hamming distances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dahash import codes
from dahash.codes import binarize, hamming_distance, pack_codes, unpack_codes
from dahash.errors import DataError


def _brute_hamming(q_pm: np.ndarray, db_pm: np.ndarray) -> np.ndarray:
    """Hamming distance by comparing every +-1 coordinate."""
    return (q_pm[:, None, :] != db_pm[None, :, :]).sum(axis=2)


def test_binarize_sign_with_zero_positive() -> None:
    out = binarize(np.array([[-2.0, 0.0, 3.5, -0.0, -1e-30]]))
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, [[-1, 1, 1, 1, -1]])


def test_binarize_accepts_torch_tensors_with_grad_and_bfloat16() -> None:
    t = torch.tensor([[0.5, -0.5, 0.0]], requires_grad=True)
    np.testing.assert_array_equal(binarize(t), [[1, -1, 1]])
    np.testing.assert_array_equal(binarize(t.to(torch.bfloat16)), [[1, -1, 1]])
    np.testing.assert_array_equal(binarize(torch.tensor([-3, 0, 2])), [-1, 1, 1])


def test_binarize_rejects_nan_and_non_numeric() -> None:
    with pytest.raises(DataError, match="NaN"):
        binarize(np.array([1.0, np.nan]))
    with pytest.raises(DataError, match="dtype"):
        binarize(np.array([True, False]))


def test_pack_codes_bit_layout_big_endian() -> None:
    # Coordinate 0 is the most significant bit; 0 packs as +1 (bit 1).
    u = np.array([[1, -1, -1, -1, -1, -1, -1, 0], [-1, -1, -1, -1, -1, -1, 1, -1]])
    packed = pack_codes(u)
    assert packed.dtype == np.uint8
    np.testing.assert_array_equal(packed, [[0b10000001], [0b00000010]])


def test_pack_codes_pads_with_zero_bits() -> None:
    packed = pack_codes(np.ones((2, 10)))
    np.testing.assert_array_equal(packed, [[255, 0b11000000], [255, 0b11000000]])


@pytest.mark.parametrize("n_bits", [1, 7, 8, 9, 12, 48, 64, 100])
def test_pack_unpack_round_trip(n_bits: int) -> None:
    rng = np.random.default_rng(n_bits)
    u = rng.standard_normal((17, n_bits))
    u[0, 0] = 0.0
    packed = pack_codes(u)
    assert packed.shape == (17, (n_bits + 7) // 8)
    unpacked = unpack_codes(packed, n_bits)
    assert unpacked.dtype == np.int8
    np.testing.assert_array_equal(unpacked, binarize(u))
    assert unpacked[0, 0] == 1
    np.testing.assert_array_equal(pack_codes(unpacked), packed)


def test_unpack_rejects_wrong_n_bits_and_nonzero_padding() -> None:
    packed = pack_codes(np.ones((1, 12)))
    with pytest.raises(DataError, match="n_bits"):
        unpack_codes(packed, 17)
    with pytest.raises(DataError, match="n_bits"):
        unpack_codes(packed, 8)
    with pytest.raises(DataError, match="padding"):
        unpack_codes(packed, 10)


def test_pack_codes_rejects_non_2d() -> None:
    with pytest.raises(DataError, match="2-D"):
        pack_codes(np.ones(8))


@pytest.mark.parametrize("n_bits", [8, 12, 16, 48, 64, 128])
def test_hamming_distance_matches_brute_force(n_bits: int) -> None:
    rng = np.random.default_rng(100 + n_bits)
    q_pm = binarize(rng.standard_normal((13, n_bits)))
    db_pm = binarize(rng.standard_normal((29, n_bits)))
    dist = hamming_distance(pack_codes(q_pm), pack_codes(db_pm))
    assert dist.dtype == np.uint16
    assert dist.shape == (13, 29)
    np.testing.assert_array_equal(dist, _brute_hamming(q_pm, db_pm))


def test_hamming_distance_identity_and_complement() -> None:
    q = pack_codes(np.array([[1] * 64, [-1] * 64]))
    np.testing.assert_array_equal(hamming_distance(q, q), [[0, 64], [64, 0]])


def test_hamming_distance_lookup_table_fallback_and_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    q_pm = binarize(rng.standard_normal((11, 72)))
    db_pm = binarize(rng.standard_normal((9, 72)))
    expected = _brute_hamming(q_pm, db_pm)
    monkeypatch.setattr(codes, "_popcount", codes._popcount_lut)
    # A tiny block forces several row blocks, including a short last one.
    monkeypatch.setattr(codes, "_XOR_BLOCK_PAIRS", 20)
    np.testing.assert_array_equal(hamming_distance(pack_codes(q_pm), pack_codes(db_pm)), expected)


def test_hamming_distance_empty_sets() -> None:
    db = pack_codes(np.ones((3, 16)))
    assert hamming_distance(db[:0], db).shape == (0, 3)
    assert hamming_distance(db, db[:0]).shape == (3, 0)


def test_hamming_distance_validates_arguments() -> None:
    good = np.zeros((2, 8), dtype=np.uint8)
    with pytest.raises(DataError, match="query_packed"):
        hamming_distance(good.astype(np.int64), good)
    with pytest.raises(DataError, match="db_packed"):
        hamming_distance(good, good[0])
    with pytest.raises(DataError, match="bytes per code"):
        hamming_distance(good, good[:, :4])
    with pytest.raises(ValueError):
        hamming_distance(good, np.zeros((2, 0), dtype=np.uint8))
