"""Target classification by eq. 6 against a bank of labeled source outputs, and code export (Venkateswara et al., CVPR 2017, Sec. 5.2)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from dahash.codes import pack_codes
from dahash.io import atomic_path
from dahash.losses.entropy import class_log_probabilities
from dahash.losses.quantization import sgn
from dahash.models.head import ClassifierHead, DAHHead


def select_bank(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of up to ``per_class`` random samples of every class (the authors use 200)."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        picks.append(idx if len(idx) <= per_class else np.sort(rng.choice(idx, per_class, replace=False)))
    return np.concatenate(picks)


def class_probabilities(query: np.ndarray, bank: np.ndarray, bank_labels: np.ndarray, n_classes: int,
                        *, binary: bool = False, chunk_size: int = 2048) -> np.ndarray:
    """p_ij of eq. 6 for every query against the bank; ``binary`` compares sgn codes instead."""
    bank_t = torch.as_tensor(bank, dtype=torch.float32)
    labels_t = torch.as_tensor(bank_labels, dtype=torch.long)
    if binary:
        bank_t = sgn(bank_t)
    out = np.empty((len(query), n_classes), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(query), chunk_size):
            q = torch.as_tensor(query[start:start + chunk_size], dtype=torch.float32)
            if binary:
                q = sgn(q)
            out[start:start + chunk_size] = class_log_probabilities(q, bank_t, labels_t, n_classes).exp().numpy()
    return out


def predict_labels(query: np.ndarray, bank: np.ndarray, bank_labels: np.ndarray, n_classes: int,
                   *, binary: bool = False) -> np.ndarray:
    """argmax_j p_ij (eq. 6): the class whose bank outputs the query is most similar to."""
    return class_probabilities(query, bank, bank_labels, n_classes, binary=binary).argmax(1)


def export_codes(path: str | os.PathLike, outputs: np.ndarray, ids: Sequence[str] | np.ndarray,
                 labels: np.ndarray | None = None, classes: Sequence[str] | None = None,
                 predicted: Sequence[str | None] | None = None) -> None:
    """Write packed codes (uint8, ceil(d/8) bytes per item) with ids, labels, class names and predicted class
    names to .npz."""
    arrays = {"codes": pack_codes(outputs), "n_bits": np.int64(outputs.shape[1]), "ids": np.asarray(ids, dtype=str)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
    if classes is not None:
        arrays["classes"] = np.asarray(classes, dtype=str)
    if predicted is not None:
        arrays["predicted"] = np.asarray([p or "" for p in predicted], dtype=str)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def encode(model: DAHHead | ClassifierHead, X: np.ndarray, batch_size: int = 4096, layer: str | None = None) -> np.ndarray:
    """The model's outputs in eval mode: u in (-1, 1)^d for the hash head, logits for the
    softmax head, or the representation ``layer`` ("fc6", "fc7", "fc8") when given."""
    model.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            out = model(torch.as_tensor(X[start:start + batch_size]))
            outs.append((out.u if layer is None else out.taps[layer]).numpy())
    if outs:
        return np.concatenate(outs)
    width = model.fc8.out_features if layer in (None, "fc8") else getattr(model, layer).out_features
    return np.zeros((0, width), np.float32)
