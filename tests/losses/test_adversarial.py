"""The gradient reversal layer, DANN's coefficient schedule and the domain-adversarial loss."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from dahash.losses import DomainAdversarialLoss, grl_coefficient, reverse_gradient


def test_reversal_is_identity_forward_and_negated_scaled_gradient_backward() -> None:
    x = torch.randn(6, 3, requires_grad=True)
    weights = torch.randn(6, 3)
    y = reverse_gradient(x, 0.7)
    torch.testing.assert_close(y, x)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, -0.7 * weights)


def test_coefficient_follows_ganins_schedule() -> None:
    assert grl_coefficient(0.0) == 0.0
    assert grl_coefficient(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert grl_coefficient(1.0) == pytest.approx(0.9999092, abs=1e-7)
    values = [grl_coefficient(p / 10) for p in range(11)]
    assert all(a < b for a, b in zip(values, values[1:]))


def test_discriminator_descends_and_features_ascend_the_domain_loss() -> None:
    """The discriminator's parameters get the ordinary gradient of the BCE; the features get
    minus the coefficient times it: the feature extractor is trained to confuse the domains."""
    torch.manual_seed(0)
    loss_fn = DomainAdversarialLoss(8, hidden=16).eval()  # no dropout: both passes see the same network
    features = torch.randn(10, 8, requires_grad=True)
    loss = loss_fn(features, n_source=4, coefficient=0.3)
    # The same BCE without the reversal layer, by hand.
    plain = features.detach().clone().requires_grad_(True)
    logits = loss_fn.discriminator(plain).squeeze(1)
    expected = F.binary_cross_entropy_with_logits(logits, torch.tensor([0.0] * 4 + [1.0] * 6))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    disc_grads = [p.grad.clone() for p in loss_fn.discriminator.parameters()]
    loss_fn.zero_grad()
    expected.backward()
    for got, want in zip(disc_grads, (p.grad for p in loss_fn.discriminator.parameters())):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(features.grad, -0.3 * plain.grad)
