"""dahash: Domain Adaptive Hashing (Venkateswara et al., CVPR 2017) for PyTorch.

Train a network on labeled source features and unlabeled target features so that its
binary codes classify the target (eq. 6) and retrieve similar items by Hamming distance.
"""

from .codes import binarize, hamming_distance, pack_codes, unpack_codes
from .config import TrainConfig
from .errors import ConfigError, DahashError, DataError

__version__ = "0.1.0"

__all__ = ["DAH", "ConfigError", "DahashError", "DataError", "TrainConfig", "binarize", "hamming_distance",
           "pack_codes", "unpack_codes", "__version__"]


def __getattr__(name: str) -> type:
    """``dahash.DAH`` on first use: it imports scikit-learn and skada, and importing skada switches
    on scikit-learn's metadata routing, which ``import dahash`` alone should not do."""
    if name == "DAH":
        from .estimator import DAH

        return DAH
    raise AttributeError(f"module 'dahash' has no attribute {name!r}")
