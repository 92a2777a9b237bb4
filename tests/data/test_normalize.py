"""Input normalisation: what ``auto`` makes of each kind of feature, and the hand-computed transforms."""

from __future__ import annotations

import numpy as np
import pytest

from dahash.data.normalize import FeatureNormalizer, feature_kind


def test_feature_kind_reads_what_the_features_are() -> None:
    counts = np.array([[0, 3, 1], [2, 0, 0]], dtype=np.float32)
    assert feature_kind(counts, counts[::-1]) == "histogram"
    assert feature_kind(counts / counts.sum(1, keepdims=True)) == "histogram"  # already divided by its sum
    pooled = np.array([[0.0, 0.37, 5.2], [1.5, 0.0, 0.01]])
    assert feature_kind(pooled) == "pooled"
    assert feature_kind(pooled, np.array([[0.1, -0.2, 0.3]])) == "signed"  # one negative value in either domain
    # Counts and a pooled domain together are not a histogram.
    assert feature_kind(counts, pooled) == "pooled"


def test_l1_standardize_by_hand() -> None:
    s = np.array([[1.0, 3.0], [0.0, 0.0]])  # an empty row stays 0 before the centring
    t = np.array([[2.0, 2.0]])
    norm = FeatureNormalizer("l1-standardize").fit(s, t)
    rows = np.array([[0.25, 0.75], [0.0, 0.0], [0.5, 0.5]])
    mean, std = rows.mean(0), rows.std(0)
    np.testing.assert_allclose(norm.mean_, mean, rtol=1e-6)
    np.testing.assert_allclose(norm.transform(t), (rows[2:] - mean) / std, rtol=1e-5)
    np.testing.assert_allclose(norm.transform(s), (rows[:2] - mean) / std, rtol=1e-5)


@pytest.mark.parametrize("X, chosen", [
    (np.random.default_rng(0).poisson(0.5, size=(30, 8)).astype(np.float32), "l1-standardize"),
    (np.random.default_rng(0).gamma(0.5, size=(30, 8)), "none"),
    (np.random.default_rng(0).normal(size=(30, 8)), "standardize"),
])
def test_auto_chooses_from_the_data_and_saves_its_choice(X: np.ndarray, chosen: str) -> None:
    with pytest.raises(ValueError, match="fit the normaliser before transforming"):
        FeatureNormalizer("auto").transform(X)
    norm = FeatureNormalizer("auto").fit(X[:20], X[20:])
    assert norm.kind == "auto" and norm.kind_ == chosen
    np.testing.assert_array_equal(norm.transform(X), FeatureNormalizer(chosen).fit(X[:20], X[20:]).transform(X))
    again = FeatureNormalizer.from_state_dict(norm.state_dict())
    assert again.kind_ == chosen and again.kind == "auto"
    np.testing.assert_array_equal(again.transform(X), norm.transform(X))


def test_a_model_file_saved_before_auto_loads_as_it_was() -> None:
    X = np.random.default_rng(1).normal(size=(10, 4))
    fitted = FeatureNormalizer("standardize").fit(X)
    state = {"kind": "standardize", "mean": fitted.mean_, "scale": fitted.scale_}  # no "asked" key
    old = FeatureNormalizer.from_state_dict(state)
    assert old.kind == old.kind_ == "standardize"
    np.testing.assert_array_equal(old.transform(X), fitted.transform(X))
    with pytest.raises(ValueError, match="feature_norm must be one of auto, none"):
        FeatureNormalizer("zscore")
