"""Tests for the K-per-class DAH batch sampler (Venkateswara et al., Sec. 5.2)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from dahash.data.sampler import KPerClassSampler


def _labels(sizes: list[int], seed: int = 0) -> np.ndarray:
    """Labels with ``sizes[c]`` samples of class c, shuffled so classes are interleaved."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(seed).permutation(labels)


def _no_warnings_sampler(*args, **kwargs) -> KPerClassSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return KPerClassSampler(*args, **kwargs)


def test_every_batch_has_k_of_every_class_in_class_order() -> None:
    labels = _labels([12, 9, 15])
    sampler = _no_warnings_sampler(labels, n_target=50, k=3, seed=1)
    batches = sampler.epoch(0)
    expected_labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert len(batches) == math.ceil(36 / 9) == 4
    for batch in batches:
        assert batch.source.shape == (9,)
        np.testing.assert_array_equal(batch.source_labels, expected_labels)
        # The indices really are samples of the class their position claims.
        np.testing.assert_array_equal(labels[batch.source], expected_labels)
        assert batch.target.shape == (9,)
        assert batch.target.min() >= 0 and batch.target.max() < 50
        # Enough target samples: no repeats within a batch.
        assert len(np.unique(batch.target)) == 9


@pytest.mark.parametrize(("sizes", "k", "expected"), [
    ([10, 10], 5, 2),       # exactly divisible
    ([10, 11], 5, 3),       # one sample over -> an extra batch
    ([3, 40, 7], 2, 9),     # ceil(50 / 6)
    ([5], 5, 1),
])
def test_number_of_batches_is_ceil_source_over_batch(sizes: list[int], k: int, expected: int) -> None:
    sampler = _no_warnings_sampler(_labels(sizes), n_target=1000, k=k)
    assert len(sampler) == expected
    assert len(sampler.epoch(0)) == expected
    assert sampler.batch_source_size == len(sizes) * k


def test_epoch_is_a_pure_function_of_seed_and_epoch() -> None:
    labels = _labels([20, 17, 25])
    a = KPerClassSampler(labels, n_target=60, k=4, seed=7)
    b = KPerClassSampler(labels, n_target=60, k=4, seed=7)

    def plan(s: KPerClassSampler, e: int) -> tuple[np.ndarray, np.ndarray]:
        batches = s.epoch(e)
        return np.stack([x.source for x in batches]), np.stack([x.target for x in batches])

    # Asking for epochs in a different order, or again, gives the same plan.
    first = [plan(a, e) for e in (0, 1, 2)]
    b.epoch(5)
    second = [plan(b, e) for e in (2, 1, 0)][::-1]
    again = plan(a, 1)
    for (s1, t1), (s2, t2) in zip(first, second):
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(again[0], first[1][0])
    np.testing.assert_array_equal(again[1], first[1][1])
    # Different epochs and different seeds give different plans.
    assert not np.array_equal(first[0][0], first[1][0])
    assert not np.array_equal(first[0][1], first[1][1])
    other_seed = plan(KPerClassSampler(labels, n_target=60, k=4, seed=8), 0)
    assert not np.array_equal(first[0][0], other_seed[0])
    assert not np.array_equal(first[0][1], other_seed[1])


def test_each_sample_is_seen_before_any_repeats_within_an_epoch() -> None:
    # ceil(30 / 12) = 3 batches of k=3 per class: 9 slots per class per epoch.
    sizes = [9, 5, 9, 7]  # 9 = exactly one pass, the smaller classes wrap around
    labels = _labels(sizes, seed=3)
    sampler = _no_warnings_sampler(labels, n_target=100, k=3, seed=2)
    n_batches = len(sampler)
    assert n_batches == math.ceil(sum(sizes) / 12) == 3
    for epoch in range(3):
        source = np.stack([b.source for b in sampler.epoch(epoch)])  # (batches, C*k)
        for c, size in enumerate(sizes):
            stream = source[:, c * 3:(c + 1) * 3].reshape(-1)  # the class's draws in order
            assert len(stream) == n_batches * 3
            members = np.flatnonzero(labels == c)
            assert set(stream) <= set(members)
            if size <= len(stream):
                # every sample of the class appears at least once this epoch ...
                assert set(stream) == set(members)
            # ... and the first min(size, draws) draws are all distinct (no repeat before all seen)
            first = stream[:min(size, len(stream))]
            assert len(np.unique(first)) == len(first)
            # whole passes are permutations: each block of `size` draws holds distinct samples
            for start in range(0, len(stream) - size + 1, size):
                block = stream[start:start + size]
                assert len(np.unique(block)) == size


def test_large_class_sees_distinct_samples_when_fewer_slots_than_samples() -> None:
    # Class 0 has 30 samples but only ceil(36/6) * 3 = 18 slots: no sample may repeat.
    labels = _labels([30, 6])
    sampler = _no_warnings_sampler(labels, n_target=40, k=3, seed=0)
    stream = np.stack([b.source for b in sampler.epoch(0)])[:, :3].reshape(-1)
    assert len(stream) == 18
    assert len(np.unique(stream)) == 18


def test_class_smaller_than_k_warns_and_is_sampled_with_replacement() -> None:
    labels = _labels([10, 2, 10])
    with pytest.warns(UserWarning, match=r"fewer than k=4") as record:
        sampler = KPerClassSampler(labels, n_target=100, k=4, seed=0)
    assert any("[1]" in str(w.message) for w in record), [str(w.message) for w in record]
    assert sampler.small_classes == [1]
    members = set(np.flatnonzero(labels == 1))
    for batch in sampler.epoch(0):
        part = batch.source[4:8]
        assert set(part) <= members
        np.testing.assert_array_equal(labels[part], 1)
        # 4 draws from 2 samples necessarily repeat
        assert len(np.unique(part)) < 4


def test_small_target_set_warns_and_repeats_targets() -> None:
    labels = _labels([6, 6])
    with pytest.warns(UserWarning, match=r"target set \(4\) is smaller"):
        sampler = KPerClassSampler(labels, n_target=4, k=3)
    for batch in sampler.epoch(0):
        assert batch.target.shape == (6,)
        assert set(batch.target) <= {0, 1, 2, 3}


def test_target_exactly_one_batch_does_not_warn() -> None:
    sampler = _no_warnings_sampler(_labels([6, 6]), n_target=6, k=3)
    for batch in sampler.epoch(0):
        np.testing.assert_array_equal(np.sort(batch.target), np.arange(6))


def test_n_classes_larger_than_labels_names_the_empty_class() -> None:
    with pytest.raises(ValueError, match=r"\[2\]"):
        KPerClassSampler(np.array([0, 0, 1, 1]), n_target=10, k=1, n_classes=3)


def test_empty_class_in_the_middle_raises() -> None:
    with pytest.raises(ValueError, match=r"classes \[1\] have no samples"):
        KPerClassSampler(np.array([0, 0, 2, 2]), n_target=10, k=1)


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_raises(k: int) -> None:
    with pytest.raises(ValueError, match="k"):
        KPerClassSampler(np.array([0, 1]), n_target=10, k=k)


@pytest.mark.parametrize("n_target", [0, -3])
def test_empty_target_raises(n_target: int) -> None:
    with pytest.raises(ValueError, match="target set is empty"):
        KPerClassSampler(np.array([0, 1]), n_target=n_target, k=1)


@pytest.mark.parametrize("labels", [np.array([], dtype=int), np.zeros((2, 2), dtype=int)])
def test_labels_must_be_non_empty_vector(labels: np.ndarray) -> None:
    with pytest.raises(ValueError, match="non-empty 1-D"):
        KPerClassSampler(labels, n_target=10, k=1)


def test_replacement_draws_independently_but_keeps_the_layout() -> None:
    labels = _labels([30, 30, 30])
    plain = KPerClassSampler(labels, n_target=40, k=5, seed=1)
    drawn = KPerClassSampler(labels, n_target=40, k=5, seed=1, replacement=True)
    repeats = {"plain": 0, "drawn": 0}
    for name, sampler in (("plain", plain), ("drawn", drawn)):
        for epoch in range(30):
            for batch in sampler.epoch(epoch):
                assert list(labels[batch.source]) == list(np.repeat(np.arange(3), 5))
                assert len(batch.target) == 15 and batch.target.max() < 40
                repeats[name] += (len(set(batch.target)) < 15) + (len(set(batch.source)) < 15)
    # Without replacement a batch never repeats an item. With it, 15 target draws from 40
    # repeat one with probability 1 - prod(1 - i/40) = 0.95, and some class's 5 draws from
    # 30 with probability 1 - prod(1 - i/30)^3 = 0.66: 1.61 expected per batch.
    assert repeats["plain"] == 0
    expected = (1 - math.prod(1 - i / 40 for i in range(15))) + (1 - math.prod(1 - i / 30 for i in range(5)) ** 3)
    assert repeats["drawn"] == pytest.approx(expected * 30 * len(drawn), rel=0.15)
