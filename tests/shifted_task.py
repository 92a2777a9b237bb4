"""A tiny shifted-Gaussian transfer task and settings that train on it in a second, shared by the
estimator and selection tests."""

from __future__ import annotations

from typing import Any

import numpy as np

CLASSES = np.array(["ant", "bee", "cat", "dog"])
# The schedule and hidden_bn given: DAH's training stage (schedule="auto") has nothing to choose.
TINY: dict[str, Any] = dict(bits=16, hidden=(16, 16), k=3, epochs=3, lr_start=1e-2, lr_end=1e-3, gamma=5000.0,
                            feature_norm="standardize", num_threads=1, hidden_bn=False)


def shifted_task(n_source: int = 12, n_target: int = 8, dim: int = 8, shift: float = 0.8,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``Xs, ys, Xt, yt``: four Gaussian classes (labels are the names in CLASSES); the target is
    the same clusters shifted by ``shift``. ``yt`` is for checks only."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(len(CLASSES), dim)) * 3
    ys = np.repeat(np.arange(len(CLASSES)), n_source)
    yt = np.tile(np.arange(len(CLASSES)), n_target)
    Xs = (means[ys] + rng.normal(size=(len(ys), dim))).astype(np.float32)
    Xt = (means[yt] + rng.normal(size=(len(yt), dim)) + shift).astype(np.float32)
    return Xs, CLASSES[ys], Xt, CLASSES[yt]
