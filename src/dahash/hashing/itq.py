"""Iterative Quantization (Gong & Lazebnik, CVPR 2011; Gong et al., TPAMI 2013, Sec. 2-3).

Algorithm (TPAMI 2013, Sec. 3.1-3.2): centre the data, project onto the top ``c = n_bits``
principal directions (``V = X W``), then minimise the quantization loss
``Q(B, R) = ||B - V R||_F^2`` (Eq. 2) over codes ``B in {-1, 1}^{n x c}`` and an orthogonal
``c x c`` rotation ``R`` by alternating

* fix R, update B: ``B = sgn(V R)`` (Sec. 3.2, "Fix R and update B");
* fix B, update R: orthogonal Procrustes -- with ``B^T V = S Omega S_hat^T`` (SVD), ``R = S_hat S^T``
  (Sec. 3.2, "Fix B and update R"),

starting from a random orthogonal R, for 50 iterations (the paper's setting).

Why a numpy implementation and not ``faiss.ITQTransform``: FAISS (checked in its
``VectorTransform.cpp``, faiss-cpu 1.15) L2-normalises every centred vector before its PCA and
rotation, learns the PCA without bias, subsamples to ``max(10 d, 32768)`` training points and
fixes its own seed -- none of which is in the paper.  The method is a few lines, so this module
follows the paper exactly and lets ``random_state`` drive the initial rotation.  ``tests/hashing/test_itq.py`` checks it against FAISS
when FAISS is installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dahash.errors import ConfigError
from dahash.hashing._base import BaseHasher, check_int, make_rng

__all__ = ["ITQHasher", "random_rotation"]


def random_rotation(c: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed random orthogonal c x c matrix (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((c, c)))
    # Fixing the signs of diag(r) makes Q uniformly (Haar) distributed instead of biased.
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


class ITQHasher(BaseHasher):
    """PCA-ITQ (Gong & Lazebnik, CVPR 2011 / TPAMI 2013, Eq. 2 and Sec. 3.2): codes sgn((x - mean) W R).

    Parameters
    ----------
    n_bits : int, default=32
        Code length ``c``; PCA keeps ``c`` directions, so ``c`` must not exceed
        ``min(n_features, n_samples - 1)`` (the paper's setting ``c <= d``): a larger value
        raises ConfigError rather than padding with zero-variance directions.
    n_iter : int, default=50
        Alternating iterations (50 in the paper).
    random_state : None, int or numpy Generator
        Seed of the initial random rotation.

    Attributes
    ----------
    mean_ : ndarray (D,)
    components_ : ndarray (n_bits, D)
        Top principal directions (rows), by decreasing variance.
    rotation_ : ndarray (n_bits, n_bits)
        The learned orthogonal R.
    quantization_loss_ : list of float
        ``||B - V R||_F^2`` on the training data after each iteration (non-increasing).
    """

    def __init__(self, n_bits: int = 32, n_iter: int = 50, random_state: Any = None) -> None:
        self.n_bits = n_bits
        self.n_iter = n_iter
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> "ITQHasher":
        """Learn the PCA and the rotation from ``X`` (labels, if given, are ignored)."""
        n_bits = check_int("n_bits", self.n_bits, low=1)
        n_iter = check_int("n_iter", self.n_iter, low=0)
        rng = make_rng(self.random_state)
        X = self._validate_fit_X(X)
        limit = min(X.shape[1], X.shape[0] - 1)
        if n_bits > limit:
            raise ConfigError(
                f"n_bits must be <= {limit} for these data (ITQ projects onto n_bits principal "
                f"directions: at most min(n_features={X.shape[1]}, n_samples - 1="
                f"{X.shape[0] - 1})), got {n_bits}")
        self.mean_ = X.mean(axis=0)
        Xc = X - self.mean_
        # Right singular vectors of the centred data = principal directions, sorted by variance.
        _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
        self.components_ = Vt[:n_bits]
        V = Xc @ self.components_.T
        R = random_rotation(n_bits, rng)
        losses: list[float] = []
        for _ in range(n_iter):
            B = np.where(V @ R >= 0, 1.0, -1.0)
            # Orthogonal Procrustes: argmax_R tr(B^T V R) over orthogonal R is R = S_hat S^T
            # with B^T V = S Omega S_hat^T.
            S, _, S_hat_t = np.linalg.svd(B.T @ V)
            R = S_hat_t.T @ S.T
            # Loss with the B of this iteration and the R fitted to it; the next B = sgn(V R) can
            # only lower it, so the recorded sequence is non-increasing.
            losses.append(float(np.sum((B - V @ R) ** 2)))
        self.rotation_ = R
        self.quantization_loss_ = losses
        return self

    def project(self, X: Any) -> np.ndarray:
        """Rotated PCA projections ``(x - mean) W R``, shape (n, n_bits); their signs are the bits."""
        return self._signed_codes(self._validate_X(X))

    def _signed_codes(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) @ self.components_.T @ self.rotation_
