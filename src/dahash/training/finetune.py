"""End-to-end fine-tuning: backbone and DAH head trained together on augmented images (Sec. 3.4, 5.2)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from dahash.cores import use_threads
from dahash.data.features import FeatureSet
from dahash.data.normalize import FeatureNormalizer
from dahash.data.sampler import KPerClassSampler
from dahash.errors import DataError
from dahash.images.backbones import (
    FINETUNED_WEIGHTS,
    RANDOM_WEIGHTS,
    Backbone,
    load_backbone,
)
from dahash.images.datasets import ImageDomain
from dahash.images.extract import extract_features
from dahash.images.preprocess import Preprocessing, eval_transform, train_transform
from dahash.images.tensor_cache import ImageTensorCache, open_scanned_image
from dahash.images.workers import ForkSafeLoader
from dahash.models import DAHHead
from dahash.models.head import HeadOutput
from dahash.training.config import CHOICES, TrainConfig
from dahash.training.distributed import Distributed, Shard, local_device
from dahash.training.trainer import (
    MODEL,
    Domains,
    Head,
    TrainBatch,
    build_model,
    fit,
    resolve_device,
    save_model,
)


def is_stochastic_depth(module: nn.Module) -> bool:
    """Whether ``module``'s train mode switches on random dropping (dropout, stochastic depth,
    EfficientNet-Lite's drop-connect) and nothing else it owns itself."""
    kind = type(module)
    if isinstance(module, nn.modules.dropout._DropoutNd) or kind.__name__ in ("StochasticDepth", "DropPath"):
        return True
    # efficientnet_lite_pytorch's MBConvBlock reads self.training only to drop its residual branch;
    # its BatchNorms are child modules with their own mode.
    return kind.__name__ == "MBConvBlock" and kind.__module__.startswith("efficientnet_lite_pytorch")


def set_backbone_modes(backbone: nn.Module, training: bool, *, batchnorm: bool = True,
                       stochastic_depth: bool = True) -> nn.Module:
    """``backbone.train(training)``; in train mode, then its BatchNorms back in eval mode unless
    ``batchnorm`` (they normalise by, and keep, their running statistics) and its stochastic depth
    and dropout off unless ``stochastic_depth``. Returns ``backbone``."""
    backbone.train(training)
    if training:
        for module in backbone.modules():
            if not batchnorm and isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
            elif not stochastic_depth and is_stochastic_depth(module):
                module.training = False  # this module only: an MBConvBlock's BatchNorms keep their mode
    return backbone


class DAHNet(nn.Module):
    """Backbone -> head: images in, :class:`HeadOutput` out (the paper's VGG-F with hash-fc8, or a softmax fc8).

    ``net.train()`` puts the head in train mode and the backbone in the train mode its settings
    ask for: with ``backbone_bn="frozen"`` its BatchNorms stay in eval mode (pretrained running
    statistics, used and kept; their scale and shift still learn) and without
    ``stochastic_depth`` its drop-connect and dropout stay off. The features the head trains on
    are then the ones it is evaluated on (docs/finetuning.md).
    """

    def __init__(self, backbone: nn.Module, head: Head, *, backbone_bn: str = "frozen",
                 stochastic_depth: bool = False) -> None:
        super().__init__()
        if backbone_bn not in CHOICES["backbone_bn"]:
            raise ValueError(f"backbone_bn must be one of {CHOICES['backbone_bn']}, got {backbone_bn!r}")
        self.backbone = backbone
        self.head = head
        self.backbone_bn = backbone_bn
        self.stochastic_depth = stochastic_depth

    def train(self, mode: bool = True) -> DAHNet:
        """As :meth:`nn.Module.train`, with the backbone's frozen parts left in eval mode."""
        self.training = mode
        self.head.train(mode)
        set_backbone_modes(self.backbone, mode, batchnorm=self.backbone_bn == "train",
                           stochastic_depth=self.stochastic_depth)
        return self

    def forward(self, images: Tensor) -> HeadOutput:
        return self.head(self.backbone(images))


def build_network(config: TrainConfig, backbone: Backbone, n_classes: int | None = None) -> DAHNet:
    """The fine-tuned network: pretrained layers at ``pretrained_lr_mult``, new ones at ``new_lr_mult``.

    Every backbone module (convolutions and their BatchNorms alike) takes the pretrained
    multiplier, as the authors' 0.1/0.2 on VGG-F's conv and fc layers; the head keeps
    :func:`build_model`'s multipliers, its BatchNorm the new layers' one.
    """
    for module in backbone.model.modules():
        module.lr_mult = config.pretrained_lr_mult
    head = build_model(config, backbone.feature_dim, backbone.pretrained_fc, n_classes)
    if isinstance(head, DAHHead):
        head.bn.lr_mult = config.new_lr_mult
    return DAHNet(backbone.model, head, backbone_bn=config.backbone_bn, stochastic_depth=config.stochastic_depth)


@dataclass(frozen=True)
class _Slot:
    """One image draw of an epoch: ``slot`` numbers it within the epoch, which seeds its augmentation."""

    epoch: int
    slot: int
    index: int


class AugmentedImages(Dataset):
    """Images by index, each draw augmented from its own seed ``(seed, epoch, slot)``.

    Seeding each draw, rather than sharing a generator, makes the tensors independent of
    the number of DataLoader workers and of the order they run in: a resumed run sees
    exactly the batches of an uninterrupted one.
    """

    def __init__(self, paths: list[Path], prep: Preprocessing, seed: int, augment: bool = True) -> None:
        self.paths = paths
        self.prep = prep
        self.seed = int(seed)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: _Slot) -> Tensor:
        img = open_scanned_image(self.paths[item.index], self.prep)
        if not self.augment:
            return eval_transform(img, self.prep)
        return train_transform(img, self.prep, np.random.default_rng((self.seed, item.epoch, item.slot)))


def finetune_model(config: TrainConfig, source: ImageDomain, target: ImageDomain, backbone: Backbone, *,
                   resume: bool = False, progress: bool = True, distributed: Distributed | None = None) -> DAHNet:
    """Train backbone and head on K-per-class image batches; checkpoints and resume as :func:`fit`.

    ``source`` and ``target`` must be aligned (same class list) and readable
    (:func:`prepare_image_domains`); target labels are never read. With ``distributed``, this
    process decodes and trains its shard of every batch. The backbone's BatchNorms and stochastic
    depth train as ``config.backbone_bn`` and ``config.stochastic_depth`` say (:class:`DAHNet`).
    """
    if config.num_threads:
        use_threads(config.num_threads)
    device = local_device(resolve_device(config.device), distributed)
    torch.manual_seed(config.seed)
    net = build_network(config, backbone, len(source.classes))
    sampler = KPerClassSampler(source.labels, len(target), k=config.k, seed=config.seed,
                               n_classes=len(source.classes), replacement=config.sample_with_replacement)
    paths = [*source.paths, *target.paths]
    images = AugmentedImages(paths, backbone.preprocessing, config.seed, config.augment)
    cache = None
    if config.augment_on == "device":
        cache = ImageTensorCache(paths, backbone.preprocessing, device, num_workers=config.num_workers,
                                 progress=progress and (distributed is None or distributed.is_main))
    n_source = len(source)

    def on_device(row: list[_Slot]) -> Tensor:
        """The batch of draws ``row`` cut from the tensor cache, seeded as AugmentedImages seeds them."""
        generators = ([np.random.default_rng((images.seed, s.epoch, s.slot)) for s in row]
                      if config.augment else None)
        return cache.batch([s.index for s in row], generators)

    def batches(epoch: int) -> Iterator[TrainBatch]:
        plan = sampler.epoch(epoch)
        size = sampler.batch_source_size * 2
        # A draw's slot numbers its place in the whole batch, so its augmentation does not depend
        # on how many ranks share the batch.
        slots = [[_Slot(epoch, b * size + j, int(i))
                  for j, i in enumerate(np.concatenate([batch.source, batch.target + n_source]))]
                 for b, batch in enumerate(plan)]
        shards = [None] * len(plan)
        if distributed is not None:
            shards = [Shard(len(batch.source), len(batch.target), distributed.world_size) for batch in plan]
            slots = [[row[j] for j in shard.rows(distributed.rank)] for row, shard in zip(slots, shards)]
        if cache is not None:
            loader: Iterator[Tensor] = map(on_device, slots)
        else:
            # Pinned host memory lets the copy to the GPU overlap the next batch's decoding.
            loader = iter(ForkSafeLoader(images, batch_sampler=slots, num_workers=config.num_workers,
                                         pin_memory=device.type == "cuda"))
        for batch, shard, x in zip(plan, shards, loader):
            yield TrainBatch(x, torch.from_numpy(batch.source_labels), len(batch.source), shard)

    net = fit(config, net, batches, len(sampler), len(source.classes), device=device, resume=resume,
              progress=progress, distributed=distributed)
    return net.cpu()


def network_domains(net: DAHNet, backbone: Backbone, source: ImageDomain, target: ImageDomain, *,
                    batch_size: int = 16, num_workers: int = 2, progress: bool = True,
                    device: str | torch.device = "cpu") -> Domains:
    """Features of both domains through ``net``'s fine-tuned backbone (on ``device``), ready for
    :func:`dahash.runs.run.evaluate_model`."""
    tuned = Backbone(backbone.name, net.backbone, backbone.feature_dim, backbone.preprocessing, FINETUNED_WEIGHTS)
    return network_features(tuned, source, target, batch_size=batch_size, num_workers=num_workers,
                            progress=progress, device=device)


def network_features(tuned: Backbone, source: ImageDomain, target: ImageDomain, *, batch_size: int = 16,
                     num_workers: int = 2, progress: bool = True, device: str | torch.device = "cpu") -> Domains:
    """Eval-transform features of both domains through a fine-tuned backbone, on ``device`` (never
    cached: the cache is keyed by pretrained weights). The backbone is back on the CPU afterwards."""

    def features(domain: ImageDomain) -> FeatureSet:
        X, kept, _ = extract_features(domain.paths, tuned, cache_dir=None, batch_size=batch_size,
                                      num_workers=num_workers, progress=progress, device=device)
        return FeatureSet(X, domain.labels[kept], ids=np.asarray(domain.ids, dtype=str)[kept],
                          classes=list(domain.classes), path=str(domain.root / domain.name))

    s, t = features(source), features(target)
    tuned.model.cpu()
    return Domains(s, t, FeatureNormalizer("none").fit(s.X, t.X))


def save_finetuned(config: TrainConfig, net: DAHNet, domains: Domains) -> None:
    """``model.pt`` with the head and the fine-tuned backbone's weights (read by ``dahash encode``)."""
    save_model(Path(config.out) / MODEL, net.head, config, domains,
               backbone_state={k: v.cpu() for k, v in net.backbone.state_dict().items()})


def load_finetuned_backbone(path: Path, config: TrainConfig) -> Backbone:
    """The backbone of a fine-tuned run's ``model.pt``: the registry architecture with the trained weights."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if "backbone" not in state:
        raise DataError(f"{path}: holds no fine-tuned backbone weights (was the run trained with --finetune?)")
    backbone = load_backbone(config.backbone, RANDOM_WEIGHTS, config.decode)
    backbone.model.load_state_dict(state["backbone"])
    backbone.weights_id = FINETUNED_WEIGHTS
    backbone.model.eval()
    return backbone
