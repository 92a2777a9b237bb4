"""Proxy A-distance between two domains (Ben-David et al. 2007/2010; paper Figure 3a).

The A-distance measures how well a classifier can tell the two domains apart.  Its usual
estimate, the *proxy* A-distance, is ``2 (1 - 2 err)`` where ``err`` is the held-out error of a
linear classifier trained to label each row "source" or "target".  Venkateswara et al. used a
LIBLINEAR SVM with 5-fold cross-validation; this module does the same with scikit-learn's
:class:`~sklearn.svm.LinearSVC` (which wraps LIBLINEAR).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from dahash.errors import ConfigError, DataError

#: Grid the SVM's C is chosen from when ``C`` is None, as multiples of ``1 / n_features``: after
#: standardisation a row's squared norm is about ``n_features``, so ``C * n_features`` is the
#: regularisation strength that matters, and one grid serves 64-bit codes and 4,096-d fc7 alike.
#: (Larger C only slows LIBLINEAR down on high-dimensional, hard-to-separate features.)
C_SCALES: tuple[float, ...] = (0.1, 1.0, 10.0)
#: Folds of the inner cross-validation that picks C on the training folds only.
INNER_FOLDS = 3
#: LIBLINEAR iteration cap; generous so the grid's largest C still converges on fc7-sized features.
MAX_ITER = 20_000


def _as_matrix(name: str, x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise DataError(f"{name} must be a 2-D array of feature rows, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"{name} contains NaN or infinite values")
    return a


def _svm(c: float) -> LinearSVC:
    return LinearSVC(C=c, dual="auto", max_iter=MAX_ITER)


def _select_c(x: np.ndarray, y: np.ndarray, grid: list[float], seed: int) -> float:
    """The C of ``grid`` with the fewest inner-CV errors on ``(x, y)`` (ties: the smallest C)."""
    errors = np.zeros(len(grid), dtype=np.int64)
    inner = StratifiedKFold(n_splits=INNER_FOLDS, shuffle=True, random_state=seed)
    for train, val in inner.split(x, y):
        scaler = StandardScaler().fit(x[train])  # standardised on the inner training rows only
        xt, xv = scaler.transform(x[train]), scaler.transform(x[val])
        for i, c in enumerate(grid):
            errors[i] += np.count_nonzero(_svm(c).fit(xt, y[train]).predict(xv) != y[val])
    return grid[int(np.argmin(errors))]


def proxy_a_distance(source: np.ndarray, target: np.ndarray, *, folds: int = 5, seed: int = 0,
                     C: float | None = None, max_per_domain: int | None = None) -> float:
    """Proxy A-distance ``2 (1 - 2 err)`` between the rows of ``source`` and ``target``.

    ``err`` is the ``folds``-fold cross-validated error of a linear SVM (LIBLINEAR via
    :class:`sklearn.svm.LinearSVC`) that labels each row source (0) or target (1):

    * **Balanced domains.**  The larger domain is subsampled without replacement (with ``seed``) to
      the smaller domain's size, and both are further capped at ``max_per_domain`` rows if given.
      With equal class sizes the plain error equals the balanced error, and a classifier cannot
      score below 0.5 error by predicting the majority domain (a 10:1 split would otherwise give
      ``err = 1/11`` and ``d = 1.64`` for two samples of the *same* distribution).
    * **Folds.**  :class:`~sklearn.model_selection.StratifiedKFold` shuffled with ``seed``; ``err``
      is the fraction of all held-out rows misclassified (every row is held out exactly once).
    * **Standardisation** (zero mean, unit variance per feature) is fit on the training folds only
      and applied to the held-out fold.
    * **C.**  If ``C`` is None it is chosen per outer fold from the grid ``s / n_features`` for
      ``s`` in :data:`C_SCALES`, by a stratified :data:`INNER_FOLDS`-fold cross-validation on that
      fold's training rows only (standardised within each inner split; the held-out fold never
      influences C), the usual Ben-David / Ganin et al. practice; ties go to the smaller C.
      Otherwise ``C`` is used as is.  (The paper does not say how it set C.)

    Cost: ``folds * (INNER_FOLDS * len(C_SCALES) + 1)`` LIBLINEAR fits -- about 5-15 s for
    2 x 1,000 rows of 1,280 features on two busy cores; ``max_per_domain`` caps it.

    The value is reported as computed, **not clipped** to ``[0, 2]``: when the domains are
    indistinguishable the cross-validated error hovers around 0.5 and can exceed it slightly,
    giving a small negative ``d``; read ``|d| < ~0.2`` as "no detectable discrepancy".  ``d``
    approaches 2 for perfectly separable domains.

    Raises ValueError (:class:`~dahash.errors.DataError` / :class:`~dahash.errors.ConfigError`)
    for non-2-D or non-finite inputs, mismatched feature dimensions, bad ``folds`` / ``C`` /
    ``max_per_domain``, or too few rows per domain for the folds.
    """
    src = _as_matrix("source", source)
    tgt = _as_matrix("target", target)
    if src.shape[1] != tgt.shape[1]:
        raise DataError(f"source and target feature dimensions differ: source has {src.shape[1]} "
                        f"columns, target has {tgt.shape[1]}")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, got {folds!r}")
    if C is not None and not (np.isfinite(C) and C > 0):
        raise ConfigError(f"C must be a positive number or None, got {C!r}")
    if max_per_domain is not None and (isinstance(max_per_domain, bool) or max_per_domain < 1):
        raise ConfigError(f"max_per_domain must be a positive integer or None, got {max_per_domain!r}")

    n = min(len(src), len(tgt))
    if max_per_domain is not None:
        n = min(n, int(max_per_domain))
    # Every outer training split must still hold INNER_FOLDS rows of each domain when C is searched.
    need = folds
    while C is None and need - -(-need // folds) < INNER_FOLDS:
        need += 1
    if n < need:
        raise DataError(f"too few rows for folds={folds}: source has {len(src)} rows, target has "
                        f"{len(tgt)} (used per domain: {n}); need at least {need} rows in each domain")

    rng = np.random.default_rng(seed)
    src = src[np.sort(rng.choice(len(src), n, replace=False))] if len(src) > n else src
    tgt = tgt[np.sort(rng.choice(len(tgt), n, replace=False))] if len(tgt) > n else tgt
    x = np.concatenate([src, tgt])
    y = np.repeat(np.array([0, 1]), n)

    c_grid = [s / x.shape[1] for s in C_SCALES] if C is None else [float(C)]
    outer = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    wrong = 0
    with warnings.catch_warnings():
        # LIBLINEAR's own default stopping tolerance is far looser than sklearn's; a fit that
        # reaches MAX_ITER still gives a usable separating direction, so don't spam warnings.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in outer.split(x, y):
            c = c_grid[0] if len(c_grid) == 1 else _select_c(x[train], y[train], c_grid, seed)
            scaler = StandardScaler().fit(x[train])
            svm = _svm(c).fit(scaler.transform(x[train]), y[train])
            wrong += int(np.count_nonzero(svm.predict(scaler.transform(x[test])) != y[test]))
    err = wrong / len(y)
    return float(2.0 * (1.0 - 2.0 * err))
