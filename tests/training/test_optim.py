"""Tests for the log-spaced learning rate and the per-layer multipliers (authors' code, Sec. 5.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dahash.models import DAHHead
from dahash.training.optim import log_spaced_lr, make_sgd, parameter_groups, set_lr


def test_log_spaced_lr_endpoints_and_geometric_middle() -> None:
    epochs = 300
    rates = [log_spaced_lr(e, epochs, 1e-4, 1e-5) for e in range(epochs)]
    assert rates[0] == pytest.approx(1e-4, rel=1e-12)
    assert rates[-1] == pytest.approx(1e-5, rel=1e-12)
    # Constant ratio between consecutive epochs: 10^(-1/299).
    ratios = np.array(rates[1:]) / np.array(rates[:-1])
    np.testing.assert_allclose(ratios, 10 ** (-1 / 299), rtol=1e-10)
    # Three epochs: the middle one is the geometric mean of the ends.
    assert log_spaced_lr(1, 3, 1e-4, 1e-5) == pytest.approx(math.sqrt(1e-4 * 1e-5), rel=1e-12)
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_log_spaced_lr_single_epoch_uses_start() -> None:
    assert log_spaced_lr(0, 1, 3e-3, 1e-9) == 3e-3


class _Net(nn.Module):
    """A "pretrained" layer (lr_mult 0.1), a BatchNorm and a new layer (lr_mult 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.old = nn.Linear(4, 3)
        self.old.lr_mult = 0.1
        self.bn = nn.BatchNorm1d(3)
        self.new = nn.Linear(3, 2)
        self.new.lr_mult = 1.0
        self.plain = nn.Linear(2, 2)  # no lr_mult attribute: default multiplier


def _group_of(groups: list[dict], param: torch.Tensor) -> dict:
    matches = [g for g in groups if any(p is param for p in g["params"])]
    assert len(matches) == 1
    return matches[0]


def test_parameter_groups_multipliers_and_decay() -> None:
    net = _Net()
    groups = parameter_groups(net, weight_decay=5e-4, bias_lr_factor=2.0, default_lr_mult=0.5)
    # Every parameter covered once, one group per distinct (multiplier, decay).
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    keys = [(g["lr_mult"], g["weight_decay"]) for g in groups]
    assert len(keys) == len(set(keys)) == 7
    expected = {
        net.old.weight: (0.1, 5e-4),
        net.old.bias: (0.2, 0.0),          # the authors' 0.1 / 0.2
        net.bn.weight: (0.5, 0.0),         # BatchNorm: no decay
        net.bn.bias: (1.0, 0.0),
        net.new.weight: (1.0, 5e-4),
        net.new.bias: (2.0, 0.0),          # the authors' 1 / 2
        net.plain.weight: (0.5, 5e-4),
        net.plain.bias: (1.0, 0.0),
    }
    for param, (mult, decay) in expected.items():
        group = _group_of(groups, param)
        assert group["lr_mult"] == pytest.approx(mult)
        assert group["weight_decay"] == decay


def test_frozen_parameters_are_left_out() -> None:
    net = _Net()
    net.old.weight.requires_grad_(False)
    groups = parameter_groups(net, weight_decay=1e-3, bias_lr_factor=2.0)
    assert not any(p is net.old.weight for g in groups for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters())) - 1


def test_make_sgd_and_set_lr_apply_multipliers() -> None:
    net = _Net()
    opt = make_sgd(net, lr=0.01, momentum=0.9, weight_decay=5e-4, bias_lr_factor=2.0)
    for group in opt.param_groups:
        assert group["lr"] == pytest.approx(0.01 * group["lr_mult"])
        assert group["momentum"] == 0.9
    assert _group_of(opt.param_groups, net.old.weight)["lr"] == pytest.approx(1e-3)
    assert _group_of(opt.param_groups, net.old.bias)["lr"] == pytest.approx(2e-3)
    set_lr(opt, 1e-5)
    assert _group_of(opt.param_groups, net.old.weight)["lr"] == pytest.approx(1e-6)
    assert _group_of(opt.param_groups, net.new.bias)["lr"] == pytest.approx(2e-5)
    assert _group_of(opt.param_groups, net.new.weight)["lr"] == pytest.approx(1e-5)


def test_sgd_step_uses_the_multiplied_rate() -> None:
    """One plain SGD step (no momentum, no decay) moves each parameter by lr * lr_mult * grad."""
    net = _Net()
    opt = make_sgd(net, lr=0.1, momentum=0.0, weight_decay=0.0, bias_lr_factor=2.0)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    net.train()
    out = net.plain(net.new(net.bn(net.old(x))))
    out.pow(2).sum().backward()
    grads = {name: p.grad.detach().clone() for name, p in net.named_parameters()}
    opt.step()
    mults = {"old.weight": 0.1, "old.bias": 0.2, "new.weight": 1.0, "new.bias": 2.0,
             "bn.weight": 1.0, "bn.bias": 2.0, "plain.weight": 1.0, "plain.bias": 2.0}
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.detach(), before[name] - 0.1 * mults[name] * grads[name])


def test_weight_decay_only_on_weights() -> None:
    """With zero gradient, decay shrinks weights and leaves biases and BatchNorm untouched."""
    net = _Net()
    opt = make_sgd(net, lr=0.1, momentum=0.0, weight_decay=0.5, bias_lr_factor=2.0)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    params = dict(net.named_parameters())
    torch.testing.assert_close(params["new.weight"].detach(), before["new.weight"] * (1 - 0.1 * 0.5))
    torch.testing.assert_close(params["old.weight"].detach(), before["old.weight"] * (1 - 0.01 * 0.5))
    for name in ("old.bias", "new.bias", "bn.weight", "bn.bias"):
        torch.testing.assert_close(params[name].detach(), before[name])


def test_dah_head_groups() -> None:
    head = DAHHead(8, bits=16, hidden=[6, 5])
    head.fc6.lr_mult = head.fc7.lr_mult = 0.1  # as if initialised from a pretrained net
    groups = parameter_groups(head, weight_decay=5e-4, bias_lr_factor=2.0)
    assert _group_of(groups, head.fc6.weight)["lr_mult"] == pytest.approx(0.1)
    assert _group_of(groups, head.fc7.bias)["lr_mult"] == pytest.approx(0.2)
    assert _group_of(groups, head.fc8.weight)["lr_mult"] == pytest.approx(1.0)
    assert _group_of(groups, head.fc8.bias)["lr_mult"] == pytest.approx(2.0)
    assert _group_of(groups, head.bn.weight)["weight_decay"] == 0.0
    assert _group_of(groups, head.fc8.weight)["weight_decay"] == 5e-4
