"""Domain-adversarial loss with a gradient reversal layer (Ganin et al., JMLR 2016, eq. 9-10, 13-14 and Sec. 5.2.2)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, coefficient: float) -> Tensor:  # type: ignore[override]
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return -ctx.coefficient * grad, None


def reverse_gradient(x: Tensor, coefficient: float = 1.0) -> Tensor:
    """The gradient reversal layer R_lambda: identity forward, ``-lambda * grad`` backward (eq. 13-14)."""
    return _ReverseGradient.apply(x, float(coefficient))


def grl_coefficient(progress: float, gamma: float = 10.0) -> float:
    """DANN's schedule ``lambda_p = 2 / (1 + exp(-gamma p)) - 1``, p in [0, 1] the training progress (Sec. 5.2.2)."""
    return 2.0 / (1.0 + math.exp(-gamma * float(progress))) - 1.0


class DomainDiscriminator(nn.Sequential):
    """DANN's domain classifier for the Office experiments: x -> 1024 -> 1024 -> 1 logit, ReLU and dropout 0.5 between."""

    def __init__(self, in_features: int, hidden: int = 1024, dropout: float = 0.5) -> None:
        super().__init__(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, 1))
        for module in self:
            if isinstance(module, nn.Linear):
                # Ganin et al. initialise the domain classifier with N(0, 0.01) weights (their Caffe model).
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)


class DomainAdversarialLoss(nn.Module):
    """Domain classification loss behind a gradient reversal layer (Ganin et al., JMLR 2016, eq. 9-10).

    The discriminator minimises the binary cross-entropy of "source" (0) versus "target" (1)
    on the features; the reversed gradient makes the feature extractor maximise it, which
    drives the two domains' feature distributions together.

    Args:
        in_features: width of the features the discriminator reads (fc7).

    Shapes: ``features`` is (n, D) laid out as ``[source rows | target rows]``.

    Example::

        loss_fn = DomainAdversarialLoss(256)
        loss = loss_fn(torch.randn(20, 256, requires_grad=True), n_source=10, coefficient=0.5)
    """

    def __init__(self, in_features: int, hidden: int = 1024) -> None:
        super().__init__()
        self.discriminator = DomainDiscriminator(in_features, hidden)

    def forward(self, features: Tensor, n_source: int, coefficient: float = 1.0) -> Tensor:
        logits = self.discriminator(reverse_gradient(features, coefficient)).squeeze(1)
        domain = torch.zeros_like(logits)
        domain[n_source:] = 1.0
        return F.binary_cross_entropy_with_logits(logits, domain)
