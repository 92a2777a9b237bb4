"""Quantization loss ||u - sgn(u)||^2 (eq. 5) and its gradient 2 (u - sgn u), eq. 15's last term."""

import torch

from dahash.losses import QuantizationLoss, sgn


def test_sign_of_zero_is_plus_one():
    assert sgn(torch.tensor([0.0, -0.0, 1e-30, -1e-30])).tolist() == [1.0, 1.0, 1.0, -1.0]


def test_value_and_gradient():
    u = torch.tensor([[0.5, -0.25, 0.0], [-1.0, 0.9, -0.1]], dtype=torch.float64, requires_grad=True)
    loss = QuantizationLoss(beta=2.0)(u)
    expected = 2.0 * ((0.5 - 1) ** 2 + (-0.25 + 1) ** 2 + (0 - 1) ** 2 + 0 + (0.9 - 1) ** 2 + (-0.1 + 1) ** 2)
    assert abs(loss.item() - expected) < 1e-12
    loss.backward()
    sign = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(u.grad, 2.0 * 2.0 * (u.detach() - sign))


def test_binary_codes_have_zero_loss():
    u = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    assert QuantizationLoss()(u).item() == 0.0
