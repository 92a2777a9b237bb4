"""Loss terms of Domain Adaptive Hashing, one module each."""

from .adversarial import DomainAdversarialLoss, DomainDiscriminator, grl_coefficient, reverse_gradient
from .classifier import ClassifierDALoss
from .dah import DAHLoss
from .entropy import EntropyLoss, class_log_probabilities
from .mmd import MMD_ESTIMATORS, LinearMKMMD, MultiLayerMKMMD, TargetClassPrior, class_pair_weights, default_kernel_multipliers
from .pairwise_hash import PairwiseHashLoss
from .quantization import QuantizationLoss, sgn

__all__ = ["ClassifierDALoss", "DAHLoss", "DomainAdversarialLoss", "DomainDiscriminator", "grl_coefficient", "reverse_gradient", "EntropyLoss", "LinearMKMMD", "MMD_ESTIMATORS", "MultiLayerMKMMD", "TargetClassPrior", "class_pair_weights", "PairwiseHashLoss",
           "QuantizationLoss", "class_log_probabilities", "default_kernel_multipliers", "sgn"]
