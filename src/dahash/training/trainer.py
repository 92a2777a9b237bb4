"""The training loop: SGD on the DAH objective over K-per-class batches, with atomic checkpoints and exact resume."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..data.features import FeatureSet, align_domains, load_features
from ..data.normalize import FeatureNormalizer
from ..data.sampler import KPerClassSampler
from ..errors import ConfigError, DahashError
from ..io import save_torch, write_csv
from ..losses import DAHLoss
from ..models import DAHHead
from .optim import log_spaced_lr, make_sgd, set_lr

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
# Settings that may change between a run and its resumption without changing its result.
RESUME_MAY_CHANGE = ("out", "num_threads", "checkpoint_every", "source_features", "target_features", "data_root",
                     "cache_dir", "num_workers", "extract_batch_size")


@dataclass
class Domains:
    """Normalised source and target features of one transfer task."""

    source: FeatureSet
    target: FeatureSet
    normalizer: FeatureNormalizer


def load_domains(config: TrainConfig, normalizer: FeatureNormalizer | None = None,
                 progress: bool = True) -> Domains:
    """Read both domains (feature files, or image folders through the cached backbone), match
    their classes and normalise (fitted on both, no labels)."""
    images = bool(config.source or config.target or config.data_root)
    files = bool(config.source_features or config.target_features)
    if images and files:
        raise ConfigError("give either --source-features/--target-features or --data-root/--source/--target, not both")
    if images:
        if not config.source or not config.target:
            raise ConfigError("both --source and --target must be given with --data-root")
        from ..images.pipeline import image_feature_sets

        source, target = image_feature_sets(config.data_root, config.source, config.target,
                                            backbone=config.backbone, weights=config.weights,
                                            cache_dir=config.cache_dir, batch_size=config.extract_batch_size,
                                            num_workers=config.num_workers, progress=progress)
    else:
        if not config.source_features or not config.target_features:
            raise ConfigError("give --source-features and --target-features, or --data-root with --source and --target")
        source = load_features(config.source_features, x_key=config.x_key, y_key=config.y_key)
        target = load_features(config.target_features, x_key=config.x_key, y_key=config.y_key,
                               require_labels=False)
        source, target = align_domains(source, target)
    if normalizer is None:
        normalizer = FeatureNormalizer(config.feature_norm).fit(source.X, target.X)
    source.X = normalizer.transform(source.X)
    target.X = normalizer.transform(target.X)
    return Domains(source, target, normalizer)


def build_model(config: TrainConfig, in_features: int) -> DAHHead:
    """The DAH head for ``in_features``-dimensional inputs, new layers at ``new_lr_mult``."""
    model = DAHHead(in_features, bits=config.bits, hidden=config.hidden)
    for layer in (model.fc6, model.fc7, model.fc8):
        layer.lr_mult = config.new_lr_mult
    return model


def build_loss(config: TrainConfig, n_classes: int) -> DAHLoss:
    """Eq. 8 with the run's weights and scalings."""
    return DAHLoss(n_classes, like_weight=config.like_weight, inner_product_scale=config.inner_product_scale,
                   beta=config.beta, gamma=config.gamma, eta=config.eta, mmd_layers=config.mmd_layers,
                   mmd_reduction=config.mmd_reduction, entropy_reduction=config.entropy_reduction)


def _step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """The MMD pairing's randomness, a pure function of the step so that resume is exact."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch, step]).generate_state(1)[0]))


def _comparable(config_dict: dict) -> dict:
    return {k: v for k, v in config_dict.items() if k not in RESUME_MAY_CHANGE}


def train_model(config: TrainConfig, domains: Domains, *, resume: bool = False, progress: bool = True) -> DAHHead:
    """Train the head on ``domains``; checkpoints go to ``config.out`` each ``checkpoint_every`` epochs."""
    out = Path(config.out) if config.out else None
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    source, target = domains.source, domains.target
    n_classes = source.n_classes
    torch.manual_seed(config.seed)
    model = build_model(config, source.X.shape[1])
    loss_fn = build_loss(config, n_classes)
    optimizer = make_sgd(model, config.lr_start, config.momentum, config.weight_decay, config.bias_lr_factor)
    sampler = KPerClassSampler(source.y, len(target), k=config.k, seed=config.seed, n_classes=n_classes)
    start_epoch, history = 0, []

    ckpt_path = out / CHECKPOINT if out else None
    if ckpt_path is not None and ckpt_path.exists():
        if not resume:
            raise DahashError(f"{out}: already holds a run (checkpoint.pt); pass --resume to continue it "
                              "or choose another --out")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if _comparable(state["config"]) != _comparable(config.to_dict()):
            diff = sorted(k for k, v in _comparable(config.to_dict()).items() if state["config"].get(k) != v)
            raise ConfigError(f"{ckpt_path}: cannot resume, settings differ from the checkpoint's: {', '.join(diff)}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"], state["history"]

    Xs = torch.from_numpy(source.X)
    Xt = torch.from_numpy(target.X)
    ys = torch.from_numpy(source.y)
    steps_per_epoch = len(sampler)
    bar = tqdm(total=config.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, unit="step",
               disable=not progress, dynamic_ncols=True, desc="train")
    model.train()
    for epoch in range(start_epoch, config.epochs):
        lr = log_spaced_lr(epoch, config.epochs, config.lr_start, config.lr_end)
        set_lr(optimizer, lr)
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        for step, batch in enumerate(sampler.epoch(epoch)):
            x = torch.cat([Xs[batch.source], Xt[batch.target]])
            out_ = model(x)
            terms = loss_fn(out_.u, out_.taps, ys[batch.source], len(batch.source),
                            generator=_step_generator(config.seed, epoch, step))
            values = {k: float(v.detach()) for k, v in terms.items()}
            # Checked before the update, so the model in memory is the last finite one.
            if not math.isfinite(values["total"]):
                raise DahashError(f"loss became {values['total']} at epoch {epoch + 1}, step {step + 1} "
                                  f"(terms: {values}); lower lr_start or gamma")
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.update(1)
            if step % 5 == 0 or step == steps_per_epoch - 1:
                bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", J=f"{values['total']:.4g}",
                                hash=f"{values['hash']:.4g}", mmd=f"{values['mmd']:.3g}",
                                ent=f"{values['entropy']:.3g}", refresh=False)
        history.append({"epoch": epoch + 1, "lr": lr, "seconds": time.perf_counter() - t0,
                        **{k: v / steps_per_epoch for k, v in sums.items()}})
        last = epoch + 1 == config.epochs
        if ckpt_path is not None and ((epoch + 1) % config.checkpoint_every == 0 or last):
            save_torch(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                   "epoch": epoch + 1, "history": history, "config": config.to_dict()})
    bar.close()
    model.eval()
    if out is not None:
        keys = ["epoch", "lr", "seconds", "total", "hash", "quantization", "mmd", "entropy"]
        write_csv(out / "history.csv", keys, ([h.get(k, "") for k in keys] for h in history))
        save_model(out / MODEL, model, config, domains)
    return model


def save_model(path: Path, model: DAHHead, config: TrainConfig, domains: Domains) -> None:
    """The trained model with what it needs to encode new features: normaliser and class names."""
    save_torch(path, {"model": model.state_dict(), "config": config.to_dict(),
                      "in_features": domains.source.X.shape[1], "classes": list(domains.source.classes),
                      "normalizer": domains.normalizer.state_dict()})


def load_model(path: Path) -> tuple[DAHHead, TrainConfig, FeatureNormalizer, list[str]]:
    """Inverse of :func:`save_model`."""
    if not path.exists():
        raise DahashError(f"{path}: no trained model here (did the run finish?)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    config = TrainConfig.from_dict(state["config"], source=str(path))
    model = build_model(config, state["in_features"])
    model.load_state_dict(state["model"])
    model.eval()
    return model, config, FeatureNormalizer.from_state_dict(state["normalizer"]), state["classes"]
