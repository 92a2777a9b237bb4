"""Figures people look at: precision-recall curves and training curves, written as PNG."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dahash.io import atomic_path  # noqa: E402


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


def plot_task_bars(path: str | os.PathLike, tasks: Sequence[str], scores: Mapping[str, Sequence[float]],
                   ylabel: str = "target accuracy (%)", title: str = "") -> None:
    """Grouped bars, one group per transfer task (and Avg), one bar per method: ``scores[method][task]``."""
    names = list(scores)
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(tasks))
    # Wide enough for the groups, never wider than a page; many methods get a taller plot instead.
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 1.1 * len(tasks) + 2)), 3.6 + 0.15 * max(len(names) - 3, 0)),
                           dpi=120)
    for i, name in enumerate(names):
        ax.bar(x + (i - (len(names) - 1) / 2) * width, np.asarray(scores[name], dtype=float), width, label=name)
    values = np.concatenate([np.asarray(v, dtype=float) for v in scores.values()]) if names else np.zeros(1)
    # Zoom on the range the methods differ in: bars starting at 0 would hide a 2-point gap.
    low = float(np.floor(values.min() / 5) * 5) - 5
    ax.set_ylim(max(0.0, low), float(values.max()) + 2)
    ax.set_xticks(x, tasks)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    # Below the axes, so that it never covers a bar.
    ax.legend(fontsize=8, ncols=min(len(names), 10), loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
