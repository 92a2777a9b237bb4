import numpy as np
import pytest
import scipy.linalg
from shallow_synthetic import class_conditional_shift, merged
from sklearn.metrics.pairwise import rbf_kernel

from dahash.shallow import JDAAdapter
from dahash.shallow.jda import jda_mmd_factor


def _dense_mmd_matrix(source: np.ndarray, y_source: np.ndarray, y_target: np.ndarray | None,
                      classes: np.ndarray) -> np.ndarray:
    """``C M_0 + sum_c M_c`` entry by entry (Long et al. 2013, Sec. 3; ``JDA.m``), Frobenius-normalised."""
    n, ns, nt = source.size, source.sum(), (~source).sum()
    same_s, same_t = np.outer(source, source), np.outer(~source, ~source)
    M = classes.size * np.where(same_s, 1 / ns**2, np.where(same_t, 1 / nt**2, -1 / (ns * nt)))
    if y_target is not None:
        labels = np.empty(n, dtype=y_source.dtype)
        labels[source], labels[~source] = y_source, y_target
        for c in classes:
            in_s, in_t = source & (labels == c), ~source & (labels == c)
            if not in_t.any():
                continue
            M += np.where(np.outer(in_s, in_s), 1 / in_s.sum()**2, 0.0)
            M += np.where(np.outer(in_t, in_t), 1 / in_t.sum()**2, 0.0)
            M -= np.where(np.outer(in_s, in_t) | np.outer(in_t, in_s), 1 / (in_s.sum() * in_t.sum()), 0.0)
    return M / np.linalg.norm(M)


def _problem(seed: int, n_per_class: int, n_features: int):
    rng = np.random.default_rng(seed)
    ys = np.repeat(np.arange(3), n_per_class)
    mu = rng.normal(size=(3, n_features)) * 2
    Xs = mu[ys] + rng.normal(size=(ys.size, n_features))
    Xt = mu[ys] + rng.normal(size=(ys.size, n_features)) + 0.5
    return merged(Xs, ys, Xt)


@pytest.mark.parametrize("kernel, n_per_class, n_features, n_iter", [
    ("primal", 15, 6, 1),      # d < n, marginal MMD only
    ("primal", 15, 6, 3),      # with pseudo-labels
    ("primal", 6, 40, 3),      # d > n: solved in the span of the data
    ("linear", 10, 5, 2),
    ("rbf", 10, 5, 2),
])
def test_solves_the_papers_generalized_eigenproblem(kernel, n_per_class, n_features, n_iter):
    X, y, sd = _problem(0, n_per_class, n_features)
    lam, k = 0.1, 3
    adapter = JDAAdapter(n_components=k, lam=lam, kernel=kernel, n_iter=n_iter, gamma=0.5)
    adapter.fit(X, y, sample_domain=sd)
    source = sd >= 0
    previous = adapter.pseudo_labels_[-2] if n_iter > 1 else None
    M = _dense_mmd_matrix(source, y[source], previous, np.unique(y[source]))
    n = X.shape[0]
    H = np.eye(n) - 1.0 / n
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)          # normalize=True
    if kernel == "primal":
        Xd = Xn.T                                               # d x n, as in the paper
    else:
        Xd = Xn @ Xn.T if kernel == "linear" else rbf_kernel(Xn, gamma=0.5)
    left = Xd @ M @ Xd.T + lam * np.eye(Xd.shape[0])
    right = Xd @ H @ Xd.T
    A = adapter.projection_
    np.testing.assert_allclose(np.linalg.norm(A, axis=0), 1.0, rtol=1e-12)   # unit-norm columns
    np.testing.assert_allclose(A.T @ right @ A, np.diag(np.diag(A.T @ right @ A)),
                               atol=1e-8 * np.abs(right).max())   # X H X^T-orthogonal, not whitened
    phi = np.diag(A.T @ left @ A) / np.diag(A.T @ right @ A)
    np.testing.assert_allclose(left @ A, right @ A * phi, atol=1e-8 * np.abs(left).max())
    # the k smallest finite eigenvalues of the pencil, as eigs(..., 'SM') in JDA.m
    values = scipy.linalg.eigvals(left, right)
    values = np.sort(values[np.isfinite(values) & (np.abs(values.imag) < 1e-8)].real)
    np.testing.assert_allclose(np.sort(phi), values[:k], rtol=1e-6)
    Z = (Xd.T if kernel == "primal" else Xd) @ A                # A^T X, then unit rows (run_surf.m)
    np.testing.assert_allclose(adapter.transform(X, sample_domain=sd, allow_source=True),
                               Z / np.linalg.norm(Z, axis=1, keepdims=True), rtol=1e-9, atol=1e-9)


def test_mmd_factor_skips_classes_without_target_pseudo_labels():
    source = np.r_[np.ones(6, bool), np.zeros(5, bool)]
    ys = np.array([0, 0, 1, 1, 2, 2])
    yt = np.array([0, 0, 1, 0, 1])                            # no target row labelled 2
    E = jda_mmd_factor(source, ys, yt, np.arange(3))
    assert E.shape == (11, 3)                                 # marginal + classes 0 and 1
    np.testing.assert_allclose(E @ E.T, _dense_mmd_matrix(source, ys, yt, np.arange(3)), atol=1e-14)


def test_pseudo_label_accuracy_increases_over_iterations():
    # Over seeds 0-11 the last solve reached 1.0 on 8 seeds; on the other 4 one pair of classes
    # keeps swapped pseudo-labels (0.77-0.82; seed 0 ends 3 points below its TCA step). Every seed
    # counts here, none is picked.
    first, last = [], []
    for seed in range(12):
        Xs, ys, Xt, yt = class_conditional_shift(seed)
        X, y, sd = merged(Xs, ys, Xt)
        adapter = JDAAdapter(n_components=8, normalize=False).fit(X, y, sample_domain=sd)
        history = (adapter.pseudo_labels_ == yt).mean(axis=1)
        assert history.shape == (10,)
        first.append(history[0])
        last.append(history[-1])
    first, last = np.array(first), np.array(last)
    assert (first <= 0.90).all()             # marginal MMD only (a TCA step)
    assert (last > 0.98).sum() >= 8          # the conditional MMDs removed the corrupted dims
    assert (last - first).mean() > 0.2


@pytest.mark.parametrize("params, message", [
    (dict(n_components=0), r"n_components must be an integer >= 1, got 0"),
    (dict(lam=0), r"lam must be a finite number > 0, got 0"),
    (dict(n_iter=0), r"n_iter must be an integer >= 1, got 0"),
    (dict(n_iter=2.0), r"n_iter must be an integer >= 1, got 2.0"),
    (dict(kernel="laplacian"), r"kernel must be one of 'primal', 'linear', 'rbf', got 'laplacian'"),
    (dict(gamma=0), r"gamma must be a finite number > 0, got 0"),
])
def test_bad_parameters_are_rejected_by_name(params, message):
    X, y, sd = _problem(0, 5, 4)
    with pytest.raises(ValueError, match=message):
        JDAAdapter(**params).fit(X, y, sample_domain=sd)


def test_source_labels_are_required():
    X, _, sd = _problem(0, 5, 4)
    with pytest.raises(ValueError, match="JDA needs the source labels"):
        JDAAdapter(n_components=2).fit(X, sample_domain=sd)
