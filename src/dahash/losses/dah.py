"""The DAH objective J = L + gamma*M + eta*H (Venkateswara et al., CVPR 2017, eq. 8)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from dahash.losses.entropy import EntropyLoss, class_log_probabilities
from dahash.losses.mmd import LinearMKMMD, MultiLayerMKMMD, TargetClassPrior
from dahash.losses.pairwise_hash import PairwiseHashLoss
from dahash.losses.quantization import QuantizationLoss


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
        mmd_estimator: ``"authors"``, ``"balanced"`` or ``"class-weighted"`` (see
            :class:`LinearMKMMD`); the class-weighted one weighs the source by the target class
            proportions that eq. 6 predicts for the batches' target rows (:class:`TargetClassPrior`).
        reference_batch: 0 takes beta, gamma and eta literally. A positive value makes them
            the weights at a batch of ``reference_batch`` source rows: the hash loss sums over
            n^2 source pairs while the quantization, MMD and entropy terms sum over O(n) rows, so
            those three are multiplied by ``n_source / reference_batch`` and keep the same
            balance against the hash loss at every batch size (325 = 65 classes x K = 5, the
            batch of the authors' Office-Home runs, for which gamma = 5000 was set).
    """

    def __init__(self, n_classes: int, *, like_weight: float = 10.0, inner_product_scale: float = 0.5,
                 beta: float = 1.0, gamma: float = 5000.0, eta: float = 1.0,
                 mmd_layers: Sequence[str] = ("fc6", "fc7", "fc8"), mmd_reduction: str = "sum",
                 entropy_reduction: str = "sum", mmd_shuffle: bool = True, mmd_estimator: str = "authors",
                 reference_batch: int = 0) -> None:
        super().__init__()
        if reference_batch < 0:
            raise ValueError(f"reference_batch must be >= 0 (0: literal weights), got {reference_batch!r}")
        self.hash_loss = PairwiseHashLoss(like_weight=like_weight, scale=inner_product_scale)
        self.quantization = QuantizationLoss(beta=beta)
        self.mmd = MultiLayerMKMMD(LinearMKMMD(reduction=mmd_reduction, shuffle=mmd_shuffle, estimator=mmd_estimator))
        self.entropy = EntropyLoss(n_classes, reduction=entropy_reduction)
        # Registered only when used: checkpoints of the other estimators keep their keys.
        self.class_prior = TargetClassPrior(n_classes) if mmd_estimator == "class-weighted" else None
        self.n_classes = int(n_classes)
        self.gamma = float(gamma)
        self.eta = float(eta)
        self.mmd_layers = tuple(mmd_layers)
        self.reference_batch = int(reference_batch)

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
            weights = None
            if self.class_prior is not None:
                probs = class_log_probabilities(u_t.detach(), u_s.detach(), labels, self.n_classes).exp()
                weights = self.class_prior.update(probs)
            terms["mmd"] = self.mmd([taps[k][:n_source] for k in self.mmd_layers],
                                    [taps[k][n_source:] for k in self.mmd_layers], generator=generator,
                                    labels=labels, class_weights=weights)
        if self.eta != 0.0 and len(u_t) > 0:
            terms["entropy"] = self.entropy(u_t, u_s, labels)
        scale = n_source / self.reference_batch if self.reference_batch else 1.0
        terms["total"] = terms["hash"] + scale * (terms["quantization"] + self.gamma * terms["mmd"]
                                                  + self.eta * terms["entropy"])
        return terms
