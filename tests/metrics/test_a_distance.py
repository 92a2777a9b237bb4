"""Proxy A-distance: ~2 for separable domains, ~0 for one distribution, monotone, balanced."""

import numpy as np
import pytest

from dahash.metrics.a_distance import proxy_a_distance


def clouds(shift: float, n_source: int = 300, n_target: int = 300, dim: int = 10, seed: int = 1):
    """Two unit Gaussian clouds whose means differ by ``shift`` along the first axis."""
    rng = np.random.default_rng(seed)
    source = rng.normal(size=(n_source, dim))
    target = rng.normal(size=(n_target, dim))
    target[:, 0] += shift
    return source, target


def test_well_separated_domains_are_near_two() -> None:
    assert proxy_a_distance(*clouds(10.0)) > 1.95


def test_one_distribution_is_near_zero() -> None:
    d = proxy_a_distance(*clouds(0.0))
    assert abs(d) < 0.3


def test_grows_with_the_separation() -> None:
    # Bayes errors Phi(-shift/2) = 0.40, 0.31, 0.16 -> d about 0.4, 0.8, 1.4.
    d = [proxy_a_distance(*clouds(shift)) for shift in (0.5, 1.0, 2.0)]
    assert d[0] < d[1] < d[2], d
    assert 0.1 < d[0] and d[2] > 1.1, d


def test_unbalanced_domains_are_balanced_before_classifying() -> None:
    # 10:1 sizes from one distribution: a majority-vote classifier would reach err = 1/11, d = 1.64.
    d = proxy_a_distance(*clouds(0.0, n_source=2000, n_target=200, dim=5))
    assert abs(d) < 0.3
    d = proxy_a_distance(*clouds(0.0, n_source=200, n_target=2000, dim=5))
    assert abs(d) < 0.3


def test_high_dimensional_features_with_chosen_and_fixed_c() -> None:
    # fc7-like: many more dimensions than informative ones; C searched vs given.
    source, target = clouds(0.0, n_source=150, n_target=150, dim=400)
    target += 0.2  # a small shift in every dimension: Bayes d = 2 (1 - 2 Phi(-2)) = 1.82
    searched = proxy_a_distance(source, target)
    fixed = proxy_a_distance(source, target, C=1e-3)
    assert 1.2 < searched <= 2.0 and 1.2 < fixed <= 2.0, (searched, fixed)


def test_seed_makes_it_reproducible_and_max_per_domain_subsamples() -> None:
    source, target = clouds(1.0, n_source=400, n_target=300)
    assert proxy_a_distance(source, target, seed=3) == proxy_a_distance(source, target, seed=3)
    d = proxy_a_distance(source, target, max_per_domain=50)
    # 100 rows -> err is a multiple of 1/100, so d a multiple of 0.04.
    assert abs(d / 0.04 - round(d / 0.04)) < 1e-9


def test_mismatched_feature_dimensions_are_named() -> None:
    with pytest.raises(ValueError, match=r"source has 10 columns, target has 9"):
        proxy_a_distance(np.zeros((20, 10)), np.zeros((20, 9)))


def test_too_few_rows_for_the_folds() -> None:
    with pytest.raises(ValueError, match=r"too few rows for folds=5: source has 40 rows, target has 4"):
        proxy_a_distance(np.zeros((40, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"too few rows for folds=5.*used per domain: 3"):
        proxy_a_distance(np.zeros((40, 3)), np.ones((40, 3)), max_per_domain=3)


@pytest.mark.parametrize("kwargs, message", [
    ({"folds": 1}, r"folds must be an integer >= 2, got 1"),
    ({"C": 0.0}, r"C must be a positive number or None, got 0.0"),
    ({"max_per_domain": 0}, r"max_per_domain must be a positive integer or None, got 0"),
])
def test_bad_arguments_are_named(kwargs, message) -> None:
    source, target = clouds(1.0, n_source=30, n_target=30)
    with pytest.raises(ValueError, match=message):
        proxy_a_distance(source, target, **kwargs)


def test_non_matrix_and_non_finite_inputs() -> None:
    with pytest.raises(ValueError, match=r"source must be a 2-D array.*shape \(10,\)"):
        proxy_a_distance(np.zeros(10), np.zeros((10, 1)))
    bad = np.zeros((30, 2))
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="target contains NaN"):
        proxy_a_distance(np.zeros((30, 2)), bad)
