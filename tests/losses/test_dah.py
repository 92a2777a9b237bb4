"""The DAH objective, eq. 8: composition of the terms, ablations, and numerical stability."""

import pytest
import torch

from dahash.losses import DAHLoss, EntropyLoss, LinearMKMMD, PairwiseHashLoss, QuantizationLoss
from dahash.models import DAHHead


def _batch(n_classes=3, k=4, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    head = DAHHead(8, bits=d, hidden=(12, 10))
    x = torch.randn(2 * n_classes * k, 8, generator=g)
    labels = torch.arange(n_classes).repeat_interleave(k)
    return head(x), labels, n_classes * k


def test_total_is_eq8_weighted_sum():
    out, labels, ns = _batch()
    loss = DAHLoss(3, gamma=7.0, eta=0.5, beta=2.0, mmd_reduction="mean", entropy_reduction="mean")
    terms = loss(out.u, out.taps, labels, ns, generator=torch.Generator().manual_seed(1))
    u_s, u_t = out.u[:ns], out.u[ns:]
    mmd = LinearMKMMD(reduction="mean")
    g = torch.Generator().manual_seed(1)
    expected_mmd = sum(mmd(out.taps[k][:ns], out.taps[k][ns:], generator=g) for k in ("fc6", "fc7", "fc8"))
    torch.testing.assert_close(terms["hash"], PairwiseHashLoss()(u_s, labels))
    torch.testing.assert_close(terms["quantization"], QuantizationLoss(2.0)(out.u))
    torch.testing.assert_close(terms["mmd"], expected_mmd)
    torch.testing.assert_close(terms["entropy"], EntropyLoss(3, "mean")(u_t, u_s, labels))
    torch.testing.assert_close(terms["total"], terms["hash"] + terms["quantization"] + 7.0 * terms["mmd"]
                               + 0.5 * terms["entropy"])


def test_ablations_switch_terms_off():
    out, labels, ns = _batch()
    dah_e = DAHLoss(3, eta=0.0)(out.u, out.taps, labels, ns)
    assert dah_e["entropy"].item() == 0.0 and dah_e["mmd"].item() != 0.0
    noda = DAHLoss(3, gamma=0.0, eta=0.0)(out.u, out.taps, labels, ns)
    assert noda["mmd"].item() == 0.0
    torch.testing.assert_close(noda["total"], noda["hash"] + noda["quantization"])
    # With both adaptation terms off, target rows receive gradient only from quantization.
    u = out.u.detach().clone().requires_grad_(True)
    DAHLoss(3, gamma=0.0, eta=0.0, beta=0.0)(u, out.taps, labels, ns)["total"].backward()
    assert torch.count_nonzero(u.grad[ns:]) == 0


def test_saturated_outputs_missing_class_are_finite():
    # 128-bit outputs at exactly +-1, huge fc activations, and class 1 absent from the batch.
    g = torch.Generator().manual_seed(3)
    u = torch.sign(torch.randn(12, 128, generator=g)).requires_grad_(True)
    taps = {k: (1e4 * torch.randn(12, 32, generator=g)).requires_grad_(True) for k in ("fc6", "fc7", "fc8")}
    labels = torch.tensor([0, 0, 2, 2, 2, 0])
    terms = DAHLoss(3)(u, taps, labels, 6)
    terms["total"].backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert torch.isfinite(u.grad).all() and all(torch.isfinite(t.grad).all() for t in taps.values())


def test_unknown_mmd_layer_is_reported():
    out, labels, ns = _batch()
    with pytest.raises(KeyError, match="pool5"):
        DAHLoss(3, mmd_layers=("pool5",))(out.u, out.taps, labels, ns)


def test_reference_batch_scales_the_per_row_terms_only():
    out, labels, ns = _batch()  # 12 source rows
    literal = DAHLoss(3, gamma=7.0, eta=0.5)(out.u, out.taps, labels, ns, generator=torch.Generator().manual_seed(1))
    for reference, scale in ((12, 1.0), (48, 0.25)):
        scaled = DAHLoss(3, gamma=7.0, eta=0.5, reference_batch=reference)(
            out.u, out.taps, labels, ns, generator=torch.Generator().manual_seed(1))
        for term in ("hash", "quantization", "mmd", "entropy"):
            torch.testing.assert_close(scaled[term], literal[term])
        torch.testing.assert_close(scaled["total"], literal["hash"] + scale * (
            literal["quantization"] + 7.0 * literal["mmd"] + 0.5 * literal["entropy"]))
    with pytest.raises(ValueError, match="reference_batch"):
        DAHLoss(3, reference_batch=-1)


def test_class_weighted_loss_tracks_predicted_target_proportions():
    out, labels, ns = _batch()
    loss = DAHLoss(3, mmd_estimator="class-weighted")
    assert "class_prior.proportions" in loss.state_dict()
    assert "class_prior.proportions" not in DAHLoss(3).state_dict()  # old checkpoints still load
    before = loss.class_prior.proportions.clone()
    terms = loss(out.u, out.taps, labels, ns, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(terms["total"])
    from dahash.losses import class_log_probabilities

    predicted = class_log_probabilities(out.u[ns:].detach(), out.u[:ns].detach(), labels, 3).exp().mean(0)
    torch.testing.assert_close(loss.class_prior.proportions, 0.95 * before + 0.05 * predicted.double())
    # The balanced estimator needs no state and gives a finite, different MMD than the authors'.
    bal = DAHLoss(3, mmd_estimator="balanced")(out.u, out.taps, labels, ns, generator=torch.Generator().manual_seed(1))
    plain = DAHLoss(3)(out.u, out.taps, labels, ns, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(bal["mmd"]) and bal["mmd"].item() != pytest.approx(plain["mmd"].item(), rel=1e-4)
