"""Linear-time MK-MMD against eq. 9-11 and the closed-form gradients, eq. 12-13."""

import numpy as np
import pytest
import torch

from dahash.losses import LinearMKMMD, MultiLayerMKMMD, default_kernel_multipliers


def _pairs(u, v):
    return [(u[0::2], u[1::2]), (v[0::2], v[1::2]), (u[0::2], v[1::2]), (u[1::2], v[0::2])]


def _median_bandwidth(u, v):
    return np.median(np.concatenate([((a - b) ** 2).sum(1) for a, b in _pairs(u, v)]))


def test_seventeen_kernels_from_2pow_minus8_to_2pow8():
    q = default_kernel_multipliers()
    assert len(q) == 17 and q[0] == 2.0 ** -8 and q[-1] == 2.0 ** 8 and q[8] == 1.0


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_value_matches_eq11(reduction):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(10, 5, generator=g, dtype=torch.float64)
    v = torch.randn(10, 5, generator=g, dtype=torch.float64) + 0.5
    got = LinearMKMMD(reduction=reduction, shuffle=False)(u, v)
    un, vn = u.numpy(), v.numpy()
    m = _median_bandwidth(un, vn)
    q = default_kernel_multipliers().numpy()
    n, kappa = len(un), len(q)
    total = 0.0
    for qm in q:
        k = lambda a, b: np.exp(-qm * ((a - b) ** 2).sum(1) / m)  # noqa: E731
        total += (k(un[0::2], un[1::2]) + k(vn[0::2], vn[1::2]) - k(un[0::2], vn[1::2]) - k(un[1::2], vn[0::2])).sum()
    expected = 2.0 / (n * kappa) * total if reduction == "mean" else total / kappa
    assert got.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradients_match_eq12_eq13(reduction):
    g = torch.Generator().manual_seed(1)
    u = torch.randn(8, 6, generator=g, dtype=torch.float64).requires_grad_(True)
    v = (torch.randn(8, 6, generator=g, dtype=torch.float64) + 0.3).requires_grad_(True)
    loss = LinearMKMMD(reduction=reduction, shuffle=False)(u, v)
    gu, gv = torch.autograd.grad(loss, (u, v))
    un, vn = u.detach().numpy(), v.detach().numpy()
    n = len(un)
    m = _median_bandwidth(un, vn)
    q = default_kernel_multipliers().numpy()
    kappa = len(q)
    # Paper's prefactor 2/(n kappa) is eq. 9's mean; the sum over quadruples drops the 2/n.
    pre = 2.0 / (n * kappa) if reduction == "mean" else 1.0 / kappa
    closed_u, closed_v = np.zeros_like(un), np.zeros_like(vn)
    for qm in q:
        sigma = m / qm  # k_m(x, y) = exp(-||x - y||^2 / sigma_m)
        k = lambda a, b: np.exp(-((a - b) ** 2).sum() / sigma)  # noqa: E731
        for i in range(n // 2):
            a, b = 2 * i, 2 * i + 1  # the paper's 2i-1, 2i (1-based)
            kuu = 2 / sigma * k(un[a], un[b]) * (un[a] - un[b])
            kvv = 2 / sigma * k(vn[a], vn[b]) * (vn[a] - vn[b])
            kuv1 = 2 / sigma * k(un[a], vn[b]) * (un[a] - vn[b])
            kuv2 = 2 / sigma * k(un[b], vn[a]) * (un[b] - vn[a])
            # Eq. 12 (source output u_q) and eq. 13 (target output v_q).
            closed_u[b] += pre * kuu
            closed_u[a] -= pre * kuu
            closed_u[a] += pre * kuv1
            closed_u[b] += pre * kuv2
            closed_v[b] += pre * kvv
            closed_v[a] -= pre * kvv
            closed_v[b] -= pre * kuv1
            closed_v[a] -= pre * kuv2
    np.testing.assert_allclose(gu.numpy(), closed_u, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(gv.numpy(), closed_v, rtol=1e-9, atol=1e-14)


def test_zero_for_identical_domains_and_positive_for_shift():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2000, 4, generator=g)
    y = torch.randn(2000, 4, generator=g)
    mmd = LinearMKMMD(reduction="mean")
    same = mmd(x, y, generator=torch.Generator().manual_seed(0))
    shifted = mmd(x, y + 2.0, generator=torch.Generator().manual_seed(0))
    assert abs(same.item()) < 0.02
    assert shifted.item() > 0.2


def test_degenerate_batches_are_finite():
    # Dead ReLU layer: every representation is zero, so the median distance is 0.
    z = torch.zeros(6, 8, requires_grad=True)
    loss = LinearMKMMD()(z, torch.zeros(6, 8))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    # Uneven and odd sizes use the largest even common size; a single pair gives 0 samples.
    assert torch.isfinite(LinearMKMMD()(torch.randn(7, 3), torch.randn(5, 3)))
    assert LinearMKMMD()(torch.randn(1, 3), torch.randn(1, 3)).item() == 0.0


def test_multilayer_sums_layers():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(10, 3, generator=g), torch.randn(10, 3, generator=g)
    c, d = torch.randn(10, 5, generator=g), torch.randn(10, 5, generator=g) + 1
    single = LinearMKMMD(shuffle=False)
    multi = MultiLayerMKMMD(single)
    assert multi([a, c], [b, d]).item() == pytest.approx(single(a, b).item() + single(c, d).item(), rel=1e-6)


# --- Class-aware estimators -------------------------------------------------------------------

from dahash.losses import TargetClassPrior, class_pair_weights  # noqa: E402


def test_pair_weights_for_k_per_class_batches_by_hand():
    # C = 10 classes, K = 5: same-class pairs occur with p_w = 4/49 instead of 1/10.
    labels = torch.arange(10).repeat_interleave(5)
    first, second = torch.tensor([0, 0, 3]), torch.tensor([0, 1, 3])
    same_diff, cross1, cross2 = class_pair_weights(labels, first, second)
    np.testing.assert_allclose(same_diff.numpy(), [0.1 / (4 / 49), 49 / 50, 0.1 / (4 / 49)], rtol=1e-12)
    np.testing.assert_allclose(cross1.numpy(), 1.0)
    np.testing.assert_allclose(cross2.numpy(), 1.0)
    # Class weights: w = (0.5, 0.5, 0, ...) renormalised over present classes; P(a) = 1/10.
    w = torch.zeros(10, dtype=torch.float64)
    w[:2] = 1.0
    pair, c1, _ = class_pair_weights(labels, first, second, class_weights=w)
    np.testing.assert_allclose(pair.numpy(), [0.25 / (20 / 2450), 0.25 / (25 / 2450), 0.0], rtol=1e-12)
    np.testing.assert_allclose(c1.numpy(), [5.0, 5.0, 0.0], rtol=1e-12)


def _population(source, labels, target, w, bandwidth):
    """Exact expectation of one quadruple's h when the source class of each slot is drawn
    independently from ``w`` (distinct items within a class) and target items are distinct."""
    k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / bandwidth)  # noqa: E731
    C = len(w)
    e_ss = 0.0
    for a in range(C):
        for b in range(C):
            xa, xb = source[labels == a], source[labels == b]
            kab = k(xa, xb)
            mean = (kab.sum() - np.trace(kab)) / (len(xa) * (len(xa) - 1)) if a == b else kab.mean()
            e_ss += w[a] * w[b] * mean
    ktt = k(target, target)
    e_tt = (ktt.sum() - np.trace(ktt)) / (len(target) * (len(target) - 1))
    e_st = sum(w[a] * k(source[labels == a], target).mean() for a in range(C))
    same = np.mean([(lambda m: (m.sum() - np.trace(m)) / (len(m) * (len(m) - 1)))(k(source[labels == a], source[labels == a]))
                    for a in range(C)])
    diff = np.mean([k(source[labels == a], source[labels == b]).mean() for a in range(C) for b in range(C) if a != b])
    return e_ss + e_tt - 2 * e_st, same, diff


def _stratified_values(estimator, source, labels, target, K, n_batches, class_weights=None, seed=0):
    """The estimate on each of ``n_batches`` batches of exactly K distinct items per class (class by class)
    and C*K distinct target items, as the trainer's sampler lays them out; the same batches and pairings
    for the same ``seed``."""
    rng = np.random.default_rng(seed)
    C = int(labels.max()) + 1
    by_class = [np.flatnonzero(labels == c) for c in range(C)]
    s_t, t_t = torch.from_numpy(source), torch.from_numpy(target)
    y_batch = torch.arange(C).repeat_interleave(K)
    values = []
    for b in range(n_batches):
        rows = np.concatenate([rng.choice(idx, K, replace=False) for idx in by_class])
        trows = rng.choice(len(target), C * K, replace=False)
        values.append(estimator(s_t[rows], t_t[trows], generator=torch.Generator().manual_seed(b), labels=y_batch,
                                class_weights=class_weights).item())
    return np.asarray(values)


def _stratified_mean(estimator, source, labels, target, K, n_batches, class_weights=None, seed=0):
    """Mean and standard error of :func:`_stratified_values`."""
    values = _stratified_values(estimator, source, labels, target, K, n_batches, class_weights, seed)
    return values.mean(), _se(values)


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(0)
    C, per_class = 3, 8
    labels = np.repeat(np.arange(C), per_class)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    source = centres[labels] + 0.3 * rng.standard_normal((C * per_class, 2))
    target = np.array([1.0, 1.0]) + 0.8 * rng.standard_normal((20, 2))
    return source, labels, target


def test_balanced_estimate_is_unbiased_over_stratified_batches_and_authors_is_not(clustered):
    source, labels, target = clustered
    K, C, bandwidth = 2, 3, 2.0
    exact, same, diff = _population(source, labels, target, np.full(C, 1 / C), bandwidth)
    p_w = (K - 1) / (C * K - 1)
    bias = -(1 / C - p_w) * (same - diff)
    kw = dict(kernel_multipliers=[1.0], reduction="mean", bandwidth=bandwidth)
    # Both estimators on the same 12,000 batches and pairings (fixed seeds): their difference varies far
    # less than either, so it measures how much of the bias the balanced weights remove.
    balanced = _stratified_values(LinearMKMMD(estimator="balanced", **kw), source, labels, target, K, 12000)
    authors = _stratified_values(LinearMKMMD(**kw), source, labels, target, K, 12000)
    se_b, se_a = (_se(v) for v in (balanced, authors))
    removed, se_d = (authors - balanced).mean(), _se(authors - balanced)
    assert abs(bias) > 10 * max(se_a, se_b)  # the test can tell the two apart
    assert 0.1 * abs(bias) > 6 * se_d  # ... and a weighting that removed only 90 % of the bias from the balanced
    assert removed == pytest.approx(bias, abs=3 * se_d)  # 90 % would be 0.1 |bias| > 6 se_d away: it fails here
    assert balanced.mean() == pytest.approx(exact, abs=4 * se_b)
    assert authors.mean() == pytest.approx(exact + bias, abs=4 * se_a)


def _se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values)))


def test_class_weighted_estimate_matches_reweighted_population(clustered):
    source, labels, target = clustered
    w = np.array([0.6, 0.3, 0.1])
    exact, _, _ = _population(source, labels, target, w, 2.0)
    mmd = LinearMKMMD(kernel_multipliers=[1.0], reduction="mean", bandwidth=2.0, estimator="class-weighted")
    mean, se = _stratified_mean(mmd, source, labels, target, 2, 6000, class_weights=torch.tensor(w))
    uniform, _, _ = _population(source, labels, target, np.full(3, 1 / 3), 2.0)
    assert abs(exact - uniform) > 10 * se
    assert mean == pytest.approx(exact, abs=4 * se)


@pytest.mark.parametrize("estimator", ["balanced", "class-weighted"])
def test_weighted_estimators_gradients_against_finite_differences(estimator):
    g = torch.Generator().manual_seed(4)
    u = torch.randn(12, 3, generator=g, dtype=torch.float64, requires_grad=True)
    v = (torch.randn(12, 3, generator=g, dtype=torch.float64) + 0.5).requires_grad_(True)
    labels = torch.arange(3).repeat_interleave(4)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    mmd = LinearMKMMD(estimator=estimator, bandwidth=1.5)
    f = lambda a, b: mmd(a, b, generator=torch.Generator().manual_seed(0), labels=labels,  # noqa: E731
                         class_weights=weights)
    assert torch.autograd.gradcheck(f, (u, v), eps=1e-6, atol=1e-8)


def test_balanced_equals_authors_when_every_row_has_its_own_class():
    # One row per class: no same-class pairs, cross weights 1, pair weight (n-1)/n.
    g = torch.Generator().manual_seed(5)
    u, v = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    labels = torch.arange(6)
    kw = dict(kernel_multipliers=[1.0], bandwidth=1.0)
    bal = LinearMKMMD(estimator="balanced", **kw)(u, v, generator=torch.Generator().manual_seed(1), labels=labels)
    # The same quadruples by hand (forward draws the source, then the target permutation from
    # one generator), with the source-source kernel scaled by 5/6.
    gen = torch.Generator().manual_seed(1)
    s = u[torch.randperm(6, generator=gen)]
    t = v[torch.randperm(6, generator=gen)]
    k = lambda a, b: torch.exp(-(a - b).pow(2).sum(1))  # noqa: E731
    expected = (5 / 6 * k(s[0::2], s[1::2]) + k(t[0::2], t[1::2]) - k(s[0::2], t[1::2]) - k(s[1::2], t[0::2])).sum()
    assert bal.item() == pytest.approx(expected.item(), rel=1e-6)
    authors = LinearMKMMD(**kw)(u, v, generator=torch.Generator().manual_seed(1))
    assert authors.item() != pytest.approx(bal.item(), rel=1e-3)


def test_estimator_arguments_are_checked():
    with pytest.raises(ValueError, match="estimator must be one of"):
        LinearMKMMD(estimator="unbiased")
    with pytest.raises(ValueError, match="random pairing"):
        LinearMKMMD(estimator="balanced", shuffle=False)
    with pytest.raises(ValueError, match="needs the source labels"):
        LinearMKMMD(estimator="balanced")(torch.randn(4, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="class_weights"):
        LinearMKMMD(estimator="class-weighted")(torch.randn(4, 2), torch.randn(4, 2), labels=torch.tensor([0, 0, 1, 1]))


def test_target_class_prior_is_a_moving_average_of_predictions():
    prior = TargetClassPrior(2, momentum=0.5)
    np.testing.assert_allclose(prior.proportions.numpy(), [0.5, 0.5])
    prior.update(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    np.testing.assert_allclose(prior.proportions.numpy(), [0.75, 0.25])
    prior.update(torch.tensor([[0.0, 1.0]]))
    np.testing.assert_allclose(prior.proportions.numpy(), [0.375, 0.625])
    assert "proportions" in prior.state_dict()
