"""Transfer Component Analysis (Pan, Tsang, Kwok, Yang, IEEE TNN 22(2), 2011), unsupervised TCA.

The paper (Sec. IV) learns ``W`` (n x m) for the empirical kernel map of the pooled source and
target samples::

    min_W  tr(W^T K L K W) + mu tr(W^T W)   s.t.  W^T K H K W = I_m

with ``K`` the (ns + nt) kernel matrix, ``L`` the MMD matrix (``1/ns^2`` within source,
``1/nt^2`` within target, ``-1/(ns nt)`` across) so that ``tr(W^T K L K W)`` is the squared MMD
between the embedded domains, and ``H`` the centring matrix.  Its solution is the ``m`` leading
eigenvectors of ``(K L K + mu I)^{-1} K H K``; a sample ``x`` is embedded as ``W^T k(X, x)``.

What this module computes, checked against the paper and the reference MATLAB code that Office-Caltech
papers run TCA with (``TCA.m`` in jindongwang/transferlearning ``code/traditional/TCA/``, built on
M. Long's ``JDA.m`` with the same normalisations; Pan et al.'s own code is not public):

* the embedding is ``W^T K`` with unit-norm eigenvectors, as the authors' code computes it; the
  constraint ``W^T K H K W = I`` is *not* imposed as a rescaling, since it would give every
  component unit variance (see :func:`dahash.shallow._common.transfer_components`);
* ``L`` is divided by its Frobenius norm, as ``TCA.m`` and ``JDA.m`` do (``M = M / norm(M,'fro')``),
  so ``mu`` is relative to the normalised MMD matrix; the paper's ``mu`` is ``mu (1/ns + 1/nt)``.
  TCA is then exactly the first, marginal-only solve of JDA with the same ``lam = mu``;
* ``normalize=True`` (default) scales every sample to unit L2 norm before the kernel and every
  embedded sample to unit L2 norm after it, the two normalisations of ``TCA.m``
  (``X = X*diag(1./sqrt(sum(X.^2)))`` and the same on ``Z``); ``False`` is the paper's plain maths.

Inputs: the authors z-score each domain first (their Office+Caltech scripts: ``zscore(fts,1)``);
:func:`dahash.shallow.fit_predict_shallow` does so by default (``preprocess="zscore"``).

Defaults: ``mu = 1``, linear kernel, ``m = 100`` -- the JDA authors' Office+Caltech settings (their
``run_surf.m``: ``k = 100``, ``lambda = 1.0``, ``ker = 'linear'``; Pan et al. tune ``mu`` and ``m``
per task), used for TCA too so that TCA is JDA's first solve and the two are compared at equal
dimension and regulariser.  Not tuned on any target labels.

Why not ``skada.TransferComponentAnalysisAdapter`` (skada 0.6.0): it calls ``np.linalg.eigh`` on
the non-symmetric ``solve(I + mu KLK, KHK)``, its ``mu`` is the reciprocal of the paper's, and its
``transform`` returns other rows' embeddings when source and target rows are interleaved;
reproductions in ``docs/baselines.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skada.base import BaseAdapter
from sklearn.utils.validation import check_is_fitted

from dahash.shallow._common import (
    AdapterTags,
    kernel_matrix,
    l2_normalize_rows,
    sample_coordinates,
    split_fit_domains,
    split_transform_domains,
    transfer_components,
)
from dahash.validation import check_bool, check_choice, check_int, check_positive

TCA_KERNELS = ("linear", "rbf")


def mmd_vector(source: np.ndarray) -> np.ndarray:
    """``e`` with ``e e^T = L``: ``1/ns`` on source rows, ``-1/nt`` on target rows."""
    ns, nt = int(source.sum()), int((~source).sum())
    return np.where(source, 1.0 / ns, -1.0 / nt)


class TCAAdapter(AdapterTags, BaseAdapter):
    """TCA (Pan et al., IEEE TNN 2011, Sec. IV): embed by W^T k(X, x), W the top eigenvectors of (KLK + mu I)^-1 KHK.

    Parameters
    ----------
    n_components : int, default=100
        Number of transfer components ``m``.
    mu : float, default=1.0
        Weight of ``tr(W^T W)`` against the MMD term with ``L / ||L||_F`` (``TCA.m``'s ``lambda``;
        not skada's reciprocal).
    kernel : {"linear", "rbf"}, default="linear"
    gamma : float, default=1.0
        RBF kernel ``exp(-gamma ||x - y||^2)``; ignored by the linear kernel.
    normalize : bool, default=True
        Scale each sample to unit L2 norm before the kernel and each embedded sample after it,
        as ``TCA.m`` does (the authors z-score each domain before that).

    Attributes
    ----------
    X_fit_ : ndarray (n, d)
        The (normalised) training samples the kernel is evaluated against.
    projection_ : ndarray (n, n_components)
        ``W``, unit-norm columns; a sample ``x`` maps to ``k(x, X_fit_) @ projection_``.
    """

    def __init__(self, n_components: int = 100, mu: float = 1.0, kernel: str = "linear",
                 gamma: float = 1.0, normalize: bool = True) -> None:
        super().__init__()
        self.n_components = n_components
        self.mu = mu
        self.kernel = kernel
        self.gamma = gamma
        self.normalize = normalize

    def fit(self, X: Any, y: Any = None, *, sample_domain: Any = None, **params: Any) -> "TCAAdapter":
        """Learn ``W`` from the pooled source and target rows of ``X`` (labels are not used)."""
        n_components = check_int("n_components", self.n_components, low=1)
        mu = check_positive("mu", self.mu)
        kernel = check_choice("kernel", self.kernel, TCA_KERNELS)
        gamma = check_positive("gamma", self.gamma)
        normalize = check_bool("normalize", self.normalize)
        X, source = split_fit_domains(X, sample_domain)
        if normalize:
            X = l2_normalize_rows(X)
        F, to_projection = sample_coordinates(kernel, X, gamma)
        e = mmd_vector(source)
        B = transfer_components(F, (e / np.linalg.norm(e))[:, None], mu, n_components)
        self.X_fit_ = X
        self.projection_ = to_projection @ B
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: Any, y: Any = None, *, sample_domain: Any = None,
                  allow_source: bool = False, **params: Any) -> np.ndarray:
        """Embed rows of either domain: ``W^T k(X_fit, x)`` (out-of-sample rows included)."""
        check_is_fitted(self, "projection_")
        X, _ = split_transform_domains(X, sample_domain, allow_source, self.n_features_in_)
        if self.normalize:
            X = l2_normalize_rows(X)
        Z = kernel_matrix(self.kernel, X, self.X_fit_, self.gamma) @ self.projection_
        return l2_normalize_rows(Z) if self.normalize else Z

    def fit_transform(self, X: Any, y: Any = None, *, sample_domain: Any = None,
                      **params: Any) -> np.ndarray:
        return self.fit(X, y, sample_domain=sample_domain).transform(
            X, sample_domain=sample_domain, allow_source=True)
