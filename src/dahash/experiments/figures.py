"""Feature-analysis figures of paper Figure 3: A-distance bars (3a) and t-SNE embeddings (3b-3d)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from dahash.errors import ConfigError, DataError  # noqa: E402
from dahash.io import atomic_path  # noqa: E402

#: Dimensions the features are PCA-reduced to before t-SNE (the usual speed-up; t-SNE's cost
#: grows with the input dimension, and 50 components keep the neighbourhood structure).
TSNE_PCA_DIMS = 50


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def plot_a_distances(path: str | os.PathLike, values: Mapping[str, Mapping[str, float]], title: str = "") -> None:
    """Grouped bars as paper Figure 3a: one group per transfer task, one bar per feature kind.

    ``values[task][kind]`` is the proxy A-distance, e.g. ``{"A→W": {"Deep": 1.9, "DAN": 1.7,
    "DAH": 1.5}}``.  Kinds are drawn in first-seen order; a kind missing for a task leaves a gap.
    """
    if not values:
        raise DataError("values must hold at least one task, got an empty mapping")
    tasks = list(values)
    kinds: list[str] = []
    for task in tasks:
        if not values[task]:
            raise DataError(f"values[{task!r}] holds no feature kinds")
        kinds.extend(k for k in values[task] if k not in kinds)
    table = np.array([[float(values[t].get(k, np.nan)) for k in kinds] for t in tasks])
    width = 0.8 / len(kinds)
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(tasks) * len(kinds) + 1.5), 3.6), dpi=120)
    for i, kind in enumerate(kinds):
        ax.bar(x + (i - (len(kinds) - 1) / 2) * width, table[:, i], width, label=kind)
    finite = table[np.isfinite(table)]
    low = min(0.0, float(finite.min()) - 0.05) if finite.size else 0.0
    high = max(2.0, float(finite.max())) if finite.size else 2.0
    ax.set_ylim(low, high + 0.45)  # the proxy A-distance lives in [0, 2]; room above for the legend
    ax.set_yticks(np.arange(0.0, high + 0.01, 0.5))
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(x, tasks)
    ax.set_ylabel("proxy A-distance")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=len(kinds), loc="upper center")
    if title:
        ax.set_title(title, fontsize=10)
    _save(fig, path)


def _features_and_labels(name: str, x: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    feats = np.asarray(x, dtype=np.float64)
    lab = np.asarray(labels)
    if feats.ndim != 2:
        raise DataError(f"{name} must be a 2-D array of feature rows, got shape {feats.shape}")
    if not np.isfinite(feats).all():
        raise DataError(f"{name} contains NaN or infinite values")
    if lab.ndim != 1 or len(lab) != len(feats):
        raise DataError(f"{name}_labels must be 1-D with one label per row of {name}: "
                        f"got shape {lab.shape} for {len(feats)} rows")
    if lab.size and (not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0 or lab.max() >= n_classes):
        raise DataError(f"{name}_labels must be integer class indices in [0, {n_classes}), "
                        f"got values in [{lab.min()}, {lab.max()}] of dtype {lab.dtype}")
    return feats, lab.astype(np.int64)


def _class_colours(k: int) -> list:
    if k <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(k)]
    if k <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(k)]
    return [plt.get_cmap("turbo")(v) for v in np.linspace(0.0, 1.0, k)]


def plot_tsne(path: str | os.PathLike, source: np.ndarray, source_labels: np.ndarray, target: np.ndarray,
              target_labels: np.ndarray, classes: Sequence[str], *, max_classes: int = 10, seed: int = 0,
              title: str = "", domain_names: tuple[str, str] = ("source", "target")) -> tuple[np.ndarray, np.ndarray]:
    """Joint t-SNE embedding of both domains' features, as paper Figures 3b-3d.

    Only rows whose class index is below ``max_classes`` are embedded (the paper shows 10
    categories).  Both domains are embedded *together* (one t-SNE), so their overlap is
    meaningful.  Features are PCA-reduced to :data:`TSNE_PCA_DIMS` dimensions first, then
    embedded by :class:`sklearn.manifold.TSNE` (PCA initialisation, ``random_state=seed``;
    perplexity ``min(30, (n - 1) / 3)`` for ``n`` points; one OpenMP thread, see the code).
    Source points are drawn as filled circles ``o``, target points as ``+``; the colour is the
    class (tab10 up to 10 classes, tab20 up to 20).

    The **target labels are used only to colour the target points** -- for evaluation, as in the
    paper's figure; they do not influence the embedding, which sees features only.

    Returns the 2-D embeddings of the plotted source and target rows, in their original order.
    Raises ValueError (:class:`~dahash.errors.DataError` / :class:`~dahash.errors.ConfigError`)
    for mismatched feature dimensions, labels that don't match rows or ``classes``,
    ``max_classes < 1``, or a domain with no rows in the selected classes.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if isinstance(max_classes, bool) or not isinstance(max_classes, (int, np.integer)) or max_classes < 1:
        raise ConfigError(f"max_classes must be an integer >= 1, got {max_classes!r}")
    if len(classes) == 0:
        raise DataError("classes must name at least one class, got an empty sequence")
    if len(domain_names) != 2:
        raise ConfigError(f"domain_names must be (source name, target name), got {domain_names!r}")
    src, src_lab = _features_and_labels("source", source, source_labels, len(classes))
    tgt, tgt_lab = _features_and_labels("target", target, target_labels, len(classes))
    if src.shape[1] != tgt.shape[1]:
        raise DataError(f"source and target feature dimensions differ: source has {src.shape[1]} "
                        f"columns, target has {tgt.shape[1]}")
    k = min(int(max_classes), len(classes))
    keep_s, keep_t = src_lab < k, tgt_lab < k
    for name, keep in (("source", keep_s), ("target", keep_t)):
        if not keep.any():
            raise DataError(f"empty class selection: no {name} rows have a class index below "
                            f"max_classes={max_classes} (classes {list(classes[:k])})")
    x = np.concatenate([src[keep_s], tgt[keep_t]])
    n = len(x)
    if n < 4:
        raise DataError(f"too few rows to embed: {n} source and target rows in the first {k} classes, "
                        "need at least 4")

    # Identical rows (a collapsed layer: all-zero ReLU outputs) crash scikit-learn's Barnes-Hut
    # tree; they get one shared point, which is where t-SNE would put them anyway.
    x, inverse = np.unique(x, axis=0, return_inverse=True)
    m = len(x)
    if m < 4:
        emb = np.zeros((n, 2))
    else:
        dims = min(TSNE_PCA_DIMS, x.shape[1], m)
        if x.shape[1] > dims:
            x = PCA(n_components=dims, random_state=seed).fit_transform(x)
        perplexity = min(30.0, (m - 1) / 3.0)
        # One OpenMP thread: each Barnes-Hut iteration is tiny for a few thousand points, and on a
        # busy machine libgomp's spin-waiting threads made a 36-point embedding take 70 s instead of 0.3 s.
        with threadpool_limits(limits=1, user_api="openmp"):
            emb = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(x)
        emb = emb[inverse.ravel()]
    emb_s, emb_t = emb[: int(keep_s.sum())], emb[int(keep_s.sum()):]
    lab_s, lab_t = src_lab[keep_s], tgt_lab[keep_t]

    colours = _class_colours(k)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for c in range(k):
        ax.scatter(*emb_s[lab_s == c].T, s=14, marker="o", color=colours[c], alpha=0.8, linewidths=0)
        ax.scatter(*emb_t[lab_t == c].T, s=26, marker="+", color=colours[c], alpha=0.9, linewidths=1.0)
    handles = [Line2D([], [], linestyle="", marker="s", markersize=7, color=colours[c], label=str(classes[c]))
               for c in range(k)]
    handles += [Line2D([], [], linestyle="", marker="o", markersize=6, color="black", label=f"{domain_names[0]} (●)"),
                Line2D([], [], linestyle="", marker="+", markersize=8, color="black", label=f"{domain_names[1]} (+)")]
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    _save(fig, path)
    return emb_s, emb_t
