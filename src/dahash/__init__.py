"""dahash: Domain Adaptive Hashing (Venkateswara et al., CVPR 2017) for PyTorch.

Train a network on labeled source features and unlabeled target features so that its
binary codes classify the target (eq. 6) and retrieve similar items by Hamming distance.
"""

from .codes import binarize, hamming_distance, pack_codes, unpack_codes
from .config import TrainConfig
from .errors import ConfigError, DahashError, DataError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DahashError", "DataError", "TrainConfig", "binarize", "hamming_distance",
           "pack_codes", "unpack_codes", "__version__"]
