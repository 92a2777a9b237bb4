"""Paired differences and their t interval, against hand-computed values."""

import math

import pytest

from dahash.experiments.paired import paired_difference


def test_mean_and_t_interval_by_hand() -> None:
    # d = 1, 2, 3: mean 2, sample sd 1; t(0.975, 2 df) = 4.302653, so the half-width is 4.302653 / sqrt(3).
    p = paired_difference([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert p.mean == 2.0 and p.n == 3 and (p.wins, p.losses) == (3, 0)
    assert p.low == pytest.approx(2 - 2.484138, abs=1e-6) and p.high == pytest.approx(2 + 2.484138, abs=1e-6)
    assert p.text() == "+2.00 [-0.48, +4.48]"


def test_ties_losses_and_one_pair() -> None:
    p = paired_difference([1.0, 1.0, 0.0, 5.0], [1.0, 2.0, 1.0, 1.0])
    assert (p.wins, p.losses) == (1, 2) and p.mean == pytest.approx(0.5)
    one = paired_difference([3.0], [1.0])
    assert one.mean == 2.0 and math.isnan(one.low) and one.text() == "+2.00"
    with pytest.raises(ValueError, match="equal-length"):
        paired_difference([1.0, 2.0], [1.0])
