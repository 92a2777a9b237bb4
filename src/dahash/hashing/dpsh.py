"""Deep pairwise-supervised hashing, DPSH (Li, Wang & Kang, "Feature Learning based Deep Supervised Hashing with Pairwise Labels", IJCAI 2016).

The DAH paper (Sec. 5.4) trains DPSH on the labeled source for its NoDA retrieval baseline and on
labeled target data for SuH, the supervised upper bound. DPSH's objective (its eq. 4) is::

    J = - sum_{s_ij in S} (s_ij Theta_ij - log(1 + exp(Theta_ij)))  +  eta sum_i ||b_i - u_i||^2,
    Theta_ij = 1/2 u_i^T u_j,   b_i = sgn(u_i),   u_i = W^T phi(x_i; theta) + v

with ``s_ij = 1`` for a same-class pair and 0 otherwise. The hash layer is *linear* (no tanh or
BatchNorm, unlike DAH's), and ``b_i`` is a constant in backpropagation, which gives the paper's
gradient ``dJ/du_i = 1/2 sum_j (a_ij - s_ij) u_j + 1/2 sum_j (a_ji - s_ji) u_j + 2 eta (u_i - b_i)``
with ``a_ij = sigmoid(Theta_ij)``. It is minimised by mini-batch SGD over pairs inside each batch.

Here phi is the same fc6-ReLU-fc7-ReLU trunk as DAH's head, on the same frozen backbone
features, so that NoDA, SuH and DAH differ only in their loss and training data. Both terms are
the library's :class:`~dahash.losses.PairwiseHashLoss` (like-pair weight 1, scale 1/2) and
:class:`~dahash.losses.QuantizationLoss`, summed over the batch and divided by the batch size.
Each input feature is standardised with the training set's mean and standard deviation.

This package's choices, made by source-only validation (30 % of Office-Caltech amazon held out as
queries against the other 70 %, 16/64/128 bits; no target data): eta = 1 (mAP 0.967 / 0.967 /
0.875, against 0.69 / 0.31 / 0.11 with eta = 10 and 0.72 / 0.60 / 0.51 with eta = 0.1: here the
pair term sums over the 127 partners in a batch, not over DPSH's whole training set, so eta's
scale differs from the paper's), SGD with momentum 0.9, learning rate 1e-3, weight decay 5e-4,
batches of 128 drawn without replacement, 100 epochs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_X_y

from dahash.errors import ConfigError, DataError
from dahash.hashing._base import BaseHasher
from dahash.losses import PairwiseHashLoss, QuantizationLoss
from dahash.models.head import FCTrunk
from dahash.validation import check_int, check_positive, check_seed

__all__ = ["DPSHHasher", "dpsh_loss"]


def dpsh_loss(u: torch.Tensor, labels: torch.Tensor, eta: float) -> torch.Tensor:
    """DPSH objective J (Li, Wang & Kang, IJCAI 2016, eq. 4) over all ordered pairs of a batch."""
    return PairwiseHashLoss(like_weight=1.0, scale=0.5)(u, labels) + QuantizationLoss(beta=eta)(u)


class DPSHHasher(BaseHasher):
    """DPSH (Li, Wang & Kang, IJCAI 2016, eq. 4): a supervised hashing network, codes ``sgn(u)``.

    Parameters
    ----------
    n_bits : int, default=64
        Code length (width of the linear hash layer).
    hidden : two ints, default=(256, 256)
        Widths of fc6 and fc7, as DAH's head.
    eta : float, default=1.0
        Weight of the quantization term.
    epochs, batch_size : int, defaults 100 and 128
        Passes over the training set and points per mini-batch.
    lr, momentum, weight_decay : float, defaults 1e-3, 0.9, 5e-4
        SGD settings (weight decay on the weights, not the biases).
    random_state : int or None
        Seed of the initialisation and the batch order; torch's global generator is left as it was.

    Attributes
    ----------
    mean_, scale_ : per-feature standardisation fitted on the training set.
    model_ : the trained network (fc6, fc7, linear hash layer fc8), in eval mode.
    classes_ : ndarray of the training labels' distinct values.
    loss_history_ : list of float, the mean batch loss of each epoch.
    n_features_in_ : int
    """

    def __init__(self, n_bits: int = 64, *, hidden: Sequence[int] = (256, 256), eta: float = 1.0,
                 epochs: int = 100, batch_size: int = 128, lr: float = 1e-3, momentum: float = 0.9,
                 weight_decay: float = 5e-4, random_state: int | None = None) -> None:
        self.n_bits = n_bits
        self.hidden = hidden
        self.eta = eta
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.random_state = random_state

    def _validate_params(self) -> None:
        check_int("n_bits", self.n_bits, low=1)
        check_int("epochs", self.epochs, low=1)
        check_int("batch_size", self.batch_size, low=2)
        if not isinstance(self.hidden, Sequence) or len(self.hidden) != 2:
            raise ConfigError(f"hidden must be two widths (fc6, fc7), got {self.hidden!r}")
        for i, width in enumerate(self.hidden):
            check_int(f"hidden[{i}]", width, low=1)
        check_positive("eta", self.eta, allow_zero=True)
        check_positive("lr", self.lr)
        check_positive("momentum", self.momentum, allow_zero=True)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_seed(self.random_state)

    def fit(self, X: Any, y: Any) -> "DPSHHasher":
        """Train on the (n, D) features X with their class labels y (pairs of equal y are similar)."""
        self._validate_params()
        X, y = check_X_y(X, y, dtype=np.float32, ensure_min_samples=2)
        self.n_features_in_ = X.shape[1]
        # float64 statistics: a constant float32 column then has a standard deviation of exactly 0
        # (in float32 it is rounding noise, which would blow that column up to +-1).
        mean, std = X.mean(axis=0, dtype=np.float64), X.astype(np.float64).std(axis=0)
        self.mean_ = mean.astype(np.float32)
        # A constant feature carries nothing; scale 1 keeps it at 0 instead of dividing by 0.
        self.scale_ = np.where(std > 0, std, 1.0).astype(np.float32)
        X = (X - self.mean_) / self.scale_
        self.classes_, labels = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise DataError(f"DPSH needs at least two classes to form dissimilar pairs, got {len(self.classes_)}")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        # fork_rng: the seeded initialisation must not move the caller's global torch generator.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0 if self.random_state is None else int(self.random_state))
            try:
                return self._fit(torch.from_numpy(X), torch.from_numpy(labels))
            finally:
                torch.set_num_threads(threads)

    def _fit(self, X: torch.Tensor, labels: torch.Tensor) -> "DPSHHasher":
        model = FCTrunk(X.shape[1], int(self.n_bits), [int(h) for h in self.hidden])
        decay = [p for name, p in model.named_parameters() if name.endswith("weight")]
        rest = [p for name, p in model.named_parameters() if not name.endswith("weight")]
        optimizer = torch.optim.SGD([{"params": decay, "weight_decay": float(self.weight_decay)},
                                     {"params": rest, "weight_decay": 0.0}],
                                    lr=float(self.lr), momentum=float(self.momentum))
        rng = np.random.default_rng(self.random_state)
        n, size = len(X), min(int(self.batch_size), len(X))
        history = []
        model.train()
        for _ in range(int(self.epochs)):
            order = torch.from_numpy(rng.permutation(n))
            total, batches = 0.0, 0
            # A last batch of one point has no pair; it joins the previous batch instead.
            starts = list(range(0, n - size + 1, size)) if n % size == 1 else list(range(0, n, size))
            for i, start in enumerate(starts):
                index = order[start:] if i == len(starts) - 1 else order[start:start + size]
                u = model.trunk(X[index])["fc8"]
                loss = dpsh_loss(u, labels[index], float(self.eta)) / len(index)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
                batches += 1
            history.append(total / batches)
            if not np.isfinite(history[-1]):
                raise DataError(f"DPSH diverged (loss {history[-1]}) in epoch {len(history)}; lower lr "
                                f"(now {self.lr}) or scale the features")
        model.eval()
        self.model_ = model
        self.loss_history_ = history
        return self

    def _signed_codes(self, X: np.ndarray) -> np.ndarray:
        """The linear hash layer's output u; its sign is the code."""
        with torch.no_grad():
            Xs = ((X - self.mean_) / self.scale_).astype(np.float32)
            return self.model_.trunk(torch.from_numpy(Xs))["fc8"].numpy()
