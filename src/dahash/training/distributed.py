"""Data-parallel training over processes started by torchrun: the DAH batch sharded over ranks, its
outputs gathered with gradients, so that N processes compute the loss of one process with the whole batch.

The DAH objective (Venkateswara et al., CVPR 2017, eq. 8) is not a sum over samples: the pairwise
hash loss (eq. 4-5) couples every source pair, the entropy loss (eq. 6-7) compares every target row
with the batch's source rows, and the MK-MMD (eq. 1, 9-11) pairs source and target rows. Averaging per-rank losses, as plain data
parallelism does, would change the objective with the number of processes. Instead:

* every rank plans the same global batch (the K-per-class sampler is a pure function of the seed
  and the epoch) and keeps its rows, dealt round-robin: each rank gets about K / N of every
  class's source rows and 1 / N of the target rows (:class:`Shard`);
* the network runs on the local rows; its outputs are all-gathered (:func:`gather_rows`) and put
  back in the global batch order, and every rank computes the loss of the whole batch;
* BatchNorm layers use the statistics of the whole batch (:class:`GlobalBatchNorm`), as they do in
  one process;
* in the backward pass each rank keeps its own rows' share of the gradient of the (replicated)
  loss, times N, because DistributedDataParallel averages the ranks' parameter gradients: the
  average of those shares is the gradient one process computes.

So ``torchrun --nproc-per-node N -m dahash train ...`` trains the model ``dahash train ...`` trains,
up to floating-point summation order, for any N (tests/training/test_distributed.py checks it with
2 processes on CPU). ``--k`` stays the samples per class of the whole batch, as in the paper; raise it
to give each rank more. Randomness inside the backbone (EfficientNet's stochastic depth) is drawn
per rank, so fine-tuning such a backbone matches one process in distribution, not bit for bit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from dahash.errors import ConfigError


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int
    # The gathers and batch statistics use a process group of their own, so their collectives
    # never interleave with DistributedDataParallel's gradient all-reduces on the default group.
    group: Any = field(default=None, compare=False, repr=False)

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, results and progress bars."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher of the env:// protocol) started this process with peers."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> Distributed | None:
    """Join the torchrun job of this process (NCCL for CUDA, gloo for CPU), or None when running alone.

    A CUDA device is the one of this process's ``LOCAL_RANK``.
    """
    if not launched_by_torchrun():
        return None
    try:
        rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except KeyError as exc:
        raise ConfigError(f"WORLD_SIZE is set but {exc.args[0]} is not: start distributed runs with torchrun") from exc
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return Distributed(rank=rank, world_size=world, local_rank=local, group=dist.new_group())


def shutdown(ctx: Distributed | None) -> None:
    """Leave the job (every rank must call it)."""
    if ctx is not None and dist.is_initialized():
        # Every rank reaches this point before any tears its group down: rank 0's process holds
        # the TCP store the others still talk to, and one rank of the two-process test once
        # aborted at exit ("terminate called without an active exception") after the other left.
        dist.barrier()
        dist.destroy_process_group()


def barrier(ctx: Distributed | None) -> None:
    if ctx is not None:
        dist.barrier()


def local_device(device: torch.device, ctx: Distributed | None) -> torch.device:
    """``cuda`` becomes this rank's GPU; other devices stay as they are."""
    if ctx is not None and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


@dataclass(frozen=True)
class Shard:
    """Which rows of a global batch ``[n_source source rows | n_target target rows]`` each rank holds.

    Rows are dealt round-robin (rank r holds rows r, r + N, r + 2N, ... of each part), so with the
    K-per-class layout every rank holds about K / N rows of every class.
    """

    n_source: int
    n_target: int
    world_size: int

    def source_rows(self, rank: int) -> np.ndarray:
        """Positions in the batch's source part held by ``rank``."""
        return np.arange(rank, self.n_source, self.world_size)

    def target_rows(self, rank: int) -> np.ndarray:
        """Positions in the batch's target part held by ``rank``."""
        return np.arange(rank, self.n_target, self.world_size)

    def rows(self, rank: int) -> np.ndarray:
        """Global row numbers held by ``rank``: its source rows, then its target rows."""
        return np.concatenate([self.source_rows(rank), self.n_source + self.target_rows(rank)])

    def sizes(self) -> list[int]:
        return [len(self.rows(r)) for r in range(self.world_size)]

    def order(self) -> np.ndarray:
        """Indices that put the rank-by-rank concatenation of local rows back in global order."""
        return np.argsort(np.concatenate([self.rows(r) for r in range(self.world_size)]), kind="stable")


class _GatherRows(torch.autograd.Function):
    """All-gather of row blocks of unequal sizes; the backward keeps this rank's block of the gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: list[int], rank: int, group: Any) -> Tensor:  # type: ignore[override]
        ctx.sizes, ctx.rank = sizes, rank
        padded = x.new_zeros((max(sizes), *x.shape[1:]))
        padded[: len(x)] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous(), group=group)
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        start = sum(ctx.sizes[: ctx.rank])
        # Every rank computed the same loss from the same gathered rows, so the gradient of this
        # rank's rows is already complete here; DDP divides the summed parameter gradients by N.
        return grad[start:start + ctx.sizes[ctx.rank]] * len(ctx.sizes), None, None, None


def gather_rows(x: Tensor, shard: Shard, ctx: Distributed) -> Tensor:
    """The global batch's rows of ``x`` (this rank's rows, in :meth:`Shard.rows` order), in global
    order, with gradients flowing back to this rank's rows."""
    sizes = shard.sizes()
    if len(x) != sizes[ctx.rank]:
        raise ValueError(f"rank {ctx.rank} holds {len(x)} rows, its shard has {sizes[ctx.rank]}")
    gathered = _GatherRows.apply(x, sizes, ctx.rank, ctx.group)
    return gathered[torch.from_numpy(shard.order()).to(gathered.device)]


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; its gradient is the sum over ranks of the gradients."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any) -> Tensor:  # type: ignore[override]
        ctx.group = group
        x = x.clone()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation with the mean and variance of the whole batch across the ranks of
    ``group`` (without a group, or in eval mode: plain BatchNorm). Unlike torch's SyncBatchNorm it
    runs on CPU (gloo) as well as on GPUs."""

    group: Any = None
    plain_class: type = nn.BatchNorm1d  # what global_batchnorm replaced, for local_batchnorm

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        group = self.group
        if not self.training or group is None:
            return super().forward(x)
        shape = [1, -1] + [1] * (x.dim() - 2)
        dims = [0, *range(2, x.dim())]
        xf = x.float()
        # The row count travels with the sums (one all-reduce); two passes, as one process
        # computes it, rather than E[x^2] - E[x]^2.
        local = torch.cat([xf.sum(dims), xf.new_tensor([float(xf.numel() // xf.shape[1])])])
        sums = _AllReduceSum.apply(local, group)
        count = sums[-1]
        mean = sums[:-1] / count
        centered = xf - mean.view(shape)
        var = _AllReduceSum.apply((centered * centered).sum(dims), group) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                n = float(count)
                self.running_mean.mul_(1 - momentum).add_(mean.detach().to(self.running_mean.dtype), alpha=momentum)
                unbiased = var.detach() * (n / max(n - 1, 1.0))
                self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)
        y = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def global_batchnorm(module: nn.Module, ctx: Distributed) -> nn.Module:
    """``module`` with every BatchNorm replaced by a :class:`GlobalBatchNorm` over ``ctx``'s ranks,
    holding the same parameters and statistics (state-dict keys unchanged); returns the new root."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = _rebuilt(module, GlobalBatchNorm)
        new.group = ctx.group
        new.plain_class = type(module)
        return new
    for name, child in module.named_children():
        setattr(module, name, global_batchnorm(child, ctx))
    return module


def local_batchnorm(module: nn.Module) -> nn.Module:
    """Inverse of :func:`global_batchnorm`: the BatchNorm classes the module had, with the trained
    parameters and statistics (a trained model must not keep a reference to a process group)."""
    if isinstance(module, GlobalBatchNorm):
        return _rebuilt(module, module.plain_class)
    for name, child in module.named_children():
        setattr(module, name, local_batchnorm(child))
    return module


def _rebuilt(module: nn.modules.batchnorm._BatchNorm, cls: type) -> nn.Module:
    """A ``cls`` BatchNorm with ``module``'s settings, parameters, statistics, mode and learning-rate
    multiplier."""
    new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
              device=_device_of(module))
    new.load_state_dict(module.state_dict())
    if hasattr(module, "lr_mult"):  # the trainer's per-layer learning-rate multiplier
        new.lr_mult = module.lr_mult
    new.train(module.training)
    return new


def _device_of(module: nn.Module) -> torch.device | None:
    tensor = next(iter(module.parameters()), None)
    if tensor is None:
        tensor = next(iter(module.buffers()), None)
    return None if tensor is None else tensor.device


def broadcast_object(value: Any, ctx: Distributed | None) -> Any:
    """Rank 0's ``value`` on every rank (for decisions only rank 0 can make, such as reading a checkpoint)."""
    if ctx is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
