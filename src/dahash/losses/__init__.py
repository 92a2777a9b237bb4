"""Loss terms of Domain Adaptive Hashing, one module each."""

from dahash.losses.adversarial import DomainAdversarialLoss, DomainDiscriminator, grl_coefficient, reverse_gradient
from dahash.losses.classifier import ClassifierDALoss
from dahash.losses.dah import DAHLoss
from dahash.losses.entropy import EntropyLoss, class_log_probabilities
from dahash.losses.mmd import (
           MMD_ESTIMATORS,
           LinearMKMMD,
           MultiLayerMKMMD,
           TargetClassPrior,
           class_pair_weights,
           default_kernel_multipliers,
)
from dahash.losses.pairwise_hash import PairwiseHashLoss
from dahash.losses.quantization import QuantizationLoss, sgn

__all__ = ["ClassifierDALoss", "DAHLoss", "DomainAdversarialLoss", "DomainDiscriminator", "grl_coefficient", "reverse_gradient", "EntropyLoss", "LinearMKMMD", "MMD_ESTIMATORS", "MultiLayerMKMMD", "TargetClassPrior", "class_pair_weights", "PairwiseHashLoss",
           "QuantizationLoss", "class_log_probabilities", "default_kernel_multipliers", "sgn"]
