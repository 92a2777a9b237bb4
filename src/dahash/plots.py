"""Figures people look at: precision-recall curves and training curves, written as PNG."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_path  # noqa: E402


def plot_pr_curves(path: str | os.PathLike, curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                   title: str = "Precision-recall (Hamming ranking)") -> None:
    """One line per method: ``curves[name] = (precision, recall)`` over Hamming radii."""
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for name, (precision, recall) in curves.items():
        ax.plot(np.asarray(recall, dtype=float), np.asarray(precision, dtype=float), marker=".", markersize=3, label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
