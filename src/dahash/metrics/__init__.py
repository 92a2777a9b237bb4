"""Evaluation metrics of dahash."""

from dahash.metrics.retrieval import (
    average_precisions,
    default_chunk_size,
    hamming_ranking,
    mean_average_precision,
    precision_at_k,
    precision_recall_curve,
    precision_within_radius,
)

__all__ = [
    "average_precisions",
    "default_chunk_size",
    "hamming_ranking",
    "mean_average_precision",
    "precision_at_k",
    "precision_recall_curve",
    "precision_within_radius",
]
