import numpy as np
import pytest
import scipy.linalg
from shallow_synthetic import accuracy, merged, stretched_copy

from dahash.shallow import CORALAdapter, fit_predict_shallow


def _dense_coral(Xs: np.ndarray, Xt: np.ndarray, reg: float) -> np.ndarray:
    """Algorithm 1 of Sun et al. (2016) verbatim, with dense matrix roots."""
    d = Xs.shape[1]
    Cs = np.cov(Xs, rowvar=False) + reg * np.eye(d)
    Ct = np.cov(Xt, rowvar=False) + reg * np.eye(d)
    return Xs @ np.real(scipy.linalg.inv(scipy.linalg.sqrtm(Cs))) @ np.real(scipy.linalg.sqrtm(Ct))


@pytest.mark.parametrize("shape_s, shape_t", [((40, 6), (35, 6)), ((5, 12), (7, 12))])
@pytest.mark.parametrize("reg", [1.0, 0.05])
def test_matches_algorithm_1_and_leaves_target_unchanged(shape_s, shape_t, reg):
    rng = np.random.default_rng(0)
    Xs = rng.normal(size=shape_s) @ rng.normal(size=(shape_s[1],) * 2) + 2.0
    Xt = rng.normal(size=shape_t) * 3.0 + 1.0
    X, _, sd = merged(Xs, np.zeros(len(Xs), int), Xt)
    Z = CORALAdapter(reg=reg).fit_transform(X, sample_domain=sd)
    np.testing.assert_allclose(Z[sd >= 0], _dense_coral(Xs, Xt, reg), rtol=1e-8, atol=1e-9)
    np.testing.assert_array_equal(Z[sd < 0], Xt)


def test_recoloured_source_covariance_equals_target_covariance():
    rng = np.random.default_rng(1)
    Xs = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5))
    Xt = rng.normal(size=(150, 5)) @ rng.normal(size=(5, 5)) * 4.0
    X, _, sd = merged(Xs, np.zeros(len(Xs), int), Xt)
    reg = 1.0
    adapter = CORALAdapter(reg=reg).fit(X, sample_domain=sd)
    Zs = adapter.transform(Xs, sample_domain=np.ones(len(Xs), int), allow_source=True)
    A = adapter.transform(np.eye(5), sample_domain=np.ones(5, int), allow_source=True)
    # A^T (C_S + reg I) A = C_T + reg I, i.e. cov(D_S A) + reg A^T A = cov(D_T) + reg I.
    np.testing.assert_allclose(np.cov(Zs, rowvar=False) + reg * A.T @ A,
                               np.cov(Xt, rowvar=False) + reg * np.eye(5), rtol=1e-9, atol=1e-9)
    # With a negligible regulariser the re-coloured covariance is the target's.
    adapter.set_params(reg=1e-8).fit(X, sample_domain=sd)
    Zs = adapter.transform(Xs, sample_domain=np.ones(len(Xs), int), allow_source=True)
    np.testing.assert_allclose(np.cov(Zs, rowvar=False), np.cov(Xt, rowvar=False), rtol=1e-5,
                               atol=1e-5 * np.abs(np.cov(Xt, rowvar=False)).max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_undoes_a_stretch_that_defeats_plain_1nn(seed):
    Xs, ys, Xt, yt = stretched_copy(seed)
    plain = accuracy(fit_predict_shallow("none", Xs, ys, Xt, preprocess="none"), yt)
    coral = accuracy(fit_predict_shallow("coral", Xs, ys, Xt, preprocess="none"), yt)
    assert plain < 0.70
    assert coral > 0.93


@pytest.mark.parametrize("reg", [0, -1.0, float("nan"), "1"])
def test_bad_reg_is_rejected_by_name(reg):
    X, _, sd = merged(np.ones((4, 2)) * np.arange(4)[:, None], np.zeros(4, int),
                      np.ones((3, 2)) * np.arange(3)[:, None])
    with pytest.raises(ValueError, match=r"reg must be a finite number > 0, got"):
        CORALAdapter(reg=reg).fit(X, sample_domain=sd)
