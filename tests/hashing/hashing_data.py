"""Clustered Gaussian data and the retrieval score shared by the hashing tests (labels only evaluate)."""

from __future__ import annotations

import numpy as np

from dahash.metrics.retrieval import mean_average_precision


def clustered(seed: int, n: int = 2000, centre_scale: float = 0.5, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """10 Gaussian classes in 64-D: ``n`` points around centres drawn with ``centre_scale``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, centre_scale, size=(10, 64))
    labels = rng.integers(0, 10, size=n)
    return centres[labels] + noise * rng.normal(size=(n, 64)), labels


def held_out_map(hasher, X: np.ndarray, y: np.ndarray, n_queries: int = 200) -> float:
    """mAP of the first ``n_queries`` points against the rest, the hasher fitted (unsupervised) on the rest."""
    hasher.fit(X[n_queries:])
    return mean_average_precision(hasher.transform(X[:n_queries]), y[:n_queries],
                                  hasher.transform(X[n_queries:]), y[n_queries:])
