"""Quantization loss ||u - sgn(u)||^2 of DAH (Venkateswara et al., CVPR 2017, eq. 5, second term)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def sgn(u: Tensor) -> Tensor:
    """Sign with sgn(0) = +1, as the authors' code binarizes."""
    return torch.where(u >= 0, torch.ones_like(u), -torch.ones_like(u))


class QuantizationLoss(nn.Module):
    """``beta * sum_i ||u_i - sgn(u_i)||^2`` over every output of the batch (eq. 5).

    sgn(u) is a constant in backpropagation (supplementary, after eq. 14), so the
    gradient is ``2 * beta * (u - sgn(u))``.

    Shapes: ``u`` is (n, d); returns a scalar.
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = float(beta)

    def forward(self, u: Tensor) -> Tensor:
        return self.beta * (u - sgn(u).detach()).pow(2).sum()
