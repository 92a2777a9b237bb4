"""The DAH batch layout: K source samples of every class plus as many random target samples (Sec. 5.2)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    """Indices of one batch: ``source`` ordered class by class (K each), then ``target``."""

    source: np.ndarray
    target: np.ndarray
    source_labels: np.ndarray


class KPerClassSampler:
    """Plans epochs of DAH batches: exactly ``k`` source samples of every class, class by
    class, and ``n_classes * k`` random target samples (Venkateswara et al., Sec. 5.2).

    Within an epoch each class is walked through a fresh permutation, so every source
    sample is seen before any repeats; a class with fewer than ``k`` samples is drawn
    with replacement (a warning names it). An epoch is one pass over the source:
    ``ceil(n_source / (n_classes * k))`` batches. Target samples are drawn without
    replacement within a batch (with replacement if the target set is smaller than a
    batch's share).

    With ``replacement=True`` every draw is independent (a class's K samples and the
    target samples are drawn with replacement), so two slots of a batch can hold the same
    item. Then the expected linear MMD of a batch is the MMD between the two sampling
    distributions, which is never negative; without replacement it is the U-statistic of
    the finite domains, which a network can drive below zero by pushing distinct items of a
    small domain apart (a bias of about -(1/n_source + 1/n_target) per sharp kernel).

    The plan of epoch ``e`` depends only on ``(seed, e)``, so a resumed run regenerates
    exactly the batches it would have seen.
    """

    def __init__(self, source_labels: np.ndarray, n_target: int, k: int = 5, seed: int = 0,
                 n_classes: int | None = None, replacement: bool = False) -> None:
        labels = np.asarray(source_labels)
        if labels.ndim != 1 or len(labels) == 0:
            raise ValueError(f"source_labels must be a non-empty 1-D array, got shape {labels.shape}")
        if k < 1:
            raise ValueError(f"k (samples per class) must be >= 1, got {k}")
        if n_target < 1:
            raise ValueError(f"the target set is empty (n_target={n_target})")
        self.n_classes = int(labels.max()) + 1 if n_classes is None else int(n_classes)
        self.by_class = [np.flatnonzero(labels == c) for c in range(self.n_classes)]
        empty = [c for c, idx in enumerate(self.by_class) if len(idx) == 0]
        if empty:
            raise ValueError(f"source classes {empty} have no samples; every class needs at least one")
        self.labels = labels
        self.n_target = int(n_target)
        self.k = int(k)
        self.seed = int(seed)
        self.replacement = bool(replacement)
        self.small_classes = [c for c, idx in enumerate(self.by_class) if len(idx) < k]
        if self.small_classes:
            warnings.warn(f"source classes {self.small_classes} have fewer than k={k} samples; "
                          "they are sampled with replacement", stacklevel=2)
        if self.n_target < self.batch_source_size:
            warnings.warn(f"the target set ({self.n_target}) is smaller than a batch's target share "
                          f"({self.batch_source_size}); target samples repeat within a batch", stacklevel=2)

    @property
    def batch_source_size(self) -> int:
        """Source (and target) samples per batch: n_classes * k."""
        return self.n_classes * self.k

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(len(self.labels) / self.batch_source_size)

    def epoch(self, epoch: int) -> list[Batch]:
        """The batches of one epoch, a pure function of ``(seed, epoch)``."""
        rng = np.random.default_rng([self.seed, epoch])
        n_batches = len(self)
        # Per class, enough concatenated permutations to fill every batch of the epoch.
        columns = []
        for idx in self.by_class:
            need = n_batches * self.k
            if len(idx) < self.k or self.replacement:
                stream = rng.choice(idx, size=need, replace=True)
            else:
                reps = math.ceil(need / len(idx))
                stream = np.concatenate([rng.permutation(idx) for _ in range(reps)])[:need]
            columns.append(stream.reshape(n_batches, self.k))
        source = np.stack(columns, axis=1).reshape(n_batches, -1)
        labels = np.repeat(np.arange(self.n_classes), self.k)
        replace = self.replacement or self.n_target < self.batch_source_size
        return [Batch(source=source[b], source_labels=labels,
                      target=rng.choice(self.n_target, size=self.batch_source_size, replace=replace))
                for b in range(n_batches)]
