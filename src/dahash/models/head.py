"""The DAH network head: fc6 -> ReLU -> fc7 -> ReLU -> hash-fc8 (Venkateswara et al., CVPR 2017, Sec. 3.4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn


class HeadOutput(NamedTuple):
    """Network outputs ``u`` in (-1, 1)^d and the representations the MMD compares."""

    u: Tensor
    taps: dict[str, Tensor]


class DAHHead(nn.Module):
    """fc6 -> ReLU -> fc7 -> ReLU -> hash-fc8 = Linear -> BatchNorm -> tanh.

    The BatchNorm before tanh keeps the outputs out of tanh's saturated zone (Sec. 3.4).
    Dropout of the pretrained VGG-F is not kept, as in the authors' code. MMD taps are the
    ReLU outputs of fc6 and fc7 and the fc8 output before BatchNorm.

    Args:
        in_features: input feature dimension (backbone features, or raw pixels).
        bits: code length d (any positive integer; the paper uses 16, 32, 48, 64, 128).
        hidden: widths of fc6 and fc7 (4096 each in VGG-F).

    Each linear layer carries ``lr_mult`` (weights) used by the trainer's parameter groups:
    layers initialised from a pretrained network set it to 0.1, new layers to 1.
    """

    def __init__(self, in_features: int, bits: int = 64, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        if bits < 1:
            raise ValueError(f"bits must be a positive integer, got {bits}")
        if len(hidden) != 2 or any(h < 1 for h in hidden):
            raise ValueError(f"hidden must be two positive widths (fc6, fc7), got {list(hidden)}")
        self.bits = int(bits)
        self.fc6 = nn.Linear(in_features, hidden[0])
        self.fc7 = nn.Linear(hidden[0], hidden[1])
        self.fc8 = nn.Linear(hidden[1], bits)
        self.bn = nn.BatchNorm1d(bits)
        for layer in (self.fc6, self.fc7, self.fc8):
            layer.lr_mult = 1.0

    def forward(self, x: Tensor) -> HeadOutput:
        fc6 = torch.relu(self.fc6(x))
        fc7 = torch.relu(self.fc7(fc6))
        fc8 = self.fc8(fc7)
        return HeadOutput(u=torch.tanh(self.bn(fc8)), taps={"fc6": fc6, "fc7": fc7, "fc8": fc8})
