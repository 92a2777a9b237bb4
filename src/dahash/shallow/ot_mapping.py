"""Optimal-transport mapping (Courty, Flamary, Tuia, Rakotomamonjy, IEEE TPAMI 39(9), 2017).

Courty et al. couple the empirical source and target distributions (uniform weights ``a``,
``b``) by the entropy-regularised transport plan::

    gamma = argmin_{gamma 1 = a, gamma^T 1 = b, gamma >= 0}  <gamma, C> + reg_e sum gamma log gamma

with ``C_ij = ||x^s_i - x^t_j||^2``, map every source sample to the barycentre of its target mass,
``x^s_i -> sum_j gamma_ij x^t_j / a_i`` (the barycentric mapping), train the classifier on the
mapped source and apply it to the unchanged target.

The plan is solved by POT's log-domain Sinkhorn (``ot.sinkhorn(..., method="sinkhorn_log")``,
the same solver skada's ``EntropicOTMappingAdapter`` calls through ``ot.da.SinkhornTransport``).
With the dual potential ``g = log v`` the barycentric weights of a source row are
``softmax_j(g_j - C_ij / reg_e)``; this adapter evaluates them with a log-sum-exp, which is exactly
the row-normalised plan for the training rows and the entropic map (Pooladian & Niles-Weed 2021)
for new source rows.  skada 0.6.0 / POT 0.9.7 evaluate the same formula as ``exp(-C/reg_e + g)``
without the log-sum-exp: on z-scored 1,280-d features (costs of 300-9,000 against
``reg_e = 1``) that overflows and returns NaN for source rows (``docs/baselines.md``).

Defaults, skada's ``EntropicOTMappingAdapter`` defaults (not tuned on target labels):
``reg_e = 1``, squared Euclidean cost without normalisation (``norm=None``), ``max_iter = 1000``,
``tol = 1e-8``.  Inputs: z-scored per domain by :func:`dahash.shallow.fit_predict_shallow`, the
Office-Caltech protocol of the GFK/JDA authors' code that Courty et al. compare against.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import ot
from scipy.special import softmax
from skada.base import BaseAdapter
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.utils.validation import check_is_fitted

from dahash.errors import ConfigError, DataError
from dahash.shallow._common import AdapterTags, split_fit_domains, split_transform_domains
from dahash.validation import check_int, check_positive

#: Cost normalisations (POT's ``cost_normalization``): divide by the median or the maximum cost.
OT_NORMS = (None, "median", "max")


def _cost(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    return euclidean_distances(X, Y, squared=True)


class OTAdapter(AdapterTags, BaseAdapter):
    """OT mapping (Courty et al., TPAMI 2017): source rows to sum_j gamma_ij x^t_j / a_i, gamma the entropic plan.

    Parameters
    ----------
    reg_e : float, default=1.0
        Entropic regularisation of the plan (skada's default).
    norm : {None, "median", "max"}, default=None
        Divide the cost matrix by its median or maximum before solving (POT's option; None as skada).
    max_iter : int, default=1000
        Sinkhorn iterations at most.
    tol : float, default=1e-8
        Stop when the target marginal is met to this 2-norm error.

    Attributes
    ----------
    X_target_ : ndarray (nt, d)
        Target rows the source is mapped onto.
    log_v_ : ndarray (nt,)
        Dual potential ``g`` of the target marginal.
    cost_scale_ : float
        What the cost was divided by (1.0 for ``norm=None``).
    n_iter_ : int
        Sinkhorn iterations run.
    marginal_error_ : float
        2-norm error of the target marginal at the last check (below ``tol`` when converged).
    """

    def __init__(self, reg_e: float = 1.0, norm: str | None = None, max_iter: int = 1000,
                 tol: float = 1e-8) -> None:
        super().__init__()
        self.reg_e = reg_e
        self.norm = norm
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: Any, y: Any = None, *, sample_domain: Any = None, **params: Any) -> "OTAdapter":
        """Solve the entropic plan between the source and target rows (labels are not used)."""
        reg_e = check_positive("reg_e", self.reg_e)
        if self.norm not in OT_NORMS:
            raise ConfigError(f"norm must be one of None, 'median', 'max', got {self.norm!r}")
        max_iter = check_int("max_iter", self.max_iter, low=1)
        tol = check_positive("tol", self.tol)
        X, source = split_fit_domains(X, sample_domain)
        Xs, Xt = X[source], X[~source]
        C = _cost(Xs, Xt)
        scale = {None: 1.0, "median": np.median(C), "max": C.max()}[self.norm]
        if not scale > 0:
            raise DataError(f"norm={self.norm!r} divides the cost by {scale}: every source row "
                            "equals every target row")
        a, b = np.full(len(Xs), 1.0 / len(Xs)), np.full(len(Xt), 1.0 / len(Xt))
        with np.errstate(over="ignore"):     # POT also returns exp(log_u), unused here
            _, log = ot.sinkhorn(a, b, C / scale, reg_e, method="sinkhorn_log", numItermax=max_iter,
                                 stopThr=tol, log=True, warn=False)
        self.X_target_ = Xt
        self.log_v_ = np.asarray(log["log_v"])
        self.cost_scale_ = float(scale)
        self.n_iter_ = int(log["niter"]) + 1
        self.marginal_error_ = float(log["err"][-1])
        self.n_features_in_ = X.shape[1]
        if self.marginal_error_ >= tol:
            warnings.warn(f"Sinkhorn stopped after max_iter={max_iter} iterations with target-marginal "
                          f"error {self.marginal_error_:.2g} >= tol={tol:g}; the mapping uses that plan",
                          ConvergenceWarning, stacklevel=2)
        return self

    def barycentric_weights(self, Xs: np.ndarray) -> np.ndarray:
        """Row-stochastic (n x nt) weights ``softmax_j(g_j - C(x, x^t_j) / reg_e)`` of source rows ``Xs``."""
        check_is_fitted(self, "log_v_")
        logits = self.log_v_ - _cost(Xs, self.X_target_) / (self.cost_scale_ * float(self.reg_e))
        return softmax(logits, axis=1)

    def transform(self, X: Any, y: Any = None, *, sample_domain: Any = None,
                  allow_source: bool = False, **params: Any) -> np.ndarray:
        """Source rows to their barycentric images on the target; target rows pass unchanged."""
        check_is_fitted(self, "log_v_")
        X, source = split_transform_domains(X, sample_domain, allow_source, self.n_features_in_)
        out = X.copy()
        if source.any():
            out[source] = self.barycentric_weights(X[source]) @ self.X_target_
        return out

    def fit_transform(self, X: Any, y: Any = None, *, sample_domain: Any = None,
                      **params: Any) -> np.ndarray:
        return self.fit(X, y, sample_domain=sample_domain).transform(
            X, sample_domain=sample_domain, allow_source=True)
