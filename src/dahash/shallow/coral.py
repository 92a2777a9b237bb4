"""CORrelation ALignment (Sun, Feng, Saenko, AAAI 2016, "Return of frustratingly easy domain
adaptation"), Algorithm 1.

The paper minimises ``||A^T C_S A - C_T||_F^2`` (eq. 1) and, after regularising both covariances
with the identity so they are full rank, takes the closed form of Algorithm 1::

    C_S = cov(D_S) + eye(d);  C_T = cov(D_T) + eye(d)
    D_S = D_S * C_S^(-1/2)            % whitening
    D_S* = D_S * C_T^(1/2)            % re-colouring with the target covariance

then trains the classifier on ``D_S*`` and applies it to the *unchanged* target features.  The
data are not centred (``cov`` centres only inside the covariance).

Why not ``skada.CORALAdapter`` (skada 0.6.0, ``_mapping.py``): it subtracts the source mean from
source rows and the target mean from target rows (a mean alignment that Algorithm 1 does not do),
and regularises by Ledoit-Wolf or fixed *shrinkage* ``(1 - a) S + a tr(S)/d I`` with the
``1/n`` covariance -- none of its ``reg`` settings yields the paper's ``cov(D) + 1 * I``.  The
method is a few lines, so this module implements the paper's version; ``reg`` is its ``lambda = 1``
(applied to both domains).  The identity is added in the features' own units, so the paper's
setting presumes standardised features: the authors' released code (``Ex_CORAL.m`` in
VisionLearningGroup/CORAL ``code/CORAL_Source_Code.zip``) z-scores each domain
(``zscore(fts,1)``, after an L1 scaling of the SURF histograms) and then runs exactly
``cov(Xr) + eye``, ``cov_source^(-1/2) * cov_target^(1/2)``; ``fit_predict_shallow`` z-scores each
domain by default.  The authors classify with a linear SVM (C by 2-fold cross-validation on the
source); ``dahash reproduce`` uses 1-NN for every shallow method unless told otherwise.

Efficiency: with ``S = U diag(v) U^T`` from the thin SVD of the centred data (rank ``r <= n - 1``),
``(S + reg I)^p = reg^p I + U diag((v + reg)^p - reg^p) U^T``, so the source is mapped with
``O(n d r)`` work and two ``d x r`` factors instead of ``d x d`` matrix roots.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skada.base import BaseAdapter
from sklearn.utils.validation import check_is_fitted

from dahash.shallow._common import AdapterTags, split_fit_domains, split_transform_domains, thin_svd
from dahash.validation import check_positive


def _covariance_eigen(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero eigenvalues and eigenvectors (d x r) of the unbiased sample covariance."""
    _, s, Vt = thin_svd(X - X.mean(axis=0))
    return s**2 / max(X.shape[0] - 1, 1), Vt.T


class CORALAdapter(AdapterTags, BaseAdapter):
    """CORAL (Sun et al., AAAI 2016, Alg. 1): source rows times (C_S + reg I)^-1/2 (C_T + reg I)^1/2.

    Parameters
    ----------
    reg : float, default=1.0
        Added to the diagonal of both covariances (``eye(size(D,2))`` in Algorithm 1, i.e. 1).

    Attributes
    ----------
    source_eigvals_, source_eigvecs_ : ndarray (r_s,), (d, r_s)
        Non-zero spectrum of ``cov(D_S)``.
    target_eigvals_, target_eigvecs_ : ndarray (r_t,), (d, r_t)
        Non-zero spectrum of ``cov(D_T)``.
    """

    def __init__(self, reg: float = 1.0) -> None:
        super().__init__()
        self.reg = reg

    def fit(self, X: Any, y: Any = None, *, sample_domain: Any = None, **params: Any) -> "CORALAdapter":
        """Estimate the source and target covariances (labels are not used)."""
        check_positive("reg", self.reg)
        X, source = split_fit_domains(X, sample_domain)
        self.source_eigvals_, self.source_eigvecs_ = _covariance_eigen(X[source])
        self.target_eigvals_, self.target_eigvecs_ = _covariance_eigen(X[~source])
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: Any, y: Any = None, *, sample_domain: Any = None,
                  allow_source: bool = False, **params: Any) -> np.ndarray:
        """Re-colour source rows (``D_S C_S^(-1/2) C_T^(1/2)``); target rows pass unchanged."""
        check_is_fitted(self, "source_eigvecs_")
        X, source = split_transform_domains(X, sample_domain, allow_source, self.n_features_in_)
        out = X.copy()
        if source.any():
            out[source] = self._recolour(X[source])
        return out

    def _recolour(self, Xs: np.ndarray) -> np.ndarray:
        reg = float(self.reg)
        Us, Ut = self.source_eigvecs_, self.target_eigvecs_
        whiten = (self.source_eigvals_ + reg) ** -0.5 - reg**-0.5
        colour = (self.target_eigvals_ + reg) ** 0.5 - reg**0.5
        W = reg**-0.5 * Xs + ((Xs @ Us) * whiten) @ Us.T
        return reg**0.5 * W + ((W @ Ut) * colour) @ Ut.T

    def fit_transform(self, X: Any, y: Any = None, *, sample_domain: Any = None,
                      **params: Any) -> np.ndarray:
        return self.fit(X, y, sample_domain=sample_domain).transform(
            X, sample_domain=sample_domain, allow_source=True)
