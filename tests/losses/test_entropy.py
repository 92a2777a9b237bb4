"""Entropy loss against eq. 6-7 and the supplementary's closed-form gradients, eq. 25 and 32."""

import numpy as np
import pytest
import torch

from dahash.losses import EntropyLoss, class_log_probabilities


def _grouped(n_classes=4, k=3, n_t=7, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.tanh(torch.randn(n_classes * k, d, generator=g, dtype=torch.float64))
    v = torch.tanh(torch.randn(n_t, d, generator=g, dtype=torch.float64))
    labels = torch.arange(n_classes).repeat_interleave(k)  # K per class, class by class
    return u, v, labels


def _reference_probs(v, u, labels, n_classes):
    e = np.exp(v @ u.T)
    num = np.stack([e[:, labels == j].sum(1) for j in range(n_classes)], 1)
    return num / e.sum(1, keepdims=True), e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_value_matches_eq6_eq7(reduction):
    u, v, labels = _grouped()
    p, _ = _reference_probs(v.numpy(), u.numpy(), labels.numpy(), 4)
    h = -(p * np.log(p)).sum(1)
    expected = h.sum() if reduction == "sum" else h.mean()
    got = EntropyLoss(4, reduction=reduction)(v, u, labels)
    assert got.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradients_match_eq25_and_eq32(reduction):
    n_classes, k = 4, 3
    u, v, labels = _grouped(n_classes, k, seed=1)
    u.requires_grad_(True)
    v.requires_grad_(True)
    loss = EntropyLoss(n_classes, reduction=reduction)(v, u, labels)
    gu, gv = torch.autograd.grad(loss, (u, v))
    un, vn, ln = u.detach().numpy(), v.detach().numpy(), labels.numpy()
    n_t = len(vn)
    p, pbar = _reference_probs(vn, un, ln, n_classes)  # pbar[i, c*k + k'] = p-bar_{i c k'}
    norm = n_t if reduction == "mean" else 1.0
    # Eq. 32: dH/dv_q = -1/n_t sum_j (log p_qj + 1) (sum_k pbar_qjk u_k^j - p_qj sum_{l,k'} pbar_qlk' u_k'^l)
    closed_v = np.zeros_like(vn)
    for q in range(n_t):
        all_mean = (pbar[q][:, None] * un).sum(0)
        for j in range(n_classes):
            in_class = (pbar[q, ln == j][:, None] * un[ln == j]).sum(0)
            closed_v[q] -= (np.log(p[q, j]) + 1) * (in_class - p[q, j] * all_mean)
    closed_v /= norm
    # Eq. 25: dH/du_q^p = -1/n_t sum_i sum_j v_i (log p_ij + 1) [I{j=p} pbar_ipq - p_ij pbar_ipq]
    closed_u = np.zeros_like(un)
    for col in range(len(un)):
        cls = ln[col]
        for i in range(n_t):
            for j in range(n_classes):
                bracket = (pbar[i, col] if j == cls else 0.0) - p[i, j] * pbar[i, col]
                closed_u[col] -= vn[i] * (np.log(p[i, j]) + 1) * bracket
    closed_u /= norm
    np.testing.assert_allclose(gv.numpy(), closed_v, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gu.numpy(), closed_u, rtol=1e-9, atol=1e-12)


def test_missing_class_and_saturated_outputs_are_finite():
    # Class 2 of 4 is absent from the batch; outputs are exactly +-1 with 128 bits, so
    # inner products reach +-128 and exp() alone would overflow float32.
    g = torch.Generator().manual_seed(0)
    u = torch.sign(torch.randn(9, 128, generator=g)).requires_grad_(True)
    v = torch.sign(torch.randn(5, 128, generator=g)).requires_grad_(True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 3, 3, 3])
    log_p = class_log_probabilities(v, u, labels, 4)
    assert torch.isneginf(log_p[:, 2]).all()
    assert torch.allclose(log_p[:, [0, 1, 3]].exp().sum(1), torch.ones(5))
    loss = EntropyLoss(4)(v, u, labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(u.grad).all() and torch.isfinite(v.grad).all()


def test_confident_targets_have_low_entropy():
    u = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [-1.0, -1.0]]) * 5
    labels = torch.tensor([0, 0, 1, 1])
    confident = EntropyLoss(2)(torch.tensor([[1.0, 1.0]]), u, labels)
    undecided = EntropyLoss(2)(torch.tensor([[1.0, -1.0]]), u, labels)
    assert confident.item() < 1e-6
    assert undecided.item() == pytest.approx(np.log(2), rel=1e-6)
