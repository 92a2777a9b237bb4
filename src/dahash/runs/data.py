"""A run's data from its config: both domains' features (feature files, or image folders through
the cached backbone) or, for fine-tuning, both image domains."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from dahash.data.features import align_domains, load_features
from dahash.data.normalize import FeatureNormalizer
from dahash.errors import ConfigError
from dahash.images.backbones import load_backbone, use_engine
from dahash.images.datasets import ImageDomain, align_image_domains, scan_readable
from dahash.images.features import default_cache_dir, image_feature_sets, open_domain
from dahash.io import write_csv
from dahash.training.config import TrainConfig
from dahash.training.trainer import Domains, resolve_device

log = logging.getLogger(__name__)

SKIPPED = "skipped_images.csv"


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
        device = extraction_device(config.device)
        net = use_engine(load_backbone(config.backbone, config.weights, config.decode), config.engine,
                         config.cache_dir or default_cache_dir(), device)
        pretrained_fc = net.pretrained_fc
        if pretrained_fc is not None and config.feature_norm not in ("none", "auto"):
            raise ConfigError(f"feature_norm must be none with backbone {config.backbone!r}: the head starts from "
                              f"its pretrained fc6, which expects the raw pool5 features (got {config.feature_norm!r})")
        source, target = image_feature_sets(config.data_root, config.source, config.target, backbone=net,
                                            cache_dir=config.cache_dir, batch_size=config.extract_batch_size,
                                            num_workers=config.num_workers, progress=progress, device=device)
    else:
        if not config.source_features or not config.target_features:
            raise ConfigError("give --source-features and --target-features, or --data-root with --source and --target")
        source = load_features(config.source_features, x_key=config.x_key, y_key=config.y_key)
        target = load_features(config.target_features, x_key=config.x_key, y_key=config.y_key,
                               require_labels=False)
        source, target = align_domains(source, target)
        pretrained_fc = None
    if normalizer is None:
        # A head that starts from a pretrained fc6 expects the raw pool5 features: auto means none there.
        kind = "none" if pretrained_fc is not None and config.feature_norm == "auto" else config.feature_norm
        normalizer = FeatureNormalizer(kind).fit(source.X, target.X)
    source.X = normalizer.transform(source.X)
    target.X = normalizer.transform(target.X)
    return Domains(source, target, normalizer, pretrained_fc)


def extraction_device(name: str) -> torch.device:
    """Where features of a run's images are computed: ``name`` as :func:`resolve_device` reads it,
    except that a CUDA device on a machine without CUDA (a run trained on a GPU and evaluated on a
    laptop) falls back to the CPU."""
    if name != "auto" and torch.device(name).type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return resolve_device(name)


def prepare_image_domains(config: TrainConfig,
                          progress: bool = True) -> tuple[ImageDomain, ImageDomain, list[tuple[str, str]]]:
    """Aligned source and target image domains with unreadable files dropped, and those files
    with the reason each could not be read."""
    src, tgt = align_image_domains(open_domain(config.data_root, config.source),
                                   open_domain(config.data_root, config.target))
    (src, bad_s), (tgt, bad_t) = scan_readable(src, progress=progress), scan_readable(tgt, progress=progress)
    return src, tgt, [(str(path), reason) for path, reason in bad_s + bad_t]


def report_skipped(skipped: list[tuple[str, str]], out: Path | None) -> None:
    """One line on stderr for a run's unreadable images, the whole list in ``out/skipped_images.csv``."""
    if not skipped:
        return
    where = ""
    if out is not None:
        write_csv(out / SKIPPED, ["path", "reason"], [list(row) for row in skipped])
        where = f"; the list is in {out / SKIPPED}"
    path, reason = skipped[0]
    log.warning(f"{len(skipped)} image(s) could not be read and were skipped (first: {path}: {reason}){where}")
