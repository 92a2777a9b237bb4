"""Loss terms of Domain Adaptive Hashing, one module each."""

from .dah import DAHLoss
from .entropy import EntropyLoss, class_log_probabilities
from .mmd import LinearMKMMD, MultiLayerMKMMD, default_kernel_multipliers
from .pairwise_hash import PairwiseHashLoss
from .quantization import QuantizationLoss, sgn

__all__ = ["DAHLoss", "EntropyLoss", "LinearMKMMD", "MultiLayerMKMMD", "PairwiseHashLoss",
           "QuantizationLoss", "class_log_probabilities", "default_kernel_multipliers", "sgn"]
