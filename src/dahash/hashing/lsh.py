"""Sign random projections (Charikar, STOC 2002, Sec. 3): the data-independent floor baseline."""

from __future__ import annotations

from typing import Any

import numpy as np

from dahash.hashing._base import BaseHasher, check_int, make_rng

__all__ = ["LSHHasher"]


class LSHHasher(BaseHasher):
    """Random-hyperplane LSH (Charikar 2002, Sec. 3): bit k = sgn(w_k^T (x - mean)), w_k ~ N(0, I).

    The data are centred first (the mean is the only thing learned), as in the hashing
    literature's LSH baseline, so that each bit splits the data rather than being constant.

    Parameters
    ----------
    n_bits : int, default=32
        Code length; any value >= 1 (it may exceed the feature dimension).
    random_state : None, int or numpy Generator
        Seed of the Gaussian hyperplanes.

    Attributes
    ----------
    mean_ : ndarray (D,)
    projection_ : ndarray (D, n_bits)
    """

    def __init__(self, n_bits: int = 32, random_state: Any = None) -> None:
        self.n_bits = n_bits
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> "LSHHasher":
        """Draw the hyperplanes and record the mean of ``X`` (labels, if given, are ignored)."""
        n_bits = check_int("n_bits", self.n_bits, low=1)
        rng = make_rng(self.random_state)
        X = self._validate_fit_X(X)
        self.mean_ = X.mean(axis=0)
        self.projection_ = rng.standard_normal((X.shape[1], n_bits))
        return self

    def project(self, X: Any) -> np.ndarray:
        """Real projections (n, n_bits) whose signs are the bits."""
        return self._signed_codes(self._validate_X(X))

    def _signed_codes(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) @ self.projection_
