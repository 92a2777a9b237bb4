"""Image folders to the feature sets DAH trains on: find the domains, extract (cached) backbone features."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from dahash.data.features import FeatureSet, save_features
from dahash.errors import ConfigError, DataError
from dahash.images.backbones import Backbone, load_backbone, use_engine
from dahash.images.datasets import (
    ImageDomain,
    align_image_domains,
    find_images,
    load_domain,
    load_image_list,
)
from dahash.images.extract import extract_features
from dahash.images.preprocess import DEFAULT_DECODE


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
    """Frozen-backbone features of every readable image of ``domain``, computed on ``device``;
    unreadable ones are skipped and listed in the feature set's ``skipped``."""
    X, kept, failed = extract_features(domain.paths, backbone, cache_dir=cache_dir, batch_size=batch_size,
                                       num_workers=num_workers, progress=progress, device=device, warn=False)
    return FeatureSet(X, domain.labels[kept], ids=np.asarray(domain.ids, dtype=str)[kept],
                      classes=list(domain.classes), path=str(domain.root / domain.name),
                      skipped=[(str(path), reason) for path, reason in failed])


def extract_domain(data_root: str | None, domain: str, out: str | os.PathLike, *, backbone: str = "efficientnet_lite0",
                   weights: str | None = None, decode: str = DEFAULT_DECODE, cache_dir: str | None = None,
                   progress: bool = True, engine: str = "auto") -> FeatureSet:
    """The frozen backbone's features of one image domain (a folder under ``data_root``, or an image list)
    written to the .npz ``out`` that ``dahash train --source-features / --target-features`` reads: ``X``,
    labels ``y`` from the class folders, ``classes`` and image ``ids``. Features come from (and go to) the
    feature cache, as a run on the image folders would compute them, on ``engine``
    (:func:`~dahash.images.backbones.use_engine`)."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    net = use_engine(load_backbone(backbone, weights, decode), engine, cache)
    features = domain_features(open_domain(data_root, domain), net, cache, progress=progress)
    save_features(out, features)
    return features


def image_feature_sets(data_root: str | None, source: str, target: str, *, backbone: str | Backbone,
                       weights: str | None = None, cache_dir: str | None = None, batch_size: int = 16,
                       num_workers: int = 2, progress: bool = True, device: str | torch.device = "cpu",
                       decode: str = DEFAULT_DECODE, engine: str = "auto") -> tuple[FeatureSet, FeatureSet]:
    """Source and target feature sets with the source's class list (target labels: evaluation only).

    ``backbone`` is a registry name (loaded with ``weights``, decoding images as ``decode`` says) or
    an already loaded :class:`Backbone`; features missing from the cache are computed on ``device``,
    by ``engine`` for a registry name (a loaded backbone keeps its own).
    """
    src, tgt = align_image_domains(open_domain(data_root, source), open_domain(data_root, target))
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    # One backbone for both domains: loading it reads and hashes the weights file.
    net = backbone if isinstance(backbone, Backbone) else use_engine(load_backbone(backbone, weights, decode),
                                                                    engine, cache, device)
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
