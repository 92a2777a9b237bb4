"""Shared machinery of the hashing estimators: parameter checks, input
validation and the ``transform`` that packs sign bits with :func:`dahash.codes.pack_codes`."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted

from dahash.codes import pack_codes
from dahash.errors import ConfigError, DataError
from dahash.validation import check_int, check_positive

__all__ = ["BaseHasher", "centre_and_scale", "check_int", "check_positive", "check_nonnegative", "make_rng"]


def check_nonnegative(name: str, value: Any) -> float:
    """``value`` as a finite float >= 0; otherwise a ConfigError naming ``name``."""
    return check_positive(name, value, allow_zero=True)


def centre_and_scale(X: np.ndarray) -> tuple[np.ndarray, float]:
    """Mean and root-mean-squared norm of the centred rows: dividing by it gives the data unit
    energy, so that weights such as BA's mu or BDNN's lambdas mean the same on any data set."""
    mean = X.mean(axis=0)
    return mean, float(np.sqrt(np.mean(np.sum((X - mean) ** 2, axis=1)))) or 1.0


def make_rng(random_state: Any) -> np.random.Generator:
    """A fresh Generator from ``random_state`` (None, an int >= 0 or a Generator).

    A new Generator per ``fit`` (rather than a module-level one) is what makes two fits with the
    same integer seed give identical codes.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(random_state, Integral) \
            or random_state < 0:
        raise ConfigError("random_state must be None, an integer >= 0 or a numpy Generator, "
                          f"got {random_state!r}")
    return np.random.default_rng(int(random_state))


class BaseHasher(TransformerMixin, BaseEstimator):
    """Base of the hashers: ``transform(X)`` = packed sign bits of ``_signed_codes(X)``."""

    def _validate_fit_X(self, X: Any) -> np.ndarray:
        """Validated float64 training matrix; records ``n_features_in_``."""
        X = check_array(X, dtype=np.float64, ensure_min_samples=2)
        self.n_features_in_ = X.shape[1]
        return X

    def _validate_X(self, X: Any) -> np.ndarray:
        """Validated float64 matrix for an already fitted hasher (NotFittedError otherwise)."""
        check_is_fitted(self)
        X = check_array(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:  # scikit-learn's own wording
            raise DataError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                            f"{self.n_features_in_} features as input")
        return X

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        # transform gives packed uint8 codes, whatever the input's dtype.
        tags.transformer_tags.preserves_dtype = []
        return tags

    def _signed_codes(self, X: np.ndarray) -> np.ndarray:
        """Real (n, n_bits) matrix whose signs are the codes (bit 1 where >= 0)."""
        raise NotImplementedError

    def transform(self, X: Any) -> np.ndarray:
        """Packed uint8 codes of shape (n, ceil(n_bits / 8)) (see :mod:`dahash.codes`)."""
        return pack_codes(self._signed_codes(self._validate_X(X)))
