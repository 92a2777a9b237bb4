"""The deep methods of the paper's comparison (Venkateswara et al., CVPR 2017, Tables 2-3, Figure 3) as settings of one trainer.

DAH, DAH-e and NoDA are the hash head with some of eq. 8's terms switched off. The softmax
baselines share the backbone, cache, sampler and trainer and differ only in head and loss;
their optimisation settings are their own papers' (Long et al., ICML 2015, Sec. 4;
Ganin et al., JMLR 2016, Sec. 5.2.2), not DAH's: SGD with momentum 0.9 at
``lr_p = 0.01 / (1 + 10 p)^0.75`` for pretrained layers and 10x that for new ones, on the
batch-mean cross-entropy.
"""

from __future__ import annotations

from typing import Any

from dahash.errors import ConfigError
from dahash.training.config import TrainConfig

_SOFTMAX: dict[str, Any] = {"head": "softmax", "eta": 0.0, "lr_schedule": "inverse", "lr_start": 0.01,
                            "pretrained_lr_mult": 1.0, "new_lr_mult": 10.0, "batch_mean_gradient": False,
                            "mmd_reduction": "mean", "gamma": 0.0}

# Settings each method changes from the library's defaults (the DAH paper's).
DEEP_METHODS: dict[str, dict[str, Any]] = {
    "Deep": dict(_SOFTMAX),                      # source-only softmax network (Figure 3's "Deep")
    "DAN": {**_SOFTMAX, "gamma": 1.0},           # MK-MMD on fc6-fc8 with DAN's trade-off lambda = 1
    "DANN": {**_SOFTMAX, "adversarial": True},   # domain classifier on fc7 behind a gradient reversal layer
    "NoDA": {"gamma": 0.0, "eta": 0.0},          # DAH's hash loss on the source only
    "DAH-e": {"eta": 0.0},                       # DAH without the entropy loss
    # The library's DAH: the MMD with class-balanced pair weights, which the K-per-class batch layout
    # cannot bias (docs/adaptation.md); DAH-paper is the authors' code, whose plain estimate it biases.
    "DAH": {},
    "DAH-paper": {"mmd_estimator": "authors"},
    # Beyond the paper: the class-weighted MMD of Yan et al. (CVPR 2017) on the balanced one.
    "DAH-cw": {"mmd_estimator": "class-weighted"},
}


def method_config(method: str, settings: dict[str, Any], source: str = "settings") -> TrainConfig:
    """The run config of ``method``: library defaults, then the method's settings, then ``settings``
    (data, bits, seed, output and any user override; ``source`` names them in errors)."""
    if method not in DEEP_METHODS:
        raise ConfigError(f"unknown deep method {method!r}; known: {', '.join(DEEP_METHODS)}")
    return TrainConfig.from_dict({**DEEP_METHODS[method], **settings}, source=source)
