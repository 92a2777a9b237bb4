"""Image folders to the feature sets DAH trains on: find the domains, extract (cached) backbone features."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.features import FeatureSet
from ..errors import ConfigError, DataError
from .backbones import Backbone, load_backbone
from .datasets import ImageDomain, align_image_domains, find_images, load_domain, load_image_list
from .extract import extract_features


def default_cache_dir() -> Path:
    """``$DAHASH_CACHE``, else ``~/.cache/dahash``: shared by every run and transfer task."""
    return Path(os.environ.get("DAHASH_CACHE") or Path.home() / ".cache" / "dahash")


def open_domain(root: str | None, spec: str) -> ImageDomain:
    """A domain folder under ``root`` (name or short code) or, if ``spec`` is a file, an image list."""
    if os.path.isfile(spec):
        return load_image_list(spec, root)
    if not root:
        raise ConfigError(f"--data-root is required to find domain {spec!r} (or pass an image-list file)")
    return load_domain(root, spec)


def domain_features(domain: ImageDomain, backbone: Backbone, cache_dir: Path, *, batch_size: int = 16,
                    num_workers: int = 2, progress: bool = True, device: str | torch.device = "cpu") -> FeatureSet:
    """Frozen-backbone features of every readable image of ``domain`` (unreadable ones are skipped),
    computed on ``device``."""
    X, kept, _ = extract_features(domain.paths, backbone, cache_dir=cache_dir, batch_size=batch_size,
                                  num_workers=num_workers, progress=progress, device=device)
    return FeatureSet(X, domain.labels[kept], ids=np.asarray(domain.ids, dtype=str)[kept],
                      classes=list(domain.classes), path=str(domain.root / domain.name))


def image_feature_sets(data_root: str | None, source: str, target: str, *, backbone: str | Backbone,
                       weights: str | None = None, cache_dir: str | None = None, batch_size: int = 16,
                       num_workers: int = 2, progress: bool = True,
                       device: str | torch.device = "cpu") -> tuple[FeatureSet, FeatureSet]:
    """Source and target feature sets with the source's class list (target labels: evaluation only).

    ``backbone`` is a registry name (loaded with ``weights``) or an already loaded :class:`Backbone`;
    features missing from the cache are computed on ``device``.
    """
    src, tgt = align_image_domains(open_domain(data_root, source), open_domain(data_root, target))
    # One backbone for both domains: loading it reads and hashes the weights file.
    net = backbone if isinstance(backbone, Backbone) else load_backbone(backbone, weights)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    kwargs = dict(batch_size=batch_size, num_workers=num_workers, progress=progress, device=device)
    return domain_features(src, net, cache, **kwargs), domain_features(tgt, net, cache, **kwargs)


def collect_images(inputs: list[str]) -> list[Path]:
    """Image files named directly or found (recursively, sorted) under the given folders."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths.extend(find_images(p))
        elif p.is_file():
            paths.append(p)
        else:
            raise DataError(f"{item}: no such image file or folder")
    if not paths:
        raise DataError(f"no image files found in {', '.join(inputs)}")
    return paths


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


def load_image_run(run_dir: str | os.PathLike) -> LoadedRun:
    """The run in ``run_dir``, which must have trained DAH's hash head on images."""
    from ..training.trainer import MODEL, load_model

    model, config, normalizer, classes = load_model(Path(run_dir) / MODEL)
    if config.head != "hash":
        raise ConfigError(f"{run_dir}: this run trained a {config.head} classifier (a deep baseline), "
                          "which outputs class scores, not hash codes")
    if not (config.data_root or config.source):
        raise ConfigError(f"{run_dir}: this run was trained on feature files, not images; "
                          "encode features with the same extractor you used for training")
    if config.finetune:
        from ..training.finetune import load_finetuned_backbone

        backbone = load_finetuned_backbone(Path(run_dir) / MODEL, config)  # never cached: run-specific weights
    else:
        backbone = load_backbone(config.backbone, config.weights)
    return LoadedRun(Path(run_dir), model, config, normalizer, list(classes), backbone)


def image_outputs(run: str | os.PathLike | LoadedRun, inputs: list[str], *, cache_dir: str | None = None,
                  progress: bool = True, num_workers: int | None = None,
                  write_cache: bool = True) -> tuple[np.ndarray, list[str], list[str]]:
    """A trained run's hash outputs u for image files and folders: ``(u, paths kept, run's classes)``
    (unreadable images are reported and skipped). ``num_workers`` overrides the run's decoding
    processes (0 decodes in this process, as a server does for one upload); ``write_cache=False``
    reads the feature cache without adding to it."""
    from ..evaluate import encode

    loaded = run if isinstance(run, LoadedRun) else load_image_run(run)
    config = loaded.config
    paths = collect_images(inputs)
    X, kept, _ = extract_features(paths, loaded.backbone,
                                  cache_dir=Path(cache_dir or config.cache_dir or default_cache_dir()),
                                  batch_size=config.extract_batch_size,
                                  num_workers=config.num_workers if num_workers is None else num_workers,
                                  progress=progress, write_cache=write_cache)
    return encode(loaded.model, loaded.normalizer.transform(X)), [str(paths[i]) for i in kept], loaded.classes


def encode_images(run_dir: str | os.PathLike, inputs: list[str], out: str | os.PathLike, *,
                  cache_dir: str | None = None, progress: bool = True) -> int:
    """Hash codes of new images with a trained run's backbone and head, written as packed codes with their paths."""
    from ..predict import export_codes

    u, paths, classes = image_outputs(run_dir, inputs, cache_dir=cache_dir, progress=progress)
    export_codes(out, u, paths, classes=classes)
    return len(paths)
