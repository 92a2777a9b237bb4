"""Tests for the DAH head: fc6 -> ReLU -> fc7 -> ReLU -> fc8 -> BatchNorm -> tanh."""

from __future__ import annotations

import pytest
import torch

from dahash.models import DAHHead


def _x(n: int = 12, d: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("bits", [16, 32, 48, 64, 128, 10, 1])
def test_output_shapes(bits: int) -> None:
    torch.manual_seed(0)
    head = DAHHead(20, bits=bits, hidden=[32, 24])
    out = head(_x())
    assert out.u.shape == (12, bits)
    assert head.bits == bits
    assert out.taps["fc6"].shape == (12, 32)
    assert out.taps["fc7"].shape == (12, 24)
    assert out.taps["fc8"].shape == (12, bits)
    assert set(out.taps) == {"fc6", "fc7", "fc8"}


@pytest.mark.parametrize("train", [True, False])
def test_outputs_in_open_interval(train: bool) -> None:
    torch.manual_seed(1)
    head = DAHHead(20, bits=32, hidden=[32, 32]).train(train)
    u = head(_x(64)).u
    assert torch.all(u > -1) and torch.all(u < 1)
    if train:
        # Batch statistics normalise fc8, so the outputs are spread over both signs.
        assert (u > 0).any() and (u < 0).any()


def test_taps_are_relu_outputs_and_pre_batchnorm_fc8() -> None:
    torch.manual_seed(2)
    head = DAHHead(20, bits=16, hidden=[32, 32]).train()
    x = _x(16)
    out = head(x)
    fc6, fc7, fc8 = out.taps["fc6"], out.taps["fc7"], out.taps["fc8"]
    assert (fc6 >= 0).all() and (fc7 >= 0).all()
    # Some units are switched off by the ReLU and some are not.
    assert (fc6 == 0).any() and (fc6 > 0).any()
    torch.testing.assert_close(fc6, torch.relu(head.fc6(x)))
    torch.testing.assert_close(fc7, torch.relu(head.fc7(fc6)))
    torch.testing.assert_close(fc8, head.fc8(fc7))
    # fc8 is taken before BatchNorm: it can be negative and is not batch-normalised ...
    assert (fc8 < 0).any()
    assert not torch.allclose(fc8.mean(0), torch.zeros(16), atol=1e-3)
    # ... and u = tanh(BN(fc8)) with the batch statistics in training mode.
    mean, var = fc8.mean(0), fc8.var(0, unbiased=False)
    expected = torch.tanh((fc8 - mean) / torch.sqrt(var + head.bn.eps) * head.bn.weight + head.bn.bias)
    torch.testing.assert_close(out.u, expected)


def test_eval_mode_uses_running_statistics() -> None:
    torch.manual_seed(3)
    head = DAHHead(20, bits=8, hidden=[16, 16])
    head.train()
    head(_x(32))  # updates the running statistics
    head.eval()
    x = _x(5, seed=9)
    with torch.no_grad():
        out = head(x)
        fc8 = out.taps["fc8"]
        bn = head.bn
        expected = torch.tanh((fc8 - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias)
    torch.testing.assert_close(out.u, expected)
    # One sample alone works in eval mode (no batch statistics needed).
    assert head(x[:1]).u.shape == (1, 8)


def test_gradients_reach_every_layer() -> None:
    torch.manual_seed(4)
    head = DAHHead(20, bits=8, hidden=[16, 16])
    head(_x(10)).u.sum().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, name


def test_layers_carry_lr_mult() -> None:
    head = DAHHead(4, bits=8, hidden=[5, 6])
    assert [head.fc6.lr_mult, head.fc7.lr_mult, head.fc8.lr_mult] == [1.0, 1.0, 1.0]
    assert head.fc6.in_features == 4 and head.fc8.out_features == 8


@pytest.mark.parametrize("bits", [0, -16])
def test_invalid_bits(bits: int) -> None:
    with pytest.raises(ValueError, match="bits"):
        DAHHead(8, bits=bits)


@pytest.mark.parametrize("hidden", [[32], [32, 32, 32], [0, 32], [32, -1], []])
def test_invalid_hidden(hidden: list[int]) -> None:
    with pytest.raises(ValueError, match="hidden"):
        DAHHead(8, bits=16, hidden=hidden)


def test_hidden_batchnorm_and_dropout_are_off_by_default_and_hold_no_state() -> None:
    torch.manual_seed(0)
    plain, x = DAHHead(12, bits=8, hidden=(6, 5)), torch.randn(9, 12)
    assert sorted(plain.state_dict()) == sorted(["fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias", "fc8.weight",
                                                 "fc8.bias", "bn.weight", "bn.bias", "bn.running_mean",
                                                 "bn.running_var", "bn.num_batches_tracked"])
    plain.train()
    by_hand = plain.fc8(torch.relu(plain.fc7(torch.relu(plain.fc6(x)))))
    torch.testing.assert_close(plain(x).taps["fc8"], by_hand, rtol=0, atol=0)


def test_hidden_batchnorm_before_relu_dropout_after_taps_before_dropout() -> None:
    torch.manual_seed(0)
    head, x = DAHHead(12, bits=8, hidden=(6, 5), hidden_bn=True, hidden_dropout=0.5), torch.randn(9, 12)
    assert {"bn6.weight", "bn7.running_var"} <= set(head.state_dict())
    head.eval()  # dropout off, BatchNorm on its running statistics: the eval output is a function of x
    out = head(x)
    fc6 = torch.relu(head.bn6(head.fc6(x)))
    fc7 = torch.relu(head.bn7(head.fc7(fc6)))
    torch.testing.assert_close(out.taps["fc6"], fc6)
    torch.testing.assert_close(out.taps["fc7"], fc7)
    torch.testing.assert_close(out.taps["fc8"], head.fc8(fc7))
    torch.testing.assert_close(head(x).u, out.u)
    head.train()  # dropout on: fc8 changes between passes, the fc6 tap (before dropout) does not
    first, second = head(x), head(x)
    torch.testing.assert_close(first.taps["fc6"], second.taps["fc6"])
    assert not torch.allclose(first.taps["fc8"], second.taps["fc8"])
    with pytest.raises(ValueError, match=r"hidden_dropout must be in \[0, 1\)"):
        DAHHead(12, hidden_dropout=1.0)
