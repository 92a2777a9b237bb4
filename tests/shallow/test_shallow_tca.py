import numpy as np
import pytest
import scipy.linalg
from shallow_synthetic import accuracy, merged, nuisance_shift
from sklearn.metrics.pairwise import rbf_kernel

from dahash.shallow import JDAAdapter, TCAAdapter, fit_predict_shallow


def _mmd_ratio(Z: np.ndarray, source: np.ndarray) -> float:
    """Squared distance of the domain means over the pooled total variance (scale-free MMD)."""
    gap = Z[source].mean(axis=0) - Z[~source].mean(axis=0)
    return float(gap @ gap / np.trace(np.atleast_2d(np.cov(Z, rowvar=False))))


def _fit(kernel: str, mu: float, n_components: int = 3, seed: int = 0, n: int = 12):
    Xs, ys, Xt, _ = nuisance_shift(seed, n=n)
    X, y, sd = merged(Xs, ys, Xt)
    adapter = TCAAdapter(n_components=n_components, mu=mu, kernel=kernel, gamma=0.01,
                         normalize=False).fit(X, y, sample_domain=sd)
    return adapter, X, sd


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("mu", [1.0, 0.01])
def test_solves_the_papers_eigenproblem_with_unit_norm_components(kernel, mu):
    adapter, X, sd = _fit(kernel, mu)
    n = X.shape[0]
    K = X @ X.T if kernel == "linear" else rbf_kernel(X, gamma=0.01)
    e = np.where(sd >= 0, 1.0 / (sd >= 0).sum(), -1.0 / (sd < 0).sum())
    L, H = np.outer(e, e), np.eye(n) - 1.0 / n
    L /= np.linalg.norm(L)                                    # M / norm(M, 'fro') as in TCA.m
    W = adapter.projection_
    # W holds the 3 leading eigenvectors of (K L K + mu I)^{-1} K H K, each of unit norm, as
    # scipy.linalg.eig returns them in the reference Python port; no whitening to W^T KHK W = I.
    np.testing.assert_allclose(np.linalg.norm(W, axis=0), 1.0, rtol=1e-12)
    # S v = nu v  <=>  KHK v = nu (KLK + mu I) v: solved here in the full n x n space (no rank
    # reduction) as a symmetric-definite problem; a dense solve(KLK + mu I, KHK) would lose digits
    # to condition numbers of up to 1e12 on these unscaled data.
    nu, V = scipy.linalg.eigh(K @ H @ K, K @ L @ K + mu * np.eye(n), subset_by_index=[n - 3, n - 1])
    V = V[:, ::-1] / np.linalg.norm(V[:, ::-1], axis=0)
    np.testing.assert_allclose(np.abs(np.sum(W * V, axis=0)), 1.0, atol=1e-9)
    rayleigh = np.diag(W.T @ K @ H @ K @ W) / np.diag(W.T @ (K @ L @ K + mu * np.eye(n)) @ W)
    np.testing.assert_allclose(rayleigh, nu[::-1], rtol=1e-4)
    # The components keep their own spread: their variances follow the eigenvalues' order.
    variance = np.diag(W.T @ K @ H @ K @ W) / n
    assert variance[0] > variance[-1]
    # The embedding of the training rows is K W.
    np.testing.assert_allclose(adapter.transform(X, sample_domain=sd, allow_source=True), K @ W,
                               rtol=1e-9, atol=1e-9)


def test_normalize_scales_samples_before_and_embeddings_after_as_tca_m():
    Xs, ys, Xt, _ = nuisance_shift(0, n=12)
    X, y, sd = merged(Xs, ys, Xt)
    adapter = TCAAdapter(n_components=3).fit(X, y, sample_domain=sd)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    plain = TCAAdapter(n_components=3, normalize=False).fit(Xn, y, sample_domain=sd)
    np.testing.assert_allclose(adapter.projection_, plain.projection_, atol=1e-12)
    Z = adapter.transform(X, sample_domain=sd, allow_source=True)
    Zp = plain.transform(Xn, sample_domain=sd, allow_source=True)
    np.testing.assert_allclose(Z, Zp / np.linalg.norm(Zp, axis=1, keepdims=True), atol=1e-12)


def test_is_the_first_marginal_only_solve_of_jda():
    """JDA.m's M_0 = C e e^T, Frobenius-normalised, is TCA.m's M: same embedding at lam = mu."""
    Xs, ys, Xt, _ = nuisance_shift(1, n=12)
    X, y, sd = merged(Xs, ys, Xt)
    tca = TCAAdapter(n_components=4, mu=0.5).fit(X, y, sample_domain=sd)
    jda = JDAAdapter(n_components=4, lam=0.5, n_iter=1).fit(X, y, sample_domain=sd)
    Zt = tca.transform(X, sample_domain=sd, allow_source=True)
    Zj = jda.transform(X, sample_domain=sd, allow_source=True)
    signs = np.sign(np.sum(Zt * Zj, axis=0))                 # eigenvectors are defined up to sign
    np.testing.assert_allclose(Zt, Zj * signs, atol=1e-9)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_embedding_has_much_smaller_mmd_than_the_raw_features(kernel):
    adapter, X, sd = _fit(kernel, 1.0)
    Z = adapter.transform(X, sample_domain=sd, allow_source=True)
    raw, embedded = _mmd_ratio(X, sd >= 0), _mmd_ratio(Z, sd >= 0)
    assert raw > 1.0
    assert embedded < 0.01 * raw


def test_mu_weighs_the_norm_term_as_in_the_paper():
    """Small mu lets the MMD term dominate (shift removed); large mu leaves the plain variance
    objective, which keeps the high-variance shifted direction.  skada's reciprocal mu would
    reverse this."""
    small, X, sd = _fit("linear", 1e-3)
    large, _, _ = _fit("linear", 1e6)
    mmd_small = _mmd_ratio(small.transform(X, sample_domain=sd, allow_source=True), sd >= 0)
    mmd_large = _mmd_ratio(large.transform(X, sample_domain=sd, allow_source=True), sd >= 0)
    assert mmd_small < 0.01
    assert mmd_large > 0.1


def test_transform_does_not_depend_on_row_order():
    adapter, X, sd = _fit("rbf", 1.0)
    order = np.random.default_rng(0).permutation(len(X))        # interleave source and target
    together = adapter.transform(X[order], sample_domain=sd[order], allow_source=True)
    one_by_one = np.vstack([adapter.transform(X[i:i + 1], sample_domain=sd[i:i + 1],
                                              allow_source=True) for i in order])
    np.testing.assert_allclose(together, one_by_one, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_removes_a_shifted_nuisance_direction(seed):
    Xs, ys, Xt, yt = nuisance_shift(seed)
    plain = accuracy(fit_predict_shallow("none", Xs, ys, Xt, preprocess="none"), yt)
    tca = accuracy(fit_predict_shallow("tca", Xs, ys, Xt, preprocess="none", n_components=3,
                                       normalize=False), yt)
    assert plain < 0.60
    assert tca > 0.93


@pytest.mark.parametrize("params, message", [
    (dict(n_components=0), r"n_components must be an integer >= 1, got 0"),
    (dict(n_components=500), r"n_components must be <= \d+ for these data"),
    (dict(mu=0.0), r"mu must be a finite number > 0, got 0.0"),
    (dict(kernel="poly"), r"kernel must be one of 'linear', 'rbf', got 'poly'"),
    (dict(gamma=-1), r"gamma must be a finite number > 0, got -1"),
    (dict(normalize="yes"), r"normalize must be True or False, got 'yes'"),
])
def test_bad_parameters_are_rejected_by_name(params, message):
    Xs, ys, Xt, _ = nuisance_shift(0, n=10)
    X, y, sd = merged(Xs, ys, Xt)
    with pytest.raises(ValueError, match=message):
        TCAAdapter(**params).fit(X, y, sample_domain=sd)
