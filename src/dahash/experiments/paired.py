"""Paired differences between two methods run on the same (task, seed) cells, with a 95 % t interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t


@dataclass(frozen=True)
class Paired:
    """Mean of ``a - b`` over n pairs, its 95 % confidence interval, and how often ``a`` was ahead."""

    mean: float
    low: float
    high: float
    n: int
    wins: int  # pairs where a > b
    losses: int  # pairs where a < b

    def text(self, digits: int = 2) -> str:
        """``+0.28 [-0.10, +0.66]`` (one pair: no interval)."""
        if self.n < 2:
            return f"{self.mean:+.{digits}f}"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Paired:
    """The mean of ``a[i] - b[i]`` with Student's t interval over the pairs.

    The interval treats the pairs as independent draws: across seeds of one task they are; across tasks
    of one benchmark they are a fixed set, so the interval speaks of these tasks, not of tasks in general.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.ndim != 1 or len(d) == 0 or len(np.asarray(a)) != len(np.asarray(b)):
        raise ValueError(f"a and b must be equal-length 1-D sequences, got {len(np.asarray(a))} and {len(np.asarray(b))}")
    n, mean = len(d), float(d.mean())
    if n < 2:
        return Paired(mean, math.nan, math.nan, n, int((d > 0).sum()), int((d < 0).sum()))
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return Paired(mean, mean - half, mean + half, n, int((d > 0).sum()), int((d < 0).sum()))
