"""The softmax baselines' objective: cross-entropy, DAN's MK-MMD term, DANN's adversarial term."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from dahash.losses import ClassifierDALoss, MultiLayerMKMMD


def _batch(n_source: int = 6, n_target: int = 6, classes: int = 3) -> tuple[torch.Tensor, dict, torch.Tensor]:
    torch.manual_seed(1)
    n = n_source + n_target
    taps = {"fc6": torch.randn(n, 5), "fc7": torch.randn(n, 4), "fc8": torch.randn(n, classes)}
    return taps["fc8"], taps, torch.arange(n_source) % classes


def test_source_only_is_the_cross_entropy_of_the_source_rows() -> None:
    logits, taps, labels = _batch()
    terms = ClassifierDALoss()(logits, taps, labels, n_source=6)
    torch.testing.assert_close(terms["total"], F.cross_entropy(logits[:6], labels))
    assert float(terms["mmd"]) == 0.0 and float(terms["domain"]) == 0.0


def test_dan_adds_gamma_times_the_multi_layer_mmd() -> None:
    logits, taps, labels = _batch()
    loss = ClassifierDALoss(gamma=2.5)
    terms = loss(logits, taps, labels, n_source=6, generator=torch.Generator().manual_seed(3))
    mmd = MultiLayerMKMMD(loss.mmd.mmd)([taps[k][:6] for k in ("fc6", "fc7", "fc8")],
                                         [taps[k][6:] for k in ("fc6", "fc7", "fc8")],
                                         generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(terms["mmd"], mmd)
    torch.testing.assert_close(terms["total"], terms["classification"] + 2.5 * mmd)
    assert float(terms["mmd"]) != 0.0


def test_dann_adds_the_domain_loss_on_fc7_at_full_weight() -> None:
    logits, taps, labels = _batch()
    loss = ClassifierDALoss(adversarial_features=4).eval()  # no dropout: both passes see the same network
    terms = loss(logits, taps, labels, n_source=6, progress=0.5)
    expected = loss.adversarial(taps["fc7"], 6, 0.5)
    torch.testing.assert_close(terms["domain"], expected)
    torch.testing.assert_close(terms["total"], terms["classification"] + expected)
    # With no target rows, no alignment term is computed.
    assert float(loss(logits[:6], {k: v[:6] for k, v in taps.items()}, labels, n_source=6)["domain"]) == 0.0


def test_dann_lambda_scales_the_domain_term() -> None:
    logits, taps, labels = _batch()
    loss = ClassifierDALoss(adversarial_features=4, adversarial_weight=0.1).eval()
    terms = loss(logits, taps, labels, n_source=6, progress=0.5)
    torch.testing.assert_close(terms["total"], terms["classification"] + 0.1 * terms["domain"])
