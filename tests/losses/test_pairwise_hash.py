"""Pairwise hash loss against eq. 4-5 and its closed-form gradient, eq. 15."""

import numpy as np
import pytest
import torch

from dahash.losses import PairwiseHashLoss, QuantizationLoss


def _data(n=12, d=16, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.tanh(torch.randn(n, d, generator=g, dtype=torch.float64))
    y = torch.randint(0, classes, (n,), generator=g)
    return u, y


def test_value_matches_eq4_with_weights_and_scale():
    u, y = _data()
    loss = PairwiseHashLoss(like_weight=10.0, scale=0.5)(u, y)
    un, yn = u.numpy(), y.numpy()
    expected = 0.0
    for i in range(len(un)):
        for j in range(len(un)):
            theta = 0.5 * un[i] @ un[j]
            s = float(yn[i] == yn[j])
            w = 10.0 if s else 1.0
            expected += w * (np.log1p(np.exp(theta)) - s * theta)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("scale,like_weight", [(1.0, 1.0), (0.5, 10.0), (0.5, 3.0)])
def test_gradient_matches_eq15(scale, like_weight):
    # Eq. 15 (scale 1, weights 1): dL/du_q = sum_j 2 (sigma(u_q.u_j) - s_qj) u_j + 2 (u_q - sgn u_q).
    # With theta = a <u_i, u_j> and symmetric weights W it becomes 2a sum_j W_qj (sigma(theta_qj) - s_qj) u_j.
    u, y = _data(seed=1)
    u.requires_grad_(True)
    total = PairwiseHashLoss(like_weight=like_weight, scale=scale)(u, y) + QuantizationLoss(beta=1.0)(u)
    (grad,) = torch.autograd.grad(total, u)
    un = u.detach().numpy()
    s = (y.numpy()[:, None] == y.numpy()[None, :]).astype(float)
    w = np.where(s == 1, like_weight, 1.0)
    sig = 1 / (1 + np.exp(-scale * un @ un.T))
    sign = np.where(un >= 0, 1.0, -1.0)
    closed = 2 * scale * (w * (sig - s)) @ un + 2 * (un - sign)
    np.testing.assert_allclose(grad.numpy(), closed, rtol=1e-10, atol=1e-12)


def test_large_inner_products_are_finite():
    # Unbounded outputs (no tanh) with huge inner products: softplus must not overflow.
    u = torch.full((4, 128), 30.0, requires_grad=True)
    y = torch.tensor([0, 1, 0, 1])
    loss = PairwiseHashLoss()(u, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(u.grad).all()


def test_like_pairs_pull_together():
    # Gradient descent on the loss must raise same-class inner products and lower the others.
    u, y = _data(n=8, d=8, classes=2, seed=3)
    u = u.clone().requires_grad_(True)
    opt = torch.optim.SGD([u], lr=0.01)
    for _ in range(200):
        opt.zero_grad()
        PairwiseHashLoss()(torch.tanh(u), y).backward()
        opt.step()
    h = torch.sign(torch.tanh(u)).detach()
    same = (y[:, None] == y[None, :])
    ip = h @ h.T
    assert ip[same].min() > ip[~same].max()
