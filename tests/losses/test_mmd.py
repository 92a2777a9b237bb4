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
