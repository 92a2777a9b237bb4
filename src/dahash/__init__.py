"""dahash: Domain Adaptive Hashing (Venkateswara et al., CVPR 2017) for PyTorch.

Train a network on labeled source features and unlabeled target features so that its
binary codes classify the target (eq. 6) and retrieve similar items by Hamming distance.

The public API::

    from dahash import DAH, FaissIndex, mean_average_precision
    model = DAH(bits=64).fit(X, y, sample_domain=domains)   # skada's convention
    codes = model.transform(X_target)                        # packed binary codes
    index = FaissIndex(64); index.add(codes)
    distances, ids = index.search(codes[:5], k=10)
"""

from importlib import import_module
from typing import Any

from dahash.codes import binarize, hamming_distance, pack_codes, unpack_codes
from dahash.errors import ConfigError, DahashError, DataError

__version__ = "0.1.0"

# Names that need torch, scikit-learn or skada load on first use: importing skada switches on
# scikit-learn's metadata routing, which ``import dahash`` alone should not do, and Python runs this
# file before any ``dahash.x`` module, so importing them here would load all of them for every one.
_LAZY = {
    "DAH": "dahash.runs.estimator",
    "TrainConfig": "dahash.training.config",
    "train_model": "dahash.training.trainer",
    "run": "dahash.runs.run",
    "load_run": "dahash.runs.loading",
    "encode": "dahash.models.predict",
    "encode_images": "dahash.runs.loading",
    "FaissIndex": "dahash.index",
    "MilvusIndex": "dahash.index",
    "open_index": "dahash.index",
    "mean_average_precision": "dahash.metrics",
    "precision_at_k": "dahash.metrics",
    "precision_recall_curve": "dahash.metrics",
    "precision_within_radius": "dahash.metrics",
}

__all__ = ["ConfigError", "DahashError", "DataError", "binarize", "hamming_distance", "pack_codes",
           "unpack_codes", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dahash' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
