"""Unsupervised entropy loss of DAH (Venkateswara et al., CVPR 2017, eq. 6-7)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def class_log_probabilities(v: Tensor, u: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """log p_ij of eq. 6: target ``v`` (m, d) against source ``u`` (n, d) grouped by ``labels``.

    ``p_ij = sum_{k in class j} exp(<v_i, u_k>) / sum_k exp(<v_i, u_k>)``. Classes with no
    source sample in ``u`` get log-probability -inf (probability 0). Each class's
    log-sum-exp subtracts that class's own row maximum, so no term underflows to log(0)
    even when inner products span hundreds (binary codes of 128 bits).
    """
    logits = v @ u.T
    m = logits.shape[0]
    index = labels.view(1, -1).expand(m, -1)
    class_max = torch.full((m, n_classes), float("-inf"), dtype=logits.dtype, device=logits.device)
    class_max = class_max.scatter_reduce(1, index, logits.detach(), reduce="amax", include_self=True)
    present = torch.isfinite(class_max[0])
    # Shifting by a constant leaves the log-sum-exp's value and gradient unchanged.
    shift = torch.where(present, class_max, torch.zeros_like(class_max))
    sums = torch.zeros_like(class_max).index_add(1, labels, torch.exp(logits - shift.gather(1, index)))
    class_lse = torch.where(present, shift + torch.log(torch.where(present, sums, torch.ones_like(sums))),
                            torch.full_like(sums, float("-inf")))
    return class_lse - torch.logsumexp(class_lse, dim=1, keepdim=True)


class EntropyLoss(nn.Module):
    """Entropy of the target class probabilities, eq. 7: ``-sum_i sum_j p_ij log p_ij``.

    The source outputs play the role of the paper's K per-class samples ``u_k^j``; any
    number per class works, and a class absent from the batch contributes nothing.

    Args:
        n_classes: number of source classes C.
        reduction: ``"sum"`` over target samples (the authors' code, default) or
            ``"mean"`` (eq. 7's 1/n_t).

    Shapes: ``v`` target outputs (m, d), ``u`` source outputs (n, d), ``labels`` (n,).
    """

    def __init__(self, n_classes: int, reduction: str = "sum") -> None:
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        self.n_classes = int(n_classes)
        self.reduction = reduction

    def forward(self, v: Tensor, u: Tensor, labels: Tensor) -> Tensor:
        log_p = class_log_probabilities(v, u, labels, self.n_classes)
        # xlogy-style masking: an absent class has p = 0 and contributes 0, not 0 * -inf.
        finite = torch.isfinite(log_p)
        safe_log_p = torch.where(finite, log_p, torch.zeros_like(log_p))
        entropy = -(safe_log_p.exp() * safe_log_p * finite).sum(dim=1)
        return entropy.sum() if self.reduction == "sum" else entropy.mean()
