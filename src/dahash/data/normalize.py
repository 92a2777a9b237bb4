"""Input feature normalisation, fitted without labels on source and target features together."""

from __future__ import annotations

import numpy as np


class FeatureNormalizer:
    """``none``, ``l2`` (unit-length rows) or ``standardize`` (zero mean, unit variance per
    dimension, statistics of the pooled source and target features; no labels used)."""

    def __init__(self, kind: str = "none") -> None:
        if kind not in ("none", "l2", "standardize"):
            raise ValueError(f"feature_norm must be none, l2 or standardize; got {kind!r}")
        self.kind = kind

    def fit(self, *arrays: np.ndarray) -> "FeatureNormalizer":
        """Learn the statistics from the given feature arrays."""
        if self.kind == "standardize":
            pooled = np.concatenate(arrays).astype(np.float64)
            self.mean_ = pooled.mean(0).astype(np.float32)
            # Constant dimensions keep scale 1 instead of dividing by zero.
            std = pooled.std(0)
            self.scale_ = np.where(std > 1e-8, std, 1.0).astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Apply the normalisation; returns float32."""
        X = np.asarray(X, dtype=np.float32)
        if self.kind == "l2":
            return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        if self.kind == "standardize":
            return (X - self.mean_) / self.scale_
        return X

    def state_dict(self) -> dict:
        """Everything needed to rebuild it, for the model file."""
        state = {"kind": self.kind}
        if self.kind == "standardize":
            state.update(mean=self.mean_, scale=self.scale_)
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> "FeatureNormalizer":
        """Inverse of :meth:`state_dict`."""
        norm = cls(state["kind"])
        if norm.kind == "standardize":
            norm.mean_, norm.scale_ = np.asarray(state["mean"]), np.asarray(state["scale"])
        return norm
