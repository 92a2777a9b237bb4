"""Input feature normalisation, fitted without labels on source and target features together."""

from __future__ import annotations

import numpy as np

KINDS = ("auto", "none", "l2", "standardize", "l1-standardize")
# A row sum this close to 1 marks a histogram already divided by its sum.
_UNIT_SUM_TOLERANCE = 1e-3
# The kinds that standardise with fitted statistics (mean_, scale_).
_STANDARDISED = ("standardize", "l1-standardize")


def feature_kind(*arrays: np.ndarray) -> str:
    """What the features are, from their values alone (no labels): ``histogram`` (non-negative, and
    integer counts or rows summing to 1: bag-of-words), ``pooled`` (non-negative otherwise: a CNN's
    pooled post-ReLU activations), or ``signed`` (any negative value: an embedding)."""
    values = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays])
    if (values < 0).any():
        return "signed"
    sums = values.sum(1)
    counts = bool(np.all(values == np.round(values)))
    unit_rows = bool(np.all(np.abs(sums[sums > 0] - 1.0) <= _UNIT_SUM_TOLERANCE))
    return "histogram" if counts or unit_rows else "pooled"


#: What ``auto`` does with each kind of feature (docs/own-features.md says why).
AUTO_NORM = {"histogram": "l1-standardize", "pooled": "none", "signed": "standardize"}


class FeatureNormalizer:
    """``none``; ``l2`` (unit-length rows); ``standardize`` (zero mean, unit variance per dimension,
    statistics of the pooled source and target features; no labels used); ``l1-standardize`` (each
    row divided by its sum, then standardised); or ``auto``, which picks one of these at ``fit`` from
    :func:`feature_kind` by :data:`AUTO_NORM` and keeps it as ``kind_``."""

    def __init__(self, kind: str = "none") -> None:
        if kind not in KINDS:
            raise ValueError(f"feature_norm must be one of {', '.join(KINDS)}; got {kind!r}")
        self.kind = kind
        self.kind_ = kind

    def fit(self, *arrays: np.ndarray) -> "FeatureNormalizer":
        """Learn the statistics (and for ``auto`` the normalisation) from the given feature arrays."""
        self.kind_ = AUTO_NORM[feature_kind(*arrays)] if self.kind == "auto" else self.kind
        if self.kind_ in _STANDARDISED:
            rows = [self._rows(a) for a in arrays]
            pooled = np.concatenate(rows).astype(np.float64)
            self.mean_ = pooled.mean(0).astype(np.float32)
            # Constant dimensions keep scale 1 instead of dividing by zero.
            std = pooled.std(0)
            self.scale_ = np.where(std > 1e-8, std, 1.0).astype(np.float32)
        return self

    def _rows(self, X: np.ndarray) -> np.ndarray:
        """``X`` as float32, rows divided by their sums for ``l1-standardize`` (an empty row stays 0)."""
        X = np.asarray(X, dtype=np.float32)
        if self.kind_ == "l1-standardize":
            return X / np.maximum(np.abs(X).sum(1, keepdims=True), 1e-12)
        return X

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Apply the normalisation; returns float32."""
        if self.kind_ == "auto":
            raise ValueError("feature_norm auto chooses at fit: fit the normaliser before transforming")
        X = self._rows(X)
        if self.kind_ == "l2":
            return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        if self.kind_ in _STANDARDISED:
            return (X - self.mean_) / self.scale_
        return X

    def state_dict(self) -> dict:
        """Everything needed to rebuild it, for the model file: the normalisation ``auto`` chose."""
        state = {"kind": self.kind_, "asked": self.kind}
        if self.kind_ in _STANDARDISED:
            state.update(mean=self.mean_, scale=self.scale_)
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> "FeatureNormalizer":
        """Inverse of :meth:`state_dict`."""
        norm = cls(state["kind"])
        norm.kind = state.get("asked", state["kind"])
        if norm.kind_ in _STANDARDISED:
            norm.mean_, norm.scale_ = np.asarray(state["mean"]), np.asarray(state["scale"])
        return norm
