"""The training loop: SGD on the DAH objective over K-per-class batches, with atomic checkpoints and exact resume."""

from __future__ import annotations

import hashlib
import math
import pickle
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from dahash.cores import use_threads
from dahash.data.features import FeatureSet
from dahash.data.normalize import FeatureNormalizer
from dahash.data.sampler import KPerClassSampler
from dahash.errors import ConfigError, DahashError
from dahash.io import save_torch, write_csv
from dahash.losses import ClassifierDALoss, DAHLoss
from dahash.models import ClassifierHead, DAHHead
from dahash.training.config import SETTINGS_BEFORE_THEY_EXISTED, TrainConfig, fill_settings_before
from dahash.training.distributed import (
    Distributed,
    Shard,
    broadcast_object,
    gather_rows,
    global_batchnorm,
    local_batchnorm,
    local_device,
)
from dahash.training.optim import inverse_decay_lr, log_spaced_lr, make_sgd, set_lr

Head = DAHHead | ClassifierHead

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
# Settings that may change between a run and its resumption without changing its result.
# What runs written before a setting existed did, where today's default differs: fine-tuning
# trained the backbone's BatchNorm statistics and kept EfficientNet's stochastic depth on, and the
# MMD was the authors' estimate.
FINETUNE_ONLY = ("augment", "augment_on", "backbone_bn", "stochastic_depth")
MMD_ONLY = ("mmd_estimator", "mmd_layers", "mmd_reduction")
IMAGES_ONLY = ("decode",)
RESUME_MAY_CHANGE = ("out", "num_threads", "checkpoint_every", "source_features", "target_features", "data_root",
                     "cache_dir", "num_workers", "extract_batch_size", "device", "compile")


@dataclass
class Domains:
    """Normalised source and target features of one transfer task."""

    source: FeatureSet
    target: FeatureSet
    normalizer: FeatureNormalizer
    # AlexNet/VGG's pretrained fc6 and fc7, which the head starts from (None for other backbones).
    pretrained_fc: tuple[nn.Linear, nn.Linear] | None = None


def build_model(config: TrainConfig, in_features: int,
                pretrained_fc: tuple[nn.Linear, nn.Linear] | None = None, n_classes: int | None = None) -> Head:
    """The head for ``in_features``-dimensional inputs: DAH's hash head, or with
    ``config.head == "softmax"`` the baselines' ``n_classes``-way classifier.

    New layers learn at ``new_lr_mult``. With ``pretrained_fc`` (AlexNet/VGG's fc6 and fc7),
    the head's fc6/fc7 start as copies of them, at their widths, and learn at
    ``pretrained_lr_mult``: the paper fine-tunes VGG-F's fc6/fc7 under the new hash layer.
    """
    hidden = [l.out_features for l in pretrained_fc] if pretrained_fc else config.hidden
    model = _head(config, in_features, hidden, n_classes)
    for layer in (model.fc6, model.fc7, model.fc8):
        layer.lr_mult = config.new_lr_mult
    if pretrained_fc:
        with torch.no_grad():
            for layer, pre in zip((model.fc6, model.fc7), pretrained_fc):
                if layer.weight.shape != pre.weight.shape:
                    raise ConfigError(f"pretrained fc layer of shape {tuple(pre.weight.shape)} does not fit "
                                      f"{in_features}-d inputs (head layer {tuple(layer.weight.shape)})")
                layer.weight.copy_(pre.weight)
                layer.bias.copy_(pre.bias)
                layer.lr_mult = config.pretrained_lr_mult
    return model


def _head(config: TrainConfig, in_features: int, hidden: list[int], n_classes: int | None) -> Head:
    """The untrained head ``config`` describes (hash or softmax, with its hidden-layer options), as
    :func:`build_model` builds it and :func:`load_model` fills it."""
    options = {"hidden_bn": config.hidden_bn, "hidden_dropout": config.hidden_dropout}
    if config.head == "softmax":
        if n_classes is None:
            raise ConfigError("a softmax head needs the number of classes")
        return ClassifierHead(in_features, n_classes, hidden=hidden, **options)
    return DAHHead(in_features, bits=config.bits, hidden=hidden, **options)


def build_loss(config: TrainConfig, n_classes: int, fc7_width: int = 0) -> DAHLoss | ClassifierDALoss:
    """Eq. 8 with the run's weights and scalings, or the softmax baselines' objective
    (DANN's domain classifier reads the ``fc7_width``-wide fc7 and learns at ``new_lr_mult``)."""
    if config.head == "softmax":
        loss = ClassifierDALoss(gamma=config.gamma, mmd_layers=config.mmd_layers, mmd_reduction=config.mmd_reduction,
                                adversarial_features=fc7_width if config.adversarial else 0,
                                mmd_estimator=config.mmd_estimator, n_classes=n_classes,
                                adversarial_weight=config.adversarial_weight)
        for module in loss.modules():
            if isinstance(module, nn.Linear):
                module.lr_mult = config.new_lr_mult
        return loss
    return DAHLoss(n_classes, like_weight=config.like_weight, inner_product_scale=config.inner_product_scale,
                   beta=config.beta, gamma=config.gamma, eta=config.eta, mmd_layers=config.mmd_layers,
                   mmd_reduction=config.mmd_reduction, entropy_reduction=config.entropy_reduction,
                   mmd_estimator=config.mmd_estimator, reference_batch=config.reference_batch)


def _step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The MMD pairing's randomness, a pure function of the step so that resume is exact."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch, step]).generate_state(1)[0]))


def settings_differ(saved: dict, current: dict) -> list[str]:
    """Names of the settings that change a run's result and differ between two config dicts.

    A setting missing from ``saved`` (added to dahash after that run was written) takes what that
    version did: its :data:`SETTINGS_BEFORE_THEY_EXISTED` value, else today's default.
    """
    defaults = TrainConfig().to_dict()
    saved = {**defaults, **SETTINGS_BEFORE_THEY_EXISTED, **saved}
    current = {**defaults, **current}
    # A head on cached features has no backbone to set these on, and without the MMD term its
    # estimator and layers change nothing.
    ignored = RESUME_MAY_CHANGE if saved["finetune"] or current["finetune"] else RESUME_MAY_CHANGE + FINETUNE_ONLY
    if saved["gamma"] == 0 and current["gamma"] == 0:
        ignored += MMD_ONLY
    if not any(c["data_root"] or c["source"] for c in (saved, current)):
        ignored += IMAGES_ONLY  # a head on feature files decodes no image
    return sorted(k for k, v in current.items() if k not in ignored and saved.get(k) != v)


def flat_settings_differ(saved: dict, current: dict) -> list[str]:
    """Names of the settings of ``current`` that ``saved`` holds otherwise, beyond
    :data:`RESUME_MAY_CHANGE`: for the flat settings of a shallow or retrieval cell, which have no
    TrainConfig defaults. A setting ``saved`` lacks takes its value from before it existed."""
    saved = fill_settings_before(saved, current)
    return sorted(k for k, v in current.items() if k not in RESUME_MAY_CHANGE and saved.get(k) != v)


def resolve_device(name: str) -> torch.device:
    """``"auto"``: the first CUDA GPU when there is one, else the CPU; otherwise ``name`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA GPU (torch {torch.__version__})")
    return device


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """Mixed precision on CUDA only: bf16 where the GPU has it, else fp16 (with loss scaling)."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class TrainBatch(NamedTuple):
    """One step's input: ``x`` holds the batch's ``[source | target]`` rows (in a distributed run,
    this rank's rows of them, as ``shard`` deals them); ``labels`` and ``n_source`` are the whole
    batch's source labels and source count."""

    x: Tensor
    labels: Tensor
    n_source: int
    shard: Shard | None = None


BatchFn = Callable[[int], Iterable[TrainBatch]]


def refuse_existing_run(path: Path, resume: bool) -> None:
    """DahashError when ``path`` (a run's checkpoint) exists and ``resume`` is false: a new run never overwrites
    one (``dahash train`` checks this before its selections too)."""
    if path.exists() and not resume:
        raise DahashError(f"{path.parent}: already holds a run (checkpoint.pt); pass --resume to continue it "
                          "or choose another --out")


def _read_checkpoint(path: Path | None, resume: bool, config: TrainConfig, device: torch.device) -> dict | None:
    """The checkpoint to resume from (None for a fresh run); refuses a run that exists without
    ``resume`` and one whose result-changing settings differ."""
    if path is None or not path.exists():
        return None
    refuse_existing_run(path, resume)
    state = torch.load(path, map_location=device, weights_only=False)
    diff = settings_differ(state["config"], config.to_dict())
    if diff:
        raise ConfigError(f"{path}: cannot resume, settings differ from the checkpoint's: {', '.join(diff)}")
    return state


def checkpoint_epoch(path: Path, config: TrainConfig | None = None) -> int | None:
    """The number of epochs the checkpoint at ``path`` has finished: None without a readable one,
    or when ``config`` is given and the checkpoint cannot resume it (its settings differ)."""
    try:
        # Mapped, not read: the tensors (a fine-tuned network and its optimizer, tens of MB) are
        # never touched, so peeking before the trainer loads the checkpoint costs milliseconds.
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        epoch = int(state["epoch"])
        if config is not None and settings_differ(state["config"], config.to_dict()):
            return None
        return epoch
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, EOFError, pickle.UnpicklingError):
        return None


def _shared_checkpoint(path: Path | None, resume: bool, config: TrainConfig, device: torch.device,
                       ctx: Distributed | None) -> dict | None:
    """:func:`_read_checkpoint` on rank 0, its state or its error on every rank (the output folder
    need not be shared between nodes)."""
    if ctx is None:
        return _read_checkpoint(path, resume, config, device)
    result: tuple[str, object] = ("state", None)
    if ctx.is_main:
        try:
            state = _read_checkpoint(path, resume, config, torch.device("cpu"))
            result = ("state", state)
        except DahashError as exc:
            result = ("error", exc)
    kind, value = broadcast_object(result, ctx)
    if kind == "error":
        raise value  # type: ignore[misc]
    # Left on the CPU: the model's, the loss's and the optimizer's load_state_dict copy or cast
    # each tensor to the device of the parameter it belongs to.
    return value  # type: ignore[return-value]


def fit(config: TrainConfig, model: nn.Module, batches: BatchFn, steps_per_epoch: int, n_classes: int, *,
        device: torch.device, resume: bool = False, progress: bool = True,
        distributed: Distributed | None = None) -> nn.Module:
    """SGD on the run's objective (:func:`build_loss`) over ``batches(epoch)`` -> :class:`TrainBatch`
    per step, for any model returning a :class:`HeadOutput`, with per-epoch atomic checkpoints in
    ``config.out``; returns the trained model.

    The learning rate follows ``config.lr_schedule``, each layer scaled by its ``lr_mult``.
    A resumed run restores model, optimizer and loss-scaler state and regenerates the same
    batches, so it ends with the weights an uninterrupted run would have.

    With ``distributed``, every rank runs this with its shard of each batch: the model is wrapped
    in DistributedDataParallel with batch-wide BatchNorm statistics, its outputs are gathered into
    the whole batch before the loss (:mod:`dahash.training.distributed`), and rank 0 alone writes
    checkpoints and shows progress.
    """
    main = distributed is None or distributed.is_main
    out = Path(config.out) if config.out else None
    model.to(device)
    loss_fn = build_loss(config, n_classes, getattr(model, "head", model).fc7.out_features).to(device)
    state = _shared_checkpoint(out / CHECKPOINT if out else None, resume, config, device, distributed)
    if distributed is not None:
        model = global_batchnorm(model, distributed)
    # DANN's domain classifier lives in the loss and trains with the model.
    trained = nn.ModuleList([model, loss_fn])
    optimizer = make_sgd(trained, config.lr_start, config.momentum, config.weight_decay, config.bias_lr_factor)
    amp_dtype = autocast_dtype(device, config.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    start_epoch, history = 0, []

    ckpt_path = out / CHECKPOINT if out and main else None
    if state is not None:
        model.load_state_dict(state["model"])
        loss_fn.load_state_dict(state.get("loss", {}))
        optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        start_epoch, history = state["epoch"], state["history"]

    net: nn.Module = model
    if distributed is not None:
        from torch.nn.parallel import DistributedDataParallel

        # Batch-wide BatchNorm keeps every rank's statistics equal: no buffer broadcast per step.
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      broadcast_buffers=False)
    if config.compile:
        # The compiled module shares the parameters: the optimizer, checkpoints and the returned
        # model are the plain one's.
        net = torch.compile(net)
    bar = tqdm(total=config.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, unit="step",
               disable=not (progress and main), dynamic_ncols=True, desc="train")
    trained.train()
    total_steps = config.epochs * steps_per_epoch
    for epoch in range(start_epoch, config.epochs):
        if config.lr_schedule == "inverse":
            lr = inverse_decay_lr(epoch, config.epochs, config.lr_start)
        else:
            lr = log_spaced_lr(epoch, config.epochs, config.lr_start, config.lr_end)
        set_lr(optimizer, lr)
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        n_steps = 0
        # Randomness inside the model (EfficientNet's stochastic depth) then depends only on
        # (seed, epoch), so a run resumed at this epoch draws what an uninterrupted one would.
        torch.manual_seed(int(np.random.SeedSequence([config.seed, epoch, 1]).generate_state(1)[0]))
        for step, (x, labels, n_source, shard) in enumerate(batches(epoch)):
            x, labels = x.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out_ = net(x)
            # The losses' exponentials and medians stay in float32 whatever the forward ran in.
            u, taps = out_.u.float(), {k: v.float() for k, v in out_.taps.items()}
            if shard is not None and distributed is not None:
                # One all-gather for the outputs and every tap: each collective costs a round trip.
                widths = [u.shape[1], *(v.shape[1] for v in taps.values())]
                parts = gather_rows(torch.cat([u, *taps.values()], 1), shard, distributed).split(widths, 1)
                u, taps = parts[0], dict(zip(taps, parts[1:]))
            terms = loss_fn(u, taps, labels, n_source,
                            generator=_step_generator(config.seed, epoch, step),
                            progress=(epoch * steps_per_epoch + step) / total_steps)
            values = {k: float(v.detach()) for k, v in terms.items()}
            # Checked before the update, so the model in memory is the last finite one.
            if not math.isfinite(values["total"]):
                raise DahashError(f"loss became {values['total']} at epoch {epoch + 1}, step {step + 1} "
                                  f"(terms: {values}); lower lr_start or gamma")
            optimizer.zero_grad(set_to_none=True)
            # MatConvNet divides parameter derivatives by the batch size before momentum and decay:
            # the authors' lr of 1e-4 is per-sample on their summed losses.
            objective = terms["total"] / len(u) if config.batch_mean_gradient else terms["total"]
            scaler.scale(objective).backward()
            scaler.step(optimizer)
            scaler.update()
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            n_steps += 1
            bar.update(1)
            if step % 5 == 0 or step == steps_per_epoch - 1:
                bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}",
                                **{k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
        history.append({"epoch": epoch + 1, "lr": lr, "seconds": time.perf_counter() - t0,
                        **{k: v / max(n_steps, 1) for k, v in sums.items()}})
        last = epoch + 1 == config.epochs
        if ckpt_path is not None and ((epoch + 1) % config.checkpoint_every == 0 or last):
            save_torch(ckpt_path, {"model": model.state_dict(), "loss": loss_fn.state_dict(),
                                   "optimizer": optimizer.state_dict(),
                                   "scaler": scaler.state_dict(), "epoch": epoch + 1, "history": history,
                                   "config": config.to_dict()})
    bar.close()
    trained.eval()
    if out is not None and main:
        keys = ["epoch", "lr", "seconds", *dict.fromkeys(k for h in history for k in h if k not in ("epoch", "lr", "seconds"))]
        write_csv(out / "history.csv", keys, ([h.get(k, "") for k in keys] for h in history))
    return local_batchnorm(model) if distributed is not None else model


def train_model(config: TrainConfig, domains: Domains, *, resume: bool = False, progress: bool = True,
                distributed: Distributed | None = None) -> Head:
    """Train the head on ``domains``' features; checkpoints go to ``config.out`` each ``checkpoint_every``
    epochs. With ``distributed``, this process trains its shard of every batch (see :func:`fit`)."""
    if config.num_threads:
        use_threads(config.num_threads)
    device = local_device(resolve_device(config.device), distributed)
    source, target = domains.source, domains.target
    torch.manual_seed(config.seed)
    model = build_model(config, source.X.shape[1], domains.pretrained_fc, source.n_classes)
    sampler = KPerClassSampler(source.y, len(target), k=config.k, seed=config.seed, n_classes=source.n_classes,
                               replacement=config.sample_with_replacement)
    # The whole feature matrices fit on any device; batches are then gathers, not copies from the host.
    Xs, Xt = torch.from_numpy(source.X).to(device), torch.from_numpy(target.X).to(device)
    ys = torch.from_numpy(source.y).to(device)

    def batches(epoch: int) -> Iterator[TrainBatch]:
        for batch in sampler.epoch(epoch):
            src, tgt, shard = batch.source, batch.target, None
            if distributed is not None:
                shard = Shard(len(src), len(tgt), distributed.world_size)
                src = batch.source[shard.source_rows(distributed.rank)]
                tgt = batch.target[shard.target_rows(distributed.rank)]
            s, t = torch.from_numpy(src).to(device), torch.from_numpy(tgt).to(device)
            yield TrainBatch(torch.cat([Xs[s], Xt[t]]), ys[torch.from_numpy(batch.source).to(device)],
                             len(batch.source), shard)

    model = fit(config, model, batches, len(sampler), source.n_classes, device=device, resume=resume,
                progress=progress, distributed=distributed)
    model.cpu()
    if config.out and (distributed is None or distributed.is_main):
        save_model(Path(config.out) / MODEL, model, config, domains)
    return model


def save_model(path: Path, model: Head, config: TrainConfig, domains: Domains,
               backbone_state: dict[str, Tensor] | None = None) -> None:
    """The trained head with what it needs to encode new features: normaliser, class names and,
    for a fine-tuned run, the backbone's weights."""
    state = {"model": model.state_dict(), "config": config.to_dict(), "in_features": model.fc6.in_features,
             "hidden": [model.fc6.out_features, model.fc7.out_features], "classes": list(domains.source.classes),
             "normalizer": domains.normalizer.state_dict()}
    if backbone_state is not None:
        state["backbone"] = backbone_state
    save_torch(path, state)


#: The settings of a saved model that change the codes it gives an image, besides its weights.
ENCODING_SETTINGS = ("head", "bits", "backbone", "decode")


def model_digest(path: Path) -> str:
    """``params-sha256:<hex>`` of what a saved model computes: its weights (head and, fine-tuned, backbone),
    normaliser, class names and :data:`ENCODING_SETTINGS`, in a fixed order. The same model saved twice has
    the same digest though its file's bytes differ."""
    if not path.is_file():
        raise DahashError(f"{path}: no trained model here (did the run finish?)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    config = TrainConfig.from_saved(state["config"], source=str(path))
    digest = hashlib.sha256()
    _digest_into(digest, {"model": state["model"], "backbone": state.get("backbone"),
                          "normalizer": state["normalizer"], "classes": state["classes"],
                          "in_features": state["in_features"], "hidden": state.get("hidden", config.hidden),
                          **{k: getattr(config, k) for k in ENCODING_SETTINGS}})
    return f"params-sha256:{digest.hexdigest()}"


def _digest_into(digest: Any, value: Any) -> None:
    """Feed ``value`` (dicts by sorted key, sequences, tensors and arrays with dtype and shape) into ``digest``."""
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            digest.update(f"<{key}>".encode())
            _digest_into(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"[{len(value)}".encode())
        for item in value:
            _digest_into(digest, item)
    elif isinstance(value, Tensor):
        _digest_into(digest, value.detach().cpu().contiguous().numpy())
    elif isinstance(value, np.ndarray):
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    else:
        digest.update(repr(value).encode())


def load_model(path: Path) -> tuple[Head, TrainConfig, FeatureNormalizer, list[str]]:
    """Inverse of :func:`save_model`."""
    if not path.exists():
        raise DahashError(f"{path}: no trained model here (did the run finish?)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    config = TrainConfig.from_saved(state["config"], source=str(path))
    model = _head(config, state["in_features"], state.get("hidden", config.hidden), len(state["classes"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, config, FeatureNormalizer.from_state_dict(state["normalizer"]), state["classes"]
