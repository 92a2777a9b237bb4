"""Linear-time unbiased multi-kernel MMD (Gretton et al., NIPS 2012), as used by DAH (Venkateswara et al., CVPR 2017, eq. 1, 9-11), with class-balanced and class-weighted (Yan et al., CVPR 2017) pair weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

#: ``authors``: the plain quadruple sum (eq. 11, the authors' code). ``balanced``: source pairs
#: reweighted so that the K-per-class batch layout cannot bias the estimate. ``class-weighted``:
#: the source side reweighted to given target class proportions (Yan et al., CVPR 2017, eq. 4).
MMD_ESTIMATORS = ("authors", "balanced", "class-weighted")


def default_kernel_multipliers(n_kernels: int = 17) -> Tensor:
    """Inverse bandwidth factors q in {2^-8, ..., 2^8} for 17 kernels (centred powers of two)."""
    half = (n_kernels - 1) / 2
    return torch.pow(2.0, torch.arange(n_kernels, dtype=torch.float64) - half)


def class_pair_weights(labels: Tensor, first: Tensor, second: Tensor,
                       class_weights: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Importance weights of the source terms of the linear MMD when pairs come from a random
    pairing of the batch's source rows (classes ``labels``); ``first`` and ``second`` are the
    classes of the two rows of each pair.

    A uniformly random pairing of a batch holding ``n_a`` rows of class ``a`` out of ``n`` puts
    classes ``(a, b)`` in a pair with probability ``P(a, b) = n_a n_b / (n (n - 1))`` (``a != b``)
    or ``n_a (n_a - 1) / (n (n - 1))`` (``a = b``): with exactly K per class, same-class pairs
    occur with ``p_w = (K - 1) / (CK - 1)`` instead of ``1/C``. Weighting ``k(s, s')`` by
    ``w_a w_b / P(a, b)`` and ``k(s, t)`` by ``w_a / P(a)``, ``P(a) = n_a / n``, makes each
    term's expectation that of independent draws of the class from ``w`` (distinct items within
    a class). ``w`` is the batch's own class proportions (``class_weights=None``: class-balanced)
    or ``class_weights`` renormalised over the classes present (class-weighted MMD).

    Returns the weights of ``k(s_first, s_second)``, ``k(s_first, t)`` and ``k(s_second, t)``.
    """
    n_classes = int(labels.max()) + 1 if class_weights is None else len(class_weights)
    counts = torch.bincount(labels, minlength=n_classes).to(torch.float64)
    n = counts.sum()
    p_class = counts / n
    if class_weights is None:
        w = p_class
    else:
        w = class_weights.detach().to(torch.float64) * (counts > 0)
        w = w / w.sum().clamp_min(1e-12)
    # Pair probabilities; a class with one row never pairs with itself (weight 0, never used).
    p_pair = torch.outer(counts, counts) - torch.diag(counts)
    p_pair = p_pair / (n * (n - 1)).clamp_min(1.0)
    pair_w = torch.where(p_pair > 0, torch.outer(w, w) / p_pair.clamp_min(1e-300), torch.zeros_like(p_pair))
    cross_w = torch.where(p_class > 0, w / p_class.clamp_min(1e-300), torch.zeros_like(p_class))
    return pair_w[first, second], cross_w[first], cross_w[second]


class LinearMKMMD(nn.Module):
    """Linear-time MK-MMD estimate between two equally sized batches, eq. 9-11.

    Samples are grouped in quadruples ``w_i = (s_{2i-1}, s_{2i}, t_{2i-1}, t_{2i})`` and

        h_m(w_i) = a_i k_m(s_{2i-1}, s_{2i}) + k_m(t_{2i-1}, t_{2i})
                   - b_i k_m(s_{2i-1}, t_{2i}) - c_i k_m(s_{2i}, t_{2i-1}),

    with Gaussian kernels ``k_m(x, y) = exp(-q_m ||x - y||^2 / sigma)``, ``sigma`` the
    median squared distance of the pairs in the quadruples (recomputed every batch and
    not backpropagated through) and equal weights ``1 / n_kernels``. The authors' estimate
    has ``a_i = b_i = c_i = 1``; the class-aware estimators take them from
    :func:`class_pair_weights` and need the source labels.

    Args:
        kernel_multipliers: the ``q_m``; default 2^-8 .. 2^8 (17 kernels).
        reduction: ``"sum"`` over quadruples (the authors' code, paired with gamma = 5000)
            or ``"mean"`` (eq. 9: the average over the n/2 quadruples).
        shuffle: randomly permute each domain before pairing, as the authors' code does;
            with ``False`` the pairing is eq. 10's consecutive one.
        estimator: one of :data:`MMD_ESTIMATORS`. With exactly K samples per class two
            source slots share a class with probability (K-1)/(CK-1), not 1/C, so the
            authors' estimate is biased by ``-(1/C - p_w)(E_same - E_diff)``, which a network
            that clusters the source by class drives below zero; ``"balanced"`` removes it.
        bandwidth: a fixed ``sigma`` instead of the batch median (for analysis and tests).

    Shapes: ``source`` and ``target`` are (n, D); if their sizes differ or are odd, the
    first ``2 * floor(min(n_s, n_t) / 2)`` samples (after shuffling) are used. ``labels``
    (n_s,) are the source classes, ``class_weights`` (C,) the target class proportions of
    the class-weighted estimator.
    """

    def __init__(self, kernel_multipliers: Sequence[float] | Tensor | None = None,
                 reduction: str = "sum", shuffle: bool = True, estimator: str = "authors",
                 bandwidth: float | None = None) -> None:
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        if estimator not in MMD_ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(MMD_ESTIMATORS)}, got {estimator!r}")
        if estimator != "authors" and not shuffle:
            raise ValueError(f"the {estimator} estimator assumes a random pairing; it needs shuffle=True")
        if bandwidth is not None and not bandwidth > 0:
            raise ValueError(f"bandwidth must be positive, got {bandwidth!r}")
        q = default_kernel_multipliers() if kernel_multipliers is None else torch.as_tensor(kernel_multipliers, dtype=torch.float64)
        if q.ndim != 1 or len(q) == 0 or bool((q <= 0).any()):
            raise ValueError(f"kernel_multipliers must be a non-empty list of positive numbers, got {q.tolist()}")
        self.register_buffer("kernel_multipliers", q, persistent=False)
        self.reduction = reduction
        self.shuffle = shuffle
        self.estimator = estimator
        self.bandwidth = bandwidth

    def forward(self, source: Tensor, target: Tensor, generator: torch.Generator | None = None,
                labels: Tensor | None = None, class_weights: Tensor | None = None) -> Tensor:
        if self.estimator != "authors" and labels is None:
            raise ValueError(f"the {self.estimator} MMD estimator needs the source labels")
        if self.estimator == "class-weighted" and class_weights is None:
            raise ValueError("the class-weighted MMD estimator needs class_weights (target class proportions)")
        n = 2 * (min(len(source), len(target)) // 2)
        if n == 0:
            return source.new_zeros(())
        batch_labels = labels
        if self.shuffle:
            order = torch.randperm(len(source), generator=generator)[:n].to(source.device)
            source = source[order]
            labels = labels[order] if labels is not None else None
            target = target[torch.randperm(len(target), generator=generator)[:n].to(target.device)]
        s1, s2 = source[0:n:2], source[1:n:2]
        t1, t2 = target[0:n:2], target[1:n:2]
        # Rows: (s1,s2), (t1,t2), (s1,t2), (s2,t1); the last two enter with a minus sign.
        sq = torch.stack([(s1 - s2).pow(2).sum(1), (t1 - t2).pow(2).sum(1),
                          (s1 - t2).pow(2).sum(1), (s2 - t1).pow(2).sum(1)])
        if self.bandwidth is not None:
            bandwidth = sq.new_tensor(self.bandwidth)
        else:
            # The median of an even count averages the two middle values (as MATLAB's median);
            # the floor keeps a collapsed layer (all distances 0) from producing 0/0 gradients.
            bandwidth = torch.quantile(sq.detach().flatten(), 0.5).clamp_min(1e-12)
        q = self.kernel_multipliers.to(sq.dtype).view(-1, 1, 1)
        kernels = torch.exp(-q * sq.unsqueeze(0) / bandwidth).mean(0)
        if self.estimator == "authors":
            h = kernels[0] + kernels[1] - kernels[2] - kernels[3]
        else:
            # Weights from the whole batch's class counts: the pairing is a random draw from all of it.
            a, b, c = (w.to(sq.dtype) for w in class_pair_weights(
                batch_labels, labels[0:n:2], labels[1:n:2],
                class_weights if self.estimator == "class-weighted" else None))
            h = a * kernels[0] + kernels[1] - b * kernels[2] - c * kernels[3]
        return h.sum() if self.reduction == "sum" else h.mean()


class MultiLayerMKMMD(nn.Module):
    """Sum of the linear MK-MMD over several layers' representations, eq. 1."""

    def __init__(self, mmd: LinearMKMMD | None = None) -> None:
        super().__init__()
        self.mmd = mmd if mmd is not None else LinearMKMMD()

    def forward(self, source_layers: Sequence[Tensor], target_layers: Sequence[Tensor],
                generator: torch.Generator | None = None, labels: Tensor | None = None,
                class_weights: Tensor | None = None) -> Tensor:
        if len(source_layers) != len(target_layers):
            raise ValueError(f"got {len(source_layers)} source layers but {len(target_layers)} target layers")
        total = source_layers[0].new_zeros(()) if source_layers else torch.zeros(())
        for s, t in zip(source_layers, target_layers):
            total = total + self.mmd(s, t, generator=generator, labels=labels, class_weights=class_weights)
        return total


class TargetClassPrior(nn.Module):
    """The target class proportions of the class-weighted MMD, estimated from the model's own
    predictions, never from labels (Yan et al., CVPR 2017, Sec. 4: class weights from
    pseudo-labels, updated as training goes): an exponential moving average of the batch-mean
    predicted class probabilities, starting uniform. A buffer, so checkpoints resume it exactly.

    Args:
        n_classes: number of classes C.
        momentum: weight of each new batch (0.05: about the last 20 batches, one epoch of a
            1,000-image source at K = 5 and C = 10).
    """

    def __init__(self, n_classes: int, momentum: float = 0.05) -> None:
        super().__init__()
        if n_classes < 1 or not 0 < momentum <= 1:
            raise ValueError(f"need n_classes >= 1 and 0 < momentum <= 1, got {n_classes!r} and {momentum!r}")
        self.momentum = float(momentum)
        self.register_buffer("proportions", torch.full((n_classes,), 1.0 / n_classes, dtype=torch.float64))

    @torch.no_grad()
    def update(self, probabilities: Tensor) -> Tensor:
        """Fold in a batch of predicted probabilities (m, C); returns the new proportions."""
        if len(probabilities):
            batch = probabilities.detach().to(self.proportions).mean(0)
            self.proportions.mul_(1.0 - self.momentum).add_(self.momentum * batch)
        return self.proportions
