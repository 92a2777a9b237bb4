"""Supervised pairwise hash loss of DAH (Venkateswara et al., CVPR 2017, eq. 4-5)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PairwiseHashLoss(nn.Module):
    """Weighted pairwise likelihood loss on source outputs, eq. 4-5 (the likelihood part).

    With ``theta_ij = scale * <u_i, u_j>`` and ``s_ij = 1`` for same-class pairs,

        L = sum_ij W_ij * (log(1 + exp(theta_ij)) - s_ij * theta_ij),

    summed over all ordered pairs of the source batch (the paper's sum over S, the
    diagonal included), where ``W_ij = like_weight`` for like pairs and 1 otherwise.

    Args:
        like_weight: weight of same-class pairs; the paper's S in {0, 10} is read by the
            authors' code as this weight (default 10).
        scale: factor on the inner products; 0.5 in the authors' code, 1.0 in eq. 4.

    Shapes: ``u`` is (n, d), ``labels`` is (n,) integer; returns a scalar.

    Example:
        >>> loss = PairwiseHashLoss()
        >>> u = torch.tanh(torch.randn(6, 16)); y = torch.tensor([0, 0, 1, 1, 2, 2])
        >>> bool(loss(u, y) > 0)
        True
    """

    def __init__(self, like_weight: float = 10.0, scale: float = 0.5) -> None:
        super().__init__()
        self.like_weight = float(like_weight)
        self.scale = float(scale)

    def forward(self, u: Tensor, labels: Tensor) -> Tensor:
        theta = self.scale * (u @ u.T)
        similar = (labels[:, None] == labels[None, :]).to(u.dtype)
        weight = 1.0 + (self.like_weight - 1.0) * similar
        # softplus is log(1 + exp(x)) without overflow for large inner products.
        return (weight * (F.softplus(theta) - similar * theta)).sum()
