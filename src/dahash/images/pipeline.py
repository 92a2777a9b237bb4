"""Image folders to the feature sets DAH trains on: find the domains, extract (cached) backbone features."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.features import FeatureSet
from ..errors import ConfigError
from .backbones import load_backbone
from .datasets import ImageDomain, align_image_domains, load_domain, load_image_list
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


def domain_features(domain: ImageDomain, backbone_name: str, weights: str | None, cache_dir: Path,
                    *, batch_size: int = 16, num_workers: int = 2, progress: bool = True) -> FeatureSet:
    """Frozen-backbone features of every readable image of ``domain`` (unreadable ones are skipped)."""
    backbone = load_backbone(backbone_name, weights)
    X, kept, _ = extract_features(domain.paths, backbone, cache_dir=cache_dir, batch_size=batch_size,
                                  num_workers=num_workers, progress=progress)
    return FeatureSet(X, domain.labels[kept], ids=np.asarray(domain.ids, dtype=str)[kept],
                      classes=list(domain.classes), path=str(domain.root / domain.name))


def image_feature_sets(data_root: str | None, source: str, target: str, *, backbone: str,
                       weights: str | None = None, cache_dir: str | None = None, batch_size: int = 16,
                       num_workers: int = 2, progress: bool = True) -> tuple[FeatureSet, FeatureSet]:
    """Source and target feature sets with the source's class list (target labels: evaluation only)."""
    src, tgt = align_image_domains(open_domain(data_root, source), open_domain(data_root, target))
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    kwargs = dict(batch_size=batch_size, num_workers=num_workers, progress=progress)
    return (domain_features(src, backbone, weights, cache, **kwargs),
            domain_features(tgt, backbone, weights, cache, **kwargs))
