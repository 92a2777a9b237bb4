"""The DAH objective J = L + gamma*M + eta*H (Venkateswara et al., CVPR 2017, eq. 8)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .entropy import EntropyLoss
from .mmd import LinearMKMMD, MultiLayerMKMMD
from .pairwise_hash import PairwiseHashLoss
from .quantization import QuantizationLoss


class DAHLoss(nn.Module):
    """Eq. 8 on one batch laid out as ``[source rows | target rows]``.

    ``J = L_hash(u_s) + beta * Q(u) + gamma * sum_layers MMD(u_s^l, u_t^l) + eta * H(u_s, u_t)``.
    ``gamma = eta = 0`` trains a source-only hashing network (NoDA); ``eta = 0`` is DAH-e.

    Args:
        n_classes: number of source classes.
        like_weight, inner_product_scale: see :class:`PairwiseHashLoss`.
        beta: weight of the quantization loss (eq. 5; 1 in the paper).
        gamma: weight of the multi-layer MK-MMD (5000 with ``mmd_reduction="sum"`` in the
            authors' code).
        eta: weight of the entropy loss (1 in the paper).
        mmd_layers: names of the representations the MMD compares (keys of ``taps``).
        mmd_reduction, entropy_reduction: ``"sum"`` (authors' code) or ``"mean"`` (paper).
    """

    def __init__(self, n_classes: int, *, like_weight: float = 10.0, inner_product_scale: float = 0.5,
                 beta: float = 1.0, gamma: float = 5000.0, eta: float = 1.0,
                 mmd_layers: Sequence[str] = ("fc6", "fc7", "fc8"), mmd_reduction: str = "sum",
                 entropy_reduction: str = "sum", mmd_shuffle: bool = True) -> None:
        super().__init__()
        self.hash_loss = PairwiseHashLoss(like_weight=like_weight, scale=inner_product_scale)
        self.quantization = QuantizationLoss(beta=beta)
        self.mmd = MultiLayerMKMMD(LinearMKMMD(reduction=mmd_reduction, shuffle=mmd_shuffle))
        self.entropy = EntropyLoss(n_classes, reduction=entropy_reduction)
        self.gamma = float(gamma)
        self.eta = float(eta)
        self.mmd_layers = tuple(mmd_layers)

    def forward(self, u: Tensor, taps: Mapping[str, Tensor], labels: Tensor, n_source: int,
                generator: torch.Generator | None = None, progress: float = 0.0) -> dict[str, Tensor]:
        """Return the total and each term (unweighted) as scalars (``progress`` is unused: no term is scheduled)."""
        u_s, u_t = u[:n_source], u[n_source:]
        zero = u.new_zeros(())
        terms = {
            "hash": self.hash_loss(u_s, labels),
            "quantization": self.quantization(u),
            "mmd": zero,
            "entropy": zero,
        }
        if self.gamma != 0.0 and len(u_t) > 0:
            missing = [name for name in self.mmd_layers if name not in taps]
            if missing:
                raise KeyError(f"MMD layers {missing} not produced by the model (has {sorted(taps)})")
            terms["mmd"] = self.mmd([taps[k][:n_source] for k in self.mmd_layers],
                                    [taps[k][n_source:] for k in self.mmd_layers], generator=generator)
        if self.eta != 0.0 and len(u_t) > 0:
            terms["entropy"] = self.entropy(u_t, u_s, labels)
        terms["total"] = terms["hash"] + terms["quantization"] + self.gamma * terms["mmd"] + self.eta * terms["entropy"]
        return terms
