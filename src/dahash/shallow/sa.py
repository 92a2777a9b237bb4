"""Subspace Alignment (Fernando, Habrard, Sebban, Tuytelaars, ICCV 2013), Algorithm 1.

``X_S`` and ``X_T`` (D x d) are the top-``d`` PCA bases of the source and target.  SA aligns the
source basis with the target one by the linear map minimising ``||X_S M - X_T||_F^2``, whose
closed form is ``M = X_S^T X_T`` (the bases being orthonormal).  Source rows are projected
by the aligned basis ``X_a = X_S M`` and target rows by ``X_T``::

    S_a = S X_S M,      T_T = T X_T

and a classifier trained on ``S_a`` labels ``T_T`` (1-NN and SVM in the paper).

Checked against the authors' code (``SA_SVM.m``, read in jindongwang/transferlearning
``code/traditional/``): the bases are ``princomp`` of each domain (centred PCA), the data are
projected *uncentred* (``Source_Data * (Xs*Xs'*Xt)``, ``Target_Data * Xt``) after the authors'
``NormalizeData`` -- a row-sum (L1) scaling of the SURF histograms, then ``zscore(Data,1)`` per
domain, which centres each domain.  This module projects uncentred rows too, so it expects
centred inputs; :func:`dahash.shallow.fit_predict_shallow` z-scores each domain by default
(the L1 step is for bag-of-words histograms and does not apply to CNN features).

Subspace size: the paper picks ``d`` with its stability bound on the eigenvalue gap, which needs
two confidence constants, or by cross-validation on the source.  This module uses a fixed
``d = 20``, fixed before any target accuracy was seen: the GFK authors' Office-Caltech default
(``Ex_GFK.m``), so the two PCA-subspace methods use the same subspaces ``X_S``, ``X_T``.

skada 0.6.0's ``SubspaceAlignmentAdapter`` computes the same map but centres each domain with
its PCA mean; on z-scored inputs the two agree to rounding (``tests/shallow``).  This adapter
exists so that SA has this package's parameter checks and the same PCA helper as GFK.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skada.base import BaseAdapter
from sklearn.utils.validation import check_is_fitted

from dahash.shallow._common import AdapterTags, split_fit_domains, split_transform_domains
from dahash.shallow.gfk import pca_basis
from dahash.validation import check_int


class SAAdapter(AdapterTags, BaseAdapter):
    """SA (Fernando et al., ICCV 2013, Alg. 1): source rows times X_S M, M = X_S^T X_T; target rows times X_T.

    Parameters
    ----------
    n_components : int, default=20
        Dimension ``d`` of the source and target PCA subspaces (fixed, see the module notes).

    Attributes
    ----------
    source_basis_, target_basis_ : ndarray (D, d)
        ``X_S`` and ``X_T``, orthonormal columns.
    alignment_ : ndarray (d, d)
        ``M = X_S^T X_T``.
    """

    def __init__(self, n_components: int = 20) -> None:
        super().__init__()
        self.n_components = n_components

    def fit(self, X: Any, y: Any = None, *, sample_domain: Any = None, **params: Any) -> "SAAdapter":
        """Fit both PCA subspaces and the alignment between them (labels are not used)."""
        d = check_int("n_components", self.n_components, low=1)
        X, source = split_fit_domains(X, sample_domain)
        self.source_basis_ = pca_basis(X[source], d, "source")
        self.target_basis_ = pca_basis(X[~source], d, "target")
        self.alignment_ = self.source_basis_.T @ self.target_basis_
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: Any, y: Any = None, *, sample_domain: Any = None,
                  allow_source: bool = False, **params: Any) -> np.ndarray:
        """Source rows to ``x X_S M``, target rows to ``x X_T`` (d columns either way)."""
        check_is_fitted(self, "alignment_")
        X, source = split_transform_domains(X, sample_domain, allow_source, self.n_features_in_)
        out = X @ self.target_basis_
        if source.any():
            out[source] = (X[source] @ self.source_basis_) @ self.alignment_
        return out

    def fit_transform(self, X: Any, y: Any = None, *, sample_domain: Any = None,
                      **params: Any) -> np.ndarray:
        return self.fit(X, y, sample_domain=sample_domain).transform(
            X, sample_domain=sample_domain, allow_source=True)
