"""Geodesic Flow Kernel (Gong, Shi, Sha, Grauman, CVPR 2012), Sec. 3.

``P_S`` and ``P_T`` (D x d) are the top-``d`` PCA bases of the source and target.  The geodesic
on the Grassmannian from ``span(P_S)`` to ``span(P_T)`` is::

    Phi(t) = P_S U_1 Gamma(t) - R_S U_2 Sigma(t),   Gamma(t) = diag(cos t theta_i),
                                                     Sigma(t) = diag(sin t theta_i)

from ``P_S^T P_T = U_1 Gamma V^T`` and ``R_S^T P_T = -U_2 Sigma V^T`` (``R_S`` the orthogonal
complement of ``P_S``; ``theta_i`` the principal angles).  Projecting onto every subspace along
the flow and integrating gives the kernel ``G = int_0^1 Phi(t) Phi(t)^T dt``, in closed
form::

    G = [P_S U_1, R_S U_2] [[Lambda_1, Lambda_2], [Lambda_2, Lambda_3]] [P_S U_1, R_S U_2]^T

with ``lambda_1i = 1 + sin(2 theta_i)/(2 theta_i)``, ``lambda_2i = (cos(2 theta_i) - 1)/(2 theta_i)``,
``lambda_3i = 1 - sin(2 theta_i)/(2 theta_i)``.  As printed these are twice the integral; the
authors' ``GFK.m`` multiplies them by 0.5, and so does this module, so ``G`` *is* the integral
(a common factor does not change nearest neighbours).  Target rows are then labelled by 1-NN under
``sqrt((x_i - x_j)^T G (x_i - x_j))``.

Construction without the D x (D - d) complement ``R_S`` (``GFK.m`` builds ``null(P_S')``):
``R_S R_S^T P_T V = (P_T - P_S P_S^T P_T) V =: R`` has orthogonal columns of norms ``sin theta_i``,
so ``-R_S U_2 = R diag(1 / sin theta_i)`` (columns with ``theta_i = 0`` carry ``lambda_2 = lambda_3
= 0`` and are dropped).  ``B = [P_S U_1, -R_S U_2]`` has orthonormal columns and ``G = B C B^T``
with the 2d x 2d block matrix ``C`` (the sign of the second block flips ``Lambda_2``), so mapping
``x -> C^(1/2) B^T x`` (at most 2d dimensions) reproduces the GFK distances exactly, and plain
Euclidean 1-NN on the mapped rows is the paper's classifier.  The angles come from
``atan2(sin, cos)`` with the sine taken from ``R``, which stays accurate for small angles.

skada 0.6.0 has no GFK.  Default ``n_components = 20``: the paper picks ``d`` per domain pair by
its subspace disagreement measure (not implemented here); the authors' Office-Caltech demo
(``Ex_GFK.m``, B. Gong) sets ``d = 20`` and lists 10 or 20 as the values the paper used per pair.
Inputs: that demo z-scores each domain (``zscore(fts,1)``, after an L1 scaling of the SURF
histograms) before ``princomp``; ``fit_predict_shallow`` z-scores each domain by default.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skada.base import BaseAdapter
from sklearn.utils.validation import check_is_fitted

from dahash.errors import ConfigError
from dahash.shallow._common import AdapterTags, RANK_RTOL, split_fit_domains, split_transform_domains, thin_svd
from dahash.validation import check_int


def pca_basis(X: np.ndarray, n_components: int, domain: str) -> np.ndarray:
    """Top principal directions (D x n_components, orthonormal) of the centred rows of ``X``."""
    _, _, Vt = thin_svd(X - X.mean(axis=0))
    if Vt.shape[0] < n_components:
        raise ConfigError(f"n_components must be <= {Vt.shape[0]}, the rank of the centred {domain} "
                          f"features, got {n_components}")
    return Vt[:n_components].T


def flow_weights(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``int_0^1`` of ``cos^2(t theta)``, ``cos(t theta) sin(t theta)``, ``sin^2(t theta)``.

    These are the paper's ``Lambda_1``, ``-Lambda_2``, ``Lambda_3`` times 0.5, written with
    ``np.sinc`` so that ``theta = 0`` needs no special case.
    """
    sinc2 = np.sinc(2.0 * theta / np.pi)                 # sin(2 theta) / (2 theta)
    cos_cos = 0.5 * (1.0 + sinc2)
    cos_sin = 0.5 * theta * np.sinc(theta / np.pi) ** 2  # sin^2(theta) / (2 theta)
    sin_sin = 0.5 * (1.0 - sinc2)
    return cos_cos, cos_sin, sin_sin


def geodesic_flow_factors(Ps: np.ndarray, Pt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(B, C, theta)`` with ``G = B C B^T``, ``B`` orthonormal (D x (d + m)), for bases ``Ps``, ``Pt``."""
    U1, cosines, Vh = np.linalg.svd(Ps.T @ Pt)
    R = (Pt - Ps @ (Ps.T @ Pt)) @ Vh.T
    sines = np.linalg.norm(R, axis=0)
    theta = np.arctan2(sines, np.clip(cosines, 0.0, 1.0))
    cos_cos, cos_sin, sin_sin = flow_weights(theta)
    moving = sines > RANK_RTOL
    d, m = theta.size, int(moving.sum())
    B = np.concatenate([Ps @ U1, R[:, moving] / sines[moving]], axis=1)
    C = np.zeros((d + m, d + m))
    C[np.arange(d), np.arange(d)] = cos_cos
    rows, cols = np.flatnonzero(moving), d + np.arange(m)
    C[rows, cols] = C[cols, rows] = cos_sin[moving]
    C[cols, cols] = sin_sin[moving]
    return B, C, theta


class GFKAdapter(AdapterTags, BaseAdapter):
    """GFK (Gong et al., CVPR 2012, Sec. 3): rows mapped by G^(1/2), G = int_0^1 Phi(t) Phi(t)^T dt.

    Parameters
    ----------
    n_components : int, default=20
        Dimension ``d`` of the source and target PCA subspaces.

    Attributes
    ----------
    source_basis_, target_basis_ : ndarray (D, d)
        ``P_S`` and ``P_T``.
    principal_angles_ : ndarray (d,)
        ``theta_i`` in radians, increasing.
    flow_basis_, flow_matrix_ : ndarray (D, d + m), (d + m, d + m)
        ``B`` and ``C`` with ``G = B C B^T``.
    embedding_ : ndarray (D, d + m)
        ``B C^(1/2)``: ``X @ embedding_`` has Euclidean distances equal to the GFK distances.
    """

    def __init__(self, n_components: int = 20) -> None:
        super().__init__()
        self.n_components = n_components

    def fit(self, X: Any, y: Any = None, *, sample_domain: Any = None, **params: Any) -> "GFKAdapter":
        """Fit both PCA subspaces and the geodesic flow kernel between them (labels unused)."""
        d = check_int("n_components", self.n_components, low=1)
        X, source = split_fit_domains(X, sample_domain)
        Ps = pca_basis(X[source], d, "source")
        Pt = pca_basis(X[~source], d, "target")
        B, C, theta = geodesic_flow_factors(Ps, Pt)
        w, V = np.linalg.eigh(C)
        self.source_basis_, self.target_basis_ = Ps, Pt
        self.principal_angles_ = np.sort(theta)
        self.flow_basis_, self.flow_matrix_ = B, C
        self.embedding_ = B @ ((V * np.sqrt(np.clip(w, 0.0, None))) @ V.T)
        self.n_features_in_ = X.shape[1]
        return self

    def geodesic_flow_kernel(self) -> np.ndarray:
        """The D x D matrix ``G`` (built on request; ``transform`` never needs it)."""
        check_is_fitted(self, "embedding_")
        return self.flow_basis_ @ self.flow_matrix_ @ self.flow_basis_.T

    def transform(self, X: Any, y: Any = None, *, sample_domain: Any = None,
                  allow_source: bool = False, **params: Any) -> np.ndarray:
        """``X G^(1/2)`` up to a rotation, for rows of either domain."""
        check_is_fitted(self, "embedding_")
        X, _ = split_transform_domains(X, sample_domain, allow_source, self.n_features_in_)
        return X @ self.embedding_

    def fit_transform(self, X: Any, y: Any = None, *, sample_domain: Any = None,
                      **params: Any) -> np.ndarray:
        return self.fit(X, y, sample_domain=sample_domain).transform(
            X, sample_domain=sample_domain, allow_source=True)
