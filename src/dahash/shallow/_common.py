"""Helpers shared by the shallow adapters: parameter checks, domain splits, kernels and the
trace-ratio generalized eigenproblem of TCA and JDA."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
from skada.utils import check_X_domain, extract_source_indices
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.utils import TransformerTags

from dahash.errors import ConfigError, DataError

#: scikit-learn's ``check_estimator`` checks every adapter fails by design: each fits on rows of one domain
#: (no ``sample_domain`` means every row is a target row to skada), and an adapter needs both domains.
#: Every other check passes (tests/shallow/test_shallow_api.py runs them all).
NEEDS_BOTH_DOMAINS = ("fit needs source and target rows (sample_domain >= 0 and < 0); the check gives rows of one "
                      "domain only")
EXPECTED_FAILED_CHECKS: dict[str, str] = {name: NEEDS_BOTH_DOMAINS for name in (
    "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self", "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
    "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_transformer_data_not_an_array", "check_transformer_general",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance",
    "check_fit2d_1sample", "check_fit2d_1feature", "check_dict_unchanged", "check_fit_idempotent",
    "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d")}


#: OT's iterative plan adds scikit-learn's check of an ``n_iter_`` after fit, which fails the same way.
OT_EXPECTED_FAILED_CHECKS: dict[str, str] = {**EXPECTED_FAILED_CHECKS, "check_transformer_n_iter": NEEDS_BOTH_DOMAINS}


class AdapterTags:
    """Mixin (before skada's ``BaseAdapter``) declaring what scikit-learn's checks read: a transformer whose
    output is float64 whatever the input's dtype (skada's base sets no transformer tags)."""

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.transformer_tags = TransformerTags(preserves_dtype=[])
        return tags


# Relative size below which a singular value / kernel eigenvalue is treated as exact zero: the
# direction carries no data, so dropping it changes no distance or objective.
RANK_RTOL = 1e-10


def split_fit_domains(X: Any, sample_domain: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 ``X`` and its source mask; both domains must be present.

    skada's convention: ``sample_domain >= 0`` marks source rows, negative values target rows;
    several source (or target) domains are pooled into one, as skada's own subspace adapters do.
    """
    X, sample_domain = check_X_domain(X, sample_domain, allow_multi_source=True,
                                      allow_multi_target=True)
    X = np.asarray(X, dtype=np.float64)
    if not np.isfinite(X).all():
        raise DataError("X contains NaN or infinite values")
    source = extract_source_indices(sample_domain)
    if source.all() or not source.any():
        raise DataError("fit needs both source rows (sample_domain >= 0) and target rows "
                        f"(sample_domain < 0); got {int(source.sum())} source and "
                        f"{int((~source).sum())} target rows")
    return X, source


def split_transform_domains(X: Any, sample_domain: Any, allow_source: bool,
                            n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 ``X`` and its source mask at transform time (skada's rules)."""
    X, sample_domain = check_X_domain(X, sample_domain, allow_source=allow_source,
                                      allow_multi_source=True, allow_multi_target=True)
    X = np.asarray(X, dtype=np.float64)
    if X.shape[1] != n_features:
        raise DataError(f"X has {X.shape[1]} features, but the adapter was fit on {n_features}")
    return X, extract_source_indices(sample_domain)


def l2_normalize_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (all-zero rows stay zero)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def thin_svd(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X = U diag(s) Vt`` restricted to the numerically non-zero singular values."""
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    keep = s > RANK_RTOL * (s[0] if s.size else 0.0)
    return U[:, keep], s[keep], Vt[keep]


def kernel_matrix(kernel: str, X: np.ndarray, Y: np.ndarray, gamma: float) -> np.ndarray:
    if kernel == "linear":
        return X @ Y.T
    return rbf_kernel(X, Y, gamma=gamma)


def sample_coordinates(kernel: str, X: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates ``F`` (n x r) of the rows of ``X`` in a basis of the solution space, and the
    map ``T`` that turns coefficients ``B`` (r x k) into a projection.

    * ``"primal"`` (JDA's ``A`` in feature space, regulariser ``||A||_F^2``): the optimal ``A``
      lies in the span of the data (a component orthogonal to it adds to ``||A||^2`` and to
      nothing else), so with ``X = U S V^T``, ``A = V B`` and ``F = X V = U S``; ``T = V`` (d x r).
    * kernels (TCA's / JDA's ``W`` in sample space, regulariser ``||W||_F^2``): by the same argument
      ``W`` lies in the range of ``K = U diag(lam) U^T``, so ``W = U B``, ``K W = U diag(lam) B``
      and ``F = U diag(lam)``; ``T = U`` (n x r), applied to ``k(x, X_fit)``.

    Either way the problem shrinks to ``r = rank <= min(n, d)`` unknowns per component, which is
    what keeps 2,200 x 1,280 problems cheap.
    """
    if kernel == "primal":
        U, s, Vt = thin_svd(X)
        return U * s, Vt.T
    if kernel == "linear":
        U, s, _ = thin_svd(X)
        return U * s**2, U
    K = rbf_kernel(X, gamma=gamma)
    lam, U = np.linalg.eigh(K)
    keep = lam > RANK_RTOL * lam[-1]
    return U[:, keep] * lam[keep], U[:, keep]


def transfer_components(F: np.ndarray, E: np.ndarray, reg: float, n_components: int,
                        name: str = "n_components") -> np.ndarray:
    """Coefficients ``B`` (r x k), unit-norm columns, of the ``k`` smallest eigenpairs of
    ``(F^T M F + reg I) b = phi F^T H F b`` with ``M = E E^T`` and ``H`` the centring matrix: the
    minimisers of ``tr(B^T (F^T M F + reg I) B)`` subject to ``B^T F^T H F B = I`` up to the scale
    of each column (TCA: Pan et al. 2011, Sec. IV; JDA: Long et al. 2013, Sec. 3).

    ``F^T H F`` is only semi-definite (rank <= n - 1), so the pencil is solved the other way round,
    ``F^T H F b = nu (F^T M F + reg I) b`` with ``nu = 1 / phi``: the right-hand matrix is positive
    definite, which makes it a symmetric-definite problem for ``scipy.linalg.eigh`` and keeps the
    wanted components at the top (``nu`` largest).

    Scale: Pan et al.'s final problem (the trace ratio ``max tr((W^T (KLK + mu I) W)^-1 W^T KHK W)``)
    is invariant to rescaling each column, so the papers fix no scale for the embedding.  Each
    column is returned with unit Euclidean norm, as ``scipy.linalg.eig`` returns the eigenvectors in
    the reference Python port (jindongwang/transferlearning ``TCA.py``, ``JDA.py``); since the
    callers' bases ``T`` are orthonormal, ``||T b|| = ||b|| = 1`` for the projection itself.  The
    component with the larger variance along the data keeps it; rescaling to ``b^T F^T H F b = 1``
    instead (every component of unit variance, a whitening) throws that spread away and was the
    cause of issue 14's 20-point loss with 1-NN.
    """
    r = F.shape[1]
    Fc = F - F.mean(axis=0)
    scatter = Fc.T @ Fc                       # F^T H F, since H is idempotent
    FE = F.T @ E
    penalty = FE @ FE.T
    penalty[np.diag_indices(r)] += reg
    limit = min(r, F.shape[0] - 1)
    if n_components > limit:
        raise ConfigError(f"{name} must be <= {limit} for these data (the rank of the centred "
                          f"data or kernel), got {n_components}")
    nu, V = scipy.linalg.eigh(scatter, penalty, subset_by_index=[r - n_components, r - 1])
    nu, V = nu[::-1], V[:, ::-1]
    if nu[-1] <= RANK_RTOL * max(nu[0], np.finfo(float).tiny):
        raise ConfigError(f"{name} must be <= {int((nu > RANK_RTOL * nu[0]).sum())} for these data "
                          f"(only that many components have non-zero variance), got {n_components}")
    return V / np.linalg.norm(V, axis=0)
