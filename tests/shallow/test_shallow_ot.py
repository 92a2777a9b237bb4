import warnings

import numpy as np
import ot
import pytest
from shallow_synthetic import accuracy, merged, nuisance_shift
from sklearn.exceptions import ConvergenceWarning

from dahash.shallow import OTAdapter, fit_predict_shallow, preprocess_domains


def _small_problem(seed: int = 0):
    """Unit-scale data: costs of a few units, so reg_e = 1 converges in a few hundred iterations."""
    Xs, ys, Xt, yt = nuisance_shift(seed, n=12)
    Xs, Xt = preprocess_domains(Xs, Xt)
    return Xs / 3, ys, Xt / 3, yt


def test_maps_each_source_row_to_the_barycentre_of_its_entropic_plan_row():
    Xs, ys, Xt, _ = _small_problem()
    X, y, sd = merged(Xs, ys, Xt)
    adapter = OTAdapter(reg_e=0.5).fit(X, y, sample_domain=sd)
    assert adapter.marginal_error_ < 1e-8 and adapter.n_iter_ < 1000
    a, b = np.full(len(Xs), 1 / len(Xs)), np.full(len(Xt), 1 / len(Xt))
    plan = ot.sinkhorn(a, b, ot.dist(Xs, Xt), 0.5, stopThr=1e-12, numItermax=100_000)
    np.testing.assert_allclose(plan.sum(axis=1), a, rtol=1e-9)
    np.testing.assert_allclose(plan.sum(axis=0), b, rtol=1e-9)
    weights = adapter.barycentric_weights(Xs)
    np.testing.assert_allclose(weights, plan / a[:, None], atol=1e-7)        # gamma_ij / a_i
    Z = adapter.transform(X, sample_domain=sd, allow_source=True)
    np.testing.assert_allclose(Z[sd >= 0], (plan / a[:, None]) @ Xt, atol=1e-6)
    np.testing.assert_array_equal(Z[sd < 0], Xt)                              # target unchanged


def test_stays_finite_where_exp_without_log_sum_exp_overflows():
    """Raw nuisance_shift costs reach thousands against reg_e = 1: the barycentric weights are
    still a proper softmax (skada 0.6 returns NaN for most of these rows, docs/baselines.md)."""
    Xs, ys, Xt, yt = nuisance_shift(0)
    X, y, sd = merged(Xs, ys, Xt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        adapter = OTAdapter().fit(X, y, sample_domain=sd)
    assert ot.dist(Xs, Xt).max() > 1000
    weights = adapter.barycentric_weights(Xs)
    assert np.isfinite(weights).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
    assert np.isfinite(adapter.transform(X, sample_domain=sd, allow_source=True)).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mapping_the_source_onto_the_target_undoes_a_shift(seed):
    """Measured on seeds 0-2: OT 0.83-0.88, no adaptation 0.51-0.54 (raw features)."""
    Xs, ys, Xt, yt = nuisance_shift(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mapped = accuracy(fit_predict_shallow("ot", Xs, ys, Xt, preprocess="none"), yt)
    plain = accuracy(fit_predict_shallow("none", Xs, ys, Xt, preprocess="none"), yt)
    assert plain < 0.6
    assert mapped > 0.8


def test_new_source_rows_use_the_same_entropic_map():
    Xs, ys, Xt, _ = _small_problem(1)
    X, y, sd = merged(Xs, ys, Xt)
    adapter = OTAdapter().fit(X, y, sample_domain=sd)
    new = Xs[:5] + 1e-3
    Z = adapter.transform(new, sample_domain=np.ones(5, int), allow_source=True)
    near = adapter.transform(Xs[:5], sample_domain=np.ones(5, int), allow_source=True)
    np.testing.assert_allclose(Z, near, atol=1e-2)
    np.testing.assert_array_equal(adapter.transform(Xt), Xt)


@pytest.mark.parametrize("norm", ["median", "max"])
def test_cost_normalisation_divides_the_cost(norm):
    Xs, ys, Xt, _ = _small_problem(2)
    X, y, sd = merged(Xs, ys, Xt)
    C = ot.dist(Xs, Xt)
    adapter = OTAdapter(norm=norm).fit(X, y, sample_domain=sd)
    assert adapter.cost_scale_ == pytest.approx(np.median(C) if norm == "median" else C.max())
    same = OTAdapter(reg_e=adapter.cost_scale_).fit(X, y, sample_domain=sd)
    np.testing.assert_allclose(adapter.barycentric_weights(Xs), same.barycentric_weights(Xs), atol=1e-9)


def test_warns_when_sinkhorn_stops_before_tol():
    Xs, ys, Xt, _ = _small_problem()
    X, y, sd = merged(Xs, ys, Xt)
    with pytest.warns(ConvergenceWarning, match=r"max_iter=3 iterations"):
        adapter = OTAdapter(max_iter=3).fit(X, y, sample_domain=sd)
    assert adapter.n_iter_ == 3 and adapter.marginal_error_ > 1e-8


@pytest.mark.parametrize("params, message", [
    (dict(reg_e=0), r"reg_e must be a finite number > 0, got 0"),
    (dict(norm="mean"), r"norm must be one of None, 'median', 'max', got 'mean'"),
    (dict(max_iter=0), r"max_iter must be an integer >= 1, got 0"),
    (dict(tol=-1.0), r"tol must be a finite number > 0, got -1.0"),
])
def test_bad_parameters_are_rejected_by_name(params, message):
    Xs, ys, Xt, _ = _small_problem()
    X, y, sd = merged(Xs, ys, Xt)
    with pytest.raises(ValueError, match=message):
        OTAdapter(**params).fit(X, y, sample_domain=sd)
