"""Heads on backbone features: the DAH hash head (Venkateswara et al., CVPR 2017, Sec. 3.4) and the softmax classifier head of the deep baselines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn


class HeadOutput(NamedTuple):
    """Network outputs ``u`` (hash outputs in (-1, 1)^d, or class logits) and the representations the MMD compares."""

    u: Tensor
    taps: dict[str, Tensor]


class FCTrunk(nn.Module):
    """fc6 -> ReLU -> fc7 -> ReLU -> fc8, shared by every head: the methods differ only above fc8.

    Optionally (``hidden_bn``, ``hidden_dropout``) BatchNorm before each hidden ReLU and dropout after it, for a
    new head on weak features (docs/own-features.md); neither is in the authors' network.

    Each linear layer carries ``lr_mult`` (weights) used by the trainer's parameter groups:
    layers initialised from a pretrained network set it to 0.1, new layers to 1.
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int], *, hidden_bn: bool = False,
                 hidden_dropout: float = 0.0) -> None:
        super().__init__()
        if len(hidden) != 2 or any(h < 1 for h in hidden):
            raise ValueError(f"hidden must be two positive widths (fc6, fc7), got {list(hidden)}")
        if not 0.0 <= hidden_dropout < 1.0:
            raise ValueError(f"hidden_dropout must be in [0, 1), got {hidden_dropout!r}")
        self.fc6 = nn.Linear(in_features, hidden[0])
        self.fc7 = nn.Linear(hidden[0], hidden[1])
        self.fc8 = nn.Linear(hidden[1], out_features)
        for layer in (self.fc6, self.fc7, self.fc8):
            layer.lr_mult = 1.0
        # Off by default, as in the authors' network (pretrained VGG-F fc6/fc7, its dropout dropped): Identity and
        # Dropout(0) hold no state, so a model saved without them loads unchanged.
        self.bn6 = nn.BatchNorm1d(hidden[0]) if hidden_bn else nn.Identity()
        self.bn7 = nn.BatchNorm1d(hidden[1]) if hidden_bn else nn.Identity()
        self.drop = nn.Dropout(hidden_dropout)

    def trunk(self, x: Tensor) -> dict[str, Tensor]:
        # The taps (what the MMD compares) are the ReLU outputs, before dropout.
        fc6 = torch.relu(self.bn6(self.fc6(x)))
        fc7 = torch.relu(self.bn7(self.fc7(self.drop(fc6))))
        return {"fc6": fc6, "fc7": fc7, "fc8": self.fc8(self.drop(fc7))}


class DAHHead(FCTrunk):
    """fc6 -> ReLU -> fc7 -> ReLU -> hash-fc8 = Linear -> BatchNorm -> tanh.

    The BatchNorm before tanh keeps the outputs out of tanh's saturated zone (Sec. 3.4).
    Dropout of the pretrained VGG-F is not kept, as in the authors' code. MMD taps are the
    ReLU outputs of fc6 and fc7 and the fc8 output before BatchNorm.

    Args:
        in_features: input feature dimension (backbone features, or raw pixels).
        bits: code length d (any positive integer; the paper uses 16, 32, 48, 64, 128).
        hidden: widths of fc6 and fc7 (4096 each in VGG-F).
    """

    kind = "hash"

    def __init__(self, in_features: int, bits: int = 64, hidden: Sequence[int] = (256, 256), *,
                 hidden_bn: bool = False, hidden_dropout: float = 0.0) -> None:
        if bits < 1:
            raise ValueError(f"bits must be a positive integer, got {bits}")
        super().__init__(in_features, bits, hidden, hidden_bn=hidden_bn, hidden_dropout=hidden_dropout)
        self.bits = int(bits)
        self.bn = nn.BatchNorm1d(bits)

    def forward(self, x: Tensor) -> HeadOutput:
        taps = self.trunk(x)
        return HeadOutput(u=torch.tanh(self.bn(taps["fc8"])), taps=taps)


class ClassifierHead(FCTrunk):
    """fc6 -> ReLU -> fc7 -> ReLU -> fc8 logits: the softmax network of the deep baselines
    ("Deep" source-only, DAN of Long et al., ICML 2015, DANN of Ganin et al., JMLR 2016).

    Taps are the ReLU outputs of fc6 and fc7 and the logits, the three layers DAN adapts.
    """

    kind = "softmax"

    def __init__(self, in_features: int, n_classes: int, hidden: Sequence[int] = (256, 256), *,
                 hidden_bn: bool = False, hidden_dropout: float = 0.0) -> None:
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        super().__init__(in_features, n_classes, hidden, hidden_bn=hidden_bn, hidden_dropout=hidden_dropout)
        self.n_classes = int(n_classes)

    def forward(self, x: Tensor) -> HeadOutput:
        taps = self.trunk(x)
        return HeadOutput(u=taps["fc8"], taps=taps)
