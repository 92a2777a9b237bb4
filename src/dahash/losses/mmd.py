"""Linear-time unbiased multi-kernel MMD (Gretton et al., NIPS 2012), as used by DAH (Venkateswara et al., CVPR 2017, eq. 1, 9-11)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def default_kernel_multipliers(n_kernels: int = 17) -> Tensor:
    """Inverse bandwidth factors q in {2^-8, ..., 2^8} for 17 kernels (centred powers of two)."""
    half = (n_kernels - 1) / 2
    return torch.pow(2.0, torch.arange(n_kernels, dtype=torch.float64) - half)


class LinearMKMMD(nn.Module):
    """Linear-time MK-MMD estimate between two equally sized batches, eq. 9-11.

    Samples are grouped in quadruples ``w_i = (s_{2i-1}, s_{2i}, t_{2i-1}, t_{2i})`` and

        h_m(w_i) = k_m(s_{2i-1}, s_{2i}) + k_m(t_{2i-1}, t_{2i})
                   - k_m(s_{2i-1}, t_{2i}) - k_m(s_{2i}, t_{2i-1}),

    with Gaussian kernels ``k_m(x, y) = exp(-q_m ||x - y||^2 / sigma)``, ``sigma`` the
    median squared distance of the pairs in the quadruples (recomputed every batch and
    not backpropagated through) and equal weights ``1 / n_kernels``.

    Args:
        kernel_multipliers: the ``q_m``; default 2^-8 .. 2^8 (17 kernels).
        reduction: ``"sum"`` over quadruples (the authors' code, paired with gamma = 5000)
            or ``"mean"`` (eq. 9: the average over the n/2 quadruples).
        shuffle: randomly permute each domain before pairing, as the authors' code does;
            with ``False`` the pairing is eq. 10's consecutive one.

    Shapes: ``source`` and ``target`` are (n, D); if their sizes differ or are odd, the
    first ``2 * floor(min(n_s, n_t) / 2)`` samples (after shuffling) are used.
    """

    def __init__(self, kernel_multipliers: Sequence[float] | Tensor | None = None,
                 reduction: str = "sum", shuffle: bool = True) -> None:
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        q = default_kernel_multipliers() if kernel_multipliers is None else torch.as_tensor(kernel_multipliers, dtype=torch.float64)
        if q.ndim != 1 or len(q) == 0 or bool((q <= 0).any()):
            raise ValueError(f"kernel_multipliers must be a non-empty list of positive numbers, got {q.tolist()}")
        self.register_buffer("kernel_multipliers", q, persistent=False)
        self.reduction = reduction
        self.shuffle = shuffle

    def forward(self, source: Tensor, target: Tensor, generator: torch.Generator | None = None) -> Tensor:
        n = 2 * (min(len(source), len(target)) // 2)
        if n == 0:
            return source.new_zeros(())
        if self.shuffle:
            source = source[torch.randperm(len(source), generator=generator)[:n].to(source.device)]
            target = target[torch.randperm(len(target), generator=generator)[:n].to(target.device)]
        s1, s2 = source[0:n:2], source[1:n:2]
        t1, t2 = target[0:n:2], target[1:n:2]
        # Rows: (s1,s2), (t1,t2), (s1,t2), (s2,t1); the last two enter with a minus sign.
        sq = torch.stack([(s1 - s2).pow(2).sum(1), (t1 - t2).pow(2).sum(1),
                          (s1 - t2).pow(2).sum(1), (s2 - t1).pow(2).sum(1)])
        # The median of an even count averages the two middle values (as MATLAB's median);
        # the floor keeps a collapsed layer (all distances 0) from producing 0/0 gradients.
        bandwidth = torch.quantile(sq.detach().flatten(), 0.5).clamp_min(1e-12)
        q = self.kernel_multipliers.to(sq.dtype).view(-1, 1, 1)
        kernels = torch.exp(-q * sq.unsqueeze(0) / bandwidth).mean(0)
        h = kernels[0] + kernels[1] - kernels[2] - kernels[3]
        return h.sum() if self.reduction == "sum" else h.mean()


class MultiLayerMKMMD(nn.Module):
    """Sum of the linear MK-MMD over several layers' representations, eq. 1."""

    def __init__(self, mmd: LinearMKMMD | None = None) -> None:
        super().__init__()
        self.mmd = mmd if mmd is not None else LinearMKMMD()

    def forward(self, source_layers: Sequence[Tensor], target_layers: Sequence[Tensor],
                generator: torch.Generator | None = None) -> Tensor:
        if len(source_layers) != len(target_layers):
            raise ValueError(f"got {len(source_layers)} source layers but {len(target_layers)} target layers")
        total = source_layers[0].new_zeros(()) if source_layers else torch.zeros(())
        for s, t in zip(source_layers, target_layers):
            total = total + self.mmd(s, t, generator=generator)
        return total
