"""Loss terms of Domain Adaptive Hashing, one module each."""

from .adversarial import DomainAdversarialLoss, DomainDiscriminator, grl_coefficient, reverse_gradient
from .classifier import ClassifierDALoss
from .dah import DAHLoss
from .entropy import EntropyLoss, class_log_probabilities
from .mmd import LinearMKMMD, MultiLayerMKMMD, default_kernel_multipliers
from .pairwise_hash import PairwiseHashLoss
from .quantization import QuantizationLoss, sgn

__all__ = ["ClassifierDALoss", "DAHLoss", "DomainAdversarialLoss", "DomainDiscriminator", "grl_coefficient", "reverse_gradient", "EntropyLoss", "LinearMKMMD", "MultiLayerMKMMD", "PairwiseHashLoss",
           "QuantizationLoss", "class_log_probabilities", "default_kernel_multipliers", "sgn"]
