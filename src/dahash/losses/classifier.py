"""Objectives of the softmax deep baselines: source-only, DAN (Long et al., ICML 2015, eq. 8) and DANN (Ganin et al., JMLR 2016, eq. 9-10)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dahash.losses.adversarial import DomainAdversarialLoss, grl_coefficient
from dahash.losses.mmd import LinearMKMMD, MultiLayerMKMMD, TargetClassPrior


class ClassifierDALoss(nn.Module):
    """``J = CE(source logits) + gamma * sum_layers MK-MMD + lambda * adversarial loss`` on one batch ``[source | target]``.

    ``gamma = 0`` without ``adversarial_features`` is the source-only network ("Deep" of the
    DAH paper's Figure 3); ``gamma > 0`` is DAN, whose eq. 8 adds the linear-time MK-MMD
    of fc6, fc7 and fc8 (the same estimator as DAH's, eq. 9-11 there); a positive
    ``adversarial_features`` (the width of the layer the domain classifier reads) is DANN,
    with the reversal coefficient on Ganin et al.'s schedule of the training progress.

    Args:
        gamma: weight of the MK-MMD (DAN's lambda).
        mmd_layers: names of the representations the MMD compares (keys of ``taps``).
        mmd_reduction: ``"mean"`` over quadruples (DAN's estimate) or ``"sum"``.
        adversarial_layer: the tap the domain classifier reads (fc7, DANN's feature layer).
        adversarial_features: its width; 0 disables the adversarial term.
        adversarial_weight: weight of the domain loss (DANN's lambda; 1, the default, is the
            Office experiments' setting, where only the reversal coefficient's schedule ramps it).
        mmd_estimator: as :class:`LinearMKMMD`; ``"class-weighted"`` takes the target class
            proportions from the softmax of the target logits (``n_classes`` needed).
    """

    def __init__(self, *, gamma: float = 0.0, mmd_layers: Sequence[str] = ("fc6", "fc7", "fc8"),
                 mmd_reduction: str = "mean", adversarial_layer: str = "fc7", adversarial_features: int = 0,
                 mmd_estimator: str = "authors", n_classes: int = 0, adversarial_weight: float = 1.0) -> None:
        super().__init__()
        self.gamma = float(gamma)
        self.mmd_layers = tuple(mmd_layers)
        self.mmd = MultiLayerMKMMD(LinearMKMMD(reduction=mmd_reduction, estimator=mmd_estimator))
        self.class_prior = TargetClassPrior(n_classes) if mmd_estimator == "class-weighted" else None
        self.adversarial_layer = adversarial_layer
        self.adversarial = DomainAdversarialLoss(adversarial_features) if adversarial_features > 0 else None
        self.adversarial_weight = float(adversarial_weight)

    def forward(self, logits: Tensor, taps: Mapping[str, Tensor], labels: Tensor, n_source: int,
                generator: torch.Generator | None = None, progress: float = 0.0) -> dict[str, Tensor]:
        """Return the total and each term (unweighted) as scalars; ``progress`` in [0, 1] drives DANN's coefficient."""
        zero = logits.new_zeros(())
        terms = {"classification": F.cross_entropy(logits[:n_source], labels), "mmd": zero, "domain": zero}
        has_target = logits.shape[0] > n_source
        if self.gamma != 0.0 and has_target:
            weights = None
            if self.class_prior is not None:
                weights = self.class_prior.update(torch.softmax(logits[n_source:].detach(), 1))
            terms["mmd"] = self.mmd([taps[k][:n_source] for k in self.mmd_layers],
                                    [taps[k][n_source:] for k in self.mmd_layers], generator=generator,
                                    labels=labels, class_weights=weights)
        if self.adversarial is not None and has_target:
            terms["domain"] = self.adversarial(taps[self.adversarial_layer], n_source, grl_coefficient(progress))
        terms["total"] = terms["classification"] + self.gamma * terms["mmd"] + self.adversarial_weight * terms["domain"]
        return terms
