"""Tests for eq. 6 prediction against a source bank and for code export."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dahash.codes import unpack_codes
from dahash.models.predict import class_probabilities, export_codes, predict_labels, select_bank


def test_select_bank_caps_each_class_and_keeps_small_classes() -> None:
    labels = np.random.default_rng(0).permutation(np.repeat([0, 1, 2], [300, 50, 200]))
    bank = select_bank(labels, per_class=200, seed=3)
    assert len(bank) == 200 + 50 + 200
    assert len(np.unique(bank)) == len(bank)  # no index twice
    counts = np.bincount(labels[bank], minlength=3)
    np.testing.assert_array_equal(counts, [200, 50, 200])
    # The small class and the exactly-full class are taken whole.
    np.testing.assert_array_equal(np.sort(bank[labels[bank] == 1]), np.flatnonzero(labels == 1))
    np.testing.assert_array_equal(np.sort(bank[labels[bank] == 2]), np.flatnonzero(labels == 2))
    # Grouped class by class.
    assert np.all(np.diff(labels[bank]) >= 0)


def test_select_bank_is_seeded() -> None:
    labels = np.repeat([0, 1], [100, 100])
    a = select_bank(labels, per_class=10, seed=1)
    b = select_bank(labels, per_class=10, seed=1)
    c = select_bank(labels, per_class=10, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len(a) == 20


def test_class_probabilities_match_hand_computed_eq6() -> None:
    query = np.array([[1.0, 0.0], [0.0, -0.5]], dtype=np.float32)
    bank = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    labels = np.array([0, 0, 1])
    probs = class_probabilities(query, bank, labels, 2)
    # query 0: inner products 1, 0, -1
    z = math.e + 1 + math.exp(-1)
    expected0 = [(math.e + 1) / z, math.exp(-1) / z]
    # query 1: inner products 0, -0.5, 0
    z = 1 + math.exp(-0.5) + 1
    expected1 = [(1 + math.exp(-0.5)) / z, 1 / z]
    np.testing.assert_allclose(probs, [expected0, expected1], rtol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(predict_labels(query, bank, labels, 2), [0, 0])


def test_rows_sum_to_one_and_absent_class_gets_zero() -> None:
    rng = np.random.default_rng(0)
    query = np.tanh(rng.normal(size=(50, 16))).astype(np.float32)
    bank = np.tanh(rng.normal(size=(30, 16))).astype(np.float32)
    labels = rng.integers(0, 3, size=30)  # class 3 has no bank sample
    probs = class_probabilities(query, bank, labels, 4, chunk_size=7)
    assert probs.shape == (50, 4) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert np.all(probs[:, 3] == 0)
    # Chunking does not change the result.
    np.testing.assert_allclose(probs, class_probabilities(query, bank, labels, 4), rtol=1e-6)


def test_binary_compares_sign_codes() -> None:
    rng = np.random.default_rng(1)
    query = rng.normal(size=(20, 12)).astype(np.float32)
    bank = rng.normal(size=(15, 12)).astype(np.float32)
    query[0, :3] = 0.0  # sgn(0) = +1
    bank[2, 5] = 0.0
    labels = rng.integers(0, 3, size=15)
    signed_q = np.where(query >= 0, 1.0, -1.0).astype(np.float32)
    signed_b = np.where(bank >= 0, 1.0, -1.0).astype(np.float32)
    binary = class_probabilities(query, bank, labels, 3, binary=True)
    np.testing.assert_allclose(binary, class_probabilities(signed_q, signed_b, labels, 3), rtol=1e-6)
    assert not np.allclose(binary, class_probabilities(query, bank, labels, 3), atol=1e-3)
    # Large inner products (d = 128 codes) stay finite and normalised.
    big_q = np.sign(rng.normal(size=(5, 128))).astype(np.float32)
    big_b = np.sign(rng.normal(size=(9, 128))).astype(np.float32)
    p = class_probabilities(big_q, big_b, np.arange(9) % 3, 3, binary=True)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)


def test_predict_labels_on_toy_clusters() -> None:
    rng = np.random.default_rng(2)
    centres = np.sign(rng.normal(size=(3, 16)))
    bank_labels = np.repeat([0, 1, 2], 10)
    bank = np.tanh(2 * centres[bank_labels] + 0.3 * rng.normal(size=(30, 16))).astype(np.float32)
    truth = rng.integers(0, 3, size=40)
    query = np.tanh(2 * centres[truth] + 0.3 * rng.normal(size=(40, 16))).astype(np.float32)
    np.testing.assert_array_equal(predict_labels(query, bank, bank_labels, 3), truth)
    np.testing.assert_array_equal(predict_labels(query, bank, bank_labels, 3, binary=True), truth)


@pytest.mark.parametrize("bits", [10, 16, 64])
def test_export_codes(tmp_path: Path, bits: int) -> None:
    rng = np.random.default_rng(bits)
    outputs = np.tanh(rng.normal(size=(7, bits))).astype(np.float32)
    outputs[0, 0] = 0.0
    ids = [f"img{i}" for i in range(7)]
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    path = tmp_path / "codes.npz"
    export_codes(path, outputs, ids, labels, ["cat", "dog", "eel"])
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"codes", "n_bits", "ids", "labels", "classes"}
        codes = data["codes"]
        assert codes.dtype == np.uint8 and codes.shape == (7, math.ceil(bits / 8))
        assert int(data["n_bits"]) == bits
        np.testing.assert_array_equal(data["ids"], ids)
        np.testing.assert_array_equal(data["labels"], labels)
        assert data["labels"].dtype == np.int64
        np.testing.assert_array_equal(data["classes"], ["cat", "dog", "eel"])
        signs = unpack_codes(codes, bits)
    np.testing.assert_array_equal(signs, np.where(outputs >= 0, 1, -1))
    assert signs[0, 0] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["codes.npz"]


def test_export_codes_without_labels(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    export_codes(path, np.ones((2, 8), np.float32), ["a", "b"])
    with np.load(path) as data:
        assert set(data.files) == {"codes", "n_bits", "ids"}
        np.testing.assert_array_equal(data["codes"], [[255], [255]])
