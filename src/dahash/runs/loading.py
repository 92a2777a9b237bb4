"""A finished run, loaded: its head, config and features (:func:`load_run`), or everything needed
to encode new images with it (:func:`load_image_run`, :func:`image_outputs`, :func:`encode_images`;
:func:`prepare_image` and :func:`prepared_outputs` split that encoding in two, so that images
prepared in parallel threads share one forward pass, as ``dahash serve`` batches uploads)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from dahash.codes import binarize, unpack_codes
from dahash.errors import ConfigError, DataError
from dahash.images.backbones import Backbone, load_backbone, use_engine
from dahash.images.extract import batch_features, cached_features, extract_features, image_tensor
from dahash.images.features import collect_images, default_cache_dir
from dahash.models.predict import class_probabilities, encode, export_codes
from dahash.runs.data import extraction_device, load_domains, prepare_image_domains, report_skipped
from dahash.training.config import TrainConfig
from dahash.training.finetune import load_finetuned_backbone, network_features
from dahash.training.trainer import MODEL, Domains, Head, load_model


def load_run(run_dir: str | Path) -> tuple[Head, TrainConfig, Domains]:
    """A finished run's trained head, its config and both domains' features as it saw them
    (normalised with the run's normaliser; through the fine-tuned backbone for ``--finetune`` runs)."""
    run_dir = Path(run_dir)
    model, config, normalizer, _ = load_model(run_dir / MODEL)
    if config.finetune:
        source, target, _ = prepare_image_domains(config, progress=False)
        backbone = load_finetuned_backbone(run_dir / MODEL, config)
        domains = network_features(backbone, source, target, batch_size=config.extract_batch_size,
                                   num_workers=config.num_workers, progress=False,
                                   device=extraction_device(config.device))
    else:
        domains = load_domains(config, normalizer=normalizer, progress=False)
    return model, config, domains


@dataclass
class LoadedRun:
    """A trained image run ready to encode images: head, config, normaliser, classes and backbone,
    loaded once (a server encodes every request with the same one)."""

    run_dir: Path
    model: Any
    config: Any
    normalizer: Any
    classes: list[str]
    backbone: Backbone


def load_image_run(run_dir: str | os.PathLike, *, engine: str | None = None,
                   cache_dir: str | os.PathLike | None = None) -> LoadedRun:
    """The run in ``run_dir``, which must have trained DAH's hash head on images, with its backbone
    on ``engine`` (default: the engine the run extracted its features with; ONNX exports go under
    the feature cache :func:`_cache_dir` names)."""
    model, config, normalizer, classes = load_model(Path(run_dir) / MODEL)
    if config.head != "hash":
        raise ConfigError(f"{run_dir}: this run trained a {config.head} classifier (a deep baseline), "
                          "which outputs class scores, not hash codes")
    if not (config.data_root or config.source):
        raise ConfigError(f"{run_dir}: this run was trained on feature files, not images; "
                          "encode features with the same extractor you used for training")
    if config.finetune:
        backbone = load_finetuned_backbone(Path(run_dir) / MODEL, config)  # never cached: run-specific weights
    else:
        backbone = load_backbone(config.backbone, config.weights, config.decode)
    backbone = use_engine(backbone, engine or config.engine, _cache_dir(config, cache_dir),
                          extraction_device(config.device))
    return LoadedRun(Path(run_dir), model, config, normalizer, list(classes), backbone)


def _cache_dir(config: Any, cache_dir: str | os.PathLike | None) -> Path:
    """The feature cache a run's encoding reads: ``cache_dir``, else the run's, else the default."""
    return Path(cache_dir or config.cache_dir or default_cache_dir())


def image_outputs(run: str | os.PathLike | LoadedRun, inputs: list[str], *, cache_dir: str | None = None,
                  progress: bool = True, num_workers: int | None = None,
                  write_cache: bool = True, report: bool = True,
                  engine: str | None = None) -> tuple[np.ndarray, list[str], list[str]]:
    """A trained run's hash outputs u for image files and folders: ``(u, paths kept, run's classes)``.

    Unreadable images are skipped: with ``report``, said in one line on stderr, and a
    :class:`DataError` when not one image could be read; without, silently (a server answers each
    upload itself). ``num_workers`` overrides the run's decoding processes (0 decodes in this
    process, as a server does for one upload); ``write_cache=False`` reads the feature cache
    without adding to it. ``engine`` runs the backbone of a run given by its folder (a
    :class:`LoadedRun` keeps its own)."""
    loaded = run if isinstance(run, LoadedRun) else load_image_run(run, engine=engine, cache_dir=cache_dir)
    config = loaded.config
    paths = collect_images(inputs)
    X, kept, failed = extract_features(paths, loaded.backbone,
                                       cache_dir=_cache_dir(config, cache_dir),
                                       batch_size=config.extract_batch_size,
                                       num_workers=config.num_workers if num_workers is None else num_workers,
                                       progress=progress, write_cache=write_cache, warn=False)
    if report and failed:
        if not len(kept):
            first, reason = failed[0]
            raise DataError(f"no image could be read ({len(failed)} given; first: {first}: {reason})")
        report_skipped([(str(path), reason) for path, reason in failed], None)
    return encode(loaded.model, loaded.normalizer.transform(X)), [str(paths[i]) for i in kept], loaded.classes


@dataclass(frozen=True)
class PreparedImage:
    """One image file made ready for :func:`prepared_outputs`: its backbone features when the
    feature cache holds them (no decoding, no forward pass), else its preprocessed pixels."""

    features: np.ndarray | None = None  # (D,) float32
    pixels: Tensor | None = None  # (3, crop, crop)


def prepare_image(run: LoadedRun, path: str | os.PathLike, *,
                  cache_dir: str | os.PathLike | None = None) -> PreparedImage:
    """What :func:`image_outputs` does to one file before the forward pass: read its features from
    the cache (keyed by content), else decode and preprocess it. Raises
    :class:`~dahash.images.loading.ImageLoadError` for a file that cannot be decoded."""
    features = cached_features(path, run.backbone, _cache_dir(run.config, cache_dir))
    if features is not None:
        return PreparedImage(features=features)
    return PreparedImage(pixels=image_tensor(path, run.backbone))


def prepared_outputs(run: LoadedRun, items: list[PreparedImage]) -> np.ndarray:
    """Hash outputs u, (len(items), bits), of prepared images: the backbone runs once on all their
    pixels, then the normaliser and the head once on all rows.

    Equal to :func:`image_outputs` of the same files up to float rounding: batched kernels may sum
    in another order than a batch of one (a few 1e-6 on u; whoever needs the exact bits of a
    one-by-one encoding re-encodes the rows with a component near 0, as ``dahash serve`` does).
    """
    if not items:
        return np.zeros((0, int(run.config.bits)), np.float32)
    rows: list[np.ndarray | None] = [item.features for item in items]
    todo = [i for i, row in enumerate(rows) if row is None]
    pixels = [items[i].pixels for i in todo]
    if any(p is None for p in pixels):
        raise ConfigError("a PreparedImage needs features or pixels")
    for i, row in zip(todo, batch_features(run.backbone, pixels)):
        rows[i] = np.ascontiguousarray(row, dtype=np.float32)
    return encode(run.model, run.normalizer.transform(np.stack(rows).astype(np.float32, copy=False)))


def source_code_bank(run_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray] | None:
    """The run's labeled source codes as +-1 floats and their class indices (``codes_source.npz``): eq. 6's bank
    for new images; None for a run without them."""
    source_codes = Path(run_dir) / "codes_source.npz"
    if not source_codes.is_file():
        return None
    with np.load(source_codes) as f:
        if "labels" not in f:
            return None
        return unpack_codes(f["codes"], int(f["n_bits"])).astype(np.float32), f["labels"]


def predict_classes(u: np.ndarray, bank: tuple[np.ndarray, np.ndarray] | None, classes: list[str]) -> list[str | None]:
    """The class of each output row by eq. 6 with binary codes against ``bank`` (None for each without one)."""
    if bank is None or not len(u):
        return [None] * len(u)
    # The bank holds +-1 codes already: binarizing the queries alone gives the same p_ij, and
    # a server's one query costs 0.15 ms instead of 0.6 (the bank's 958 x 64 signs each call).
    probs = class_probabilities(binarize(u).astype(np.float32), bank[0], bank[1], len(classes))
    return [classes[i] for i in probs.argmax(1)]


def encode_images(run_dir: str | os.PathLike, inputs: list[str], out: str | os.PathLike, *,
                  cache_dir: str | None = None, progress: bool = True, engine: str | None = None) -> int:
    """Hash codes of new images with a trained run's backbone (on ``engine``, default the run's) and head,
    written as packed codes with their paths and, for a run with source codes, each image's predicted
    class (eq. 6 with codes, as ``dahash search``)."""
    u, paths, classes = image_outputs(run_dir, inputs, cache_dir=cache_dir, progress=progress, engine=engine)
    bank = source_code_bank(run_dir)
    export_codes(out, u, paths, classes=classes, predicted=predict_classes(u, bank, classes) if bank else None)
    return len(paths)
