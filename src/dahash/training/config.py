"""One configuration object per run, from defaults, a YAML file and CLI flags, saved with the results."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from typing import Any

import torch
import yaml

from dahash.data.normalize import KINDS
from dahash.errors import ConfigError
from dahash.images.engines import ENGINES
from dahash.images.preprocess import DECODE_MODES, DEFAULT_DECODE
from dahash.io import write_text
from dahash.losses.mmd import MMD_ESTIMATORS

CHOICES: dict[str, tuple[str, ...]] = {
    "mmd_reduction": ("sum", "mean"),
    "entropy_reduction": ("sum", "mean"),
    "feature_norm": KINDS,
    "head": ("hash", "softmax"),
    "lr_schedule": ("log", "inverse"),
    "mmd_estimator": MMD_ESTIMATORS,
    "backbone_bn": ("frozen", "train"),
    "decode": DECODE_MODES,
    "augment_on": ("workers", "device"),
    "engine": ENGINES,
}
# What a run saved before a setting existed did: a saved config without the key means this value.
SETTINGS_BEFORE_THEY_EXISTED: dict[str, Any] = {"backbone_bn": "train", "stochastic_depth": True,
                                                "mmd_estimator": "authors", "decode": "exact",
                                                "augment_on": "workers"}


def fill_settings_before(saved: dict[str, Any], keys: Any) -> dict[str, Any]:
    """``saved`` with each of ``keys`` it lacks set to what it meant before it existed
    (:data:`SETTINGS_BEFORE_THEY_EXISTED`); other keys as they are."""
    return {**{k: v for k, v in SETTINGS_BEFORE_THEY_EXISTED.items() if k in keys}, **saved}
MMD_LAYER_NAMES = ("fc6", "fc7", "fc8")


@dataclass
class TrainConfig:
    """Every setting of a DAH training run. Defaults are the paper's (Sec. 5.2) and the
    authors' code's (docs/faithfulness.md), except where a field's help says otherwise."""

    source_features: str | None = field(default=None, metadata={"help": "labeled source features (.npz, .npy[,labels.npy] or .mat)"})
    target_features: str | None = field(default=None, metadata={"help": "target features; labels, if present, are used only for evaluation"})
    data_root: str | None = field(default=None, metadata={"help": "root of image domains (ROOT/<domain>/<class>/*.jpg), instead of feature files"})
    source: str | None = field(default=None, metadata={"help": "source domain under --data-root: folder name, short code (A, C, D, W, Ar, Cl, Pr, Rw) or an image-list .txt"})
    target: str | None = field(default=None, metadata={"help": "target domain under --data-root (same forms as --source)"})
    backbone: str = field(default="efficientnet_lite0", metadata={"help": "feature extractor for image domains"})
    weights: str | None = field(default=None, metadata={"help": "local weights file for the backbone"})
    finetune: bool = field(default=False, metadata={"help": "train the backbone end to end with the head (images, with augmentation) instead of the head on cached features"})
    augment: bool = field(default=True, metadata={"help": "with --finetune: random aspect-jittered crop, flip and brightness jitter of training images"})
    augment_on: str = field(default="workers", metadata={"help": "with --finetune: workers decode and augment every draw in DataLoader processes (CPU); device decodes every image once into a uint8 tensor cache on the training device and crops, flips and jitters there, for a GPU the workers cannot keep up with (same crop boxes, flips and factors; torch's bicubic in place of Pillow's)"})
    backbone_bn: str = field(default="frozen", metadata={"help": "with --finetune: frozen keeps the backbone's BatchNorm layers on their pretrained running statistics (eval mode; scale and shift still learn), train normalises by each mixed source+target batch and updates them (docs/finetuning.md)"})
    stochastic_depth: bool = field(default=False, metadata={"help": "with --finetune: keep the backbone's stochastic depth (EfficientNet's drop-connect) and dropout on while training; off by default, as the authors' DAH net drops the pretrained dropout (docs/finetuning.md)"})
    device: str = field(default="auto", metadata={"help": "torch device: auto (CUDA GPU if present, else CPU), cpu, cuda, cuda:1 ..."})
    amp: bool = field(default=True, metadata={"help": "mixed precision (bf16, else fp16) for the forward pass on CUDA; ignored on CPU"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the network for training (fewer kernel launches on GPUs; the first steps wait for the compiler; needs a C compiler)"})
    decode: str = field(default=DEFAULT_DECODE, metadata={"help": "reduced: a large JPEG is decoded at 1/2, 1/4 or 1/8 size (still covering the resize) and shrunk by an integer factor before resampling, several times less CPU on camera photos; exact: full decode (runs saved before this setting); the two have separate feature caches (docs/usage.md)"})
    cache_dir: str | None = field(default=None, metadata={"help": "feature cache (default: $DAHASH_CACHE or ~/.cache/dahash)"})
    engine: str = field(default="auto", metadata={"help": "what runs the frozen backbone on the CPU when features are extracted: torch, onnxruntime (an ONNX export made once and cached under the feature cache; pip install 'dahash[onnx]'), or auto, the default (the fastest installed within tolerance of torch, else torch); each engine has its own feature cache; fine-tuning and GPUs run on torch (docs/usage.md)"})
    num_workers: int = field(default=2, metadata={"help": "image decoding worker processes for fine-tuning, and for "
                                                           "feature extraction on a GPU or on 1 CPU thread (more "
                                                           "CPU threads decode and extract in lanes of 1 thread)"})
    extract_batch_size: int = field(default=16, metadata={"help": "images per forward pass when extracting features"})
    out: str | None = field(default=None, metadata={"help": "run directory for checkpoints and results"})
    x_key: str | None = field(default=None, metadata={"help": "feature variable name in .mat/.npz files (default: X, feas, fts, features)"})
    y_key: str | None = field(default=None, metadata={"help": "label variable name (default: y, labels, label, gnd)"})
    head: str = field(default="hash", metadata={"help": "hash: DAH's hash layer and losses; softmax: a classifier (the deep baselines source-only, DAN, DANN)"})
    adversarial: bool = field(default=False, metadata={"help": "softmax head: add DANN's domain classifier on fc7 behind a gradient reversal layer"})
    adversarial_weight: float = field(default=1.0, metadata={"help": "with adversarial: weight of DANN's domain loss (its lambda, Ganin et al., JMLR 2016, eq. 13-15), on top of the reversal coefficient's 0-to-1 schedule"})
    bits: int = field(default=64, metadata={"help": "hash code length d"})
    hidden: list[int] = field(default_factory=lambda: [256, 256], metadata={"help": "widths of the new fc6 and fc7 of the head (AlexNet/VGG: the pretrained ones, 4096)"})
    hidden_bn: bool = field(default=False, metadata={"help": "BatchNorm before the ReLU of the head's fc6 and fc7; not in the authors' network, whose fc6/fc7 are pretrained VGG-F layers (docs/own-features.md)"})
    hidden_dropout: float = field(default=0.0, metadata={"help": "dropout rate after the ReLU of fc6 and fc7 while training (the MMD reads the ReLU outputs before it); 0 as in the authors' DAH net"})
    feature_norm: str = field(default="auto", metadata={"help": "input normalisation fitted on source+target features: auto (from what the features are: histograms l1-standardize, pooled CNN activations none, signed embeddings standardize; docs/own-features.md), none, l2, standardize or l1-standardize; a fine-tuned or pretrained-fc6 head takes none"})
    k: int = field(default=5, metadata={"help": "source samples per class in a batch (K)"})
    sample_with_replacement: bool = field(default=False, metadata={"help": "draw batch samples with replacement, so the expected linear MMD cannot go negative on a small domain (not in the paper)"})
    epochs: int = field(default=300, metadata={"help": "epochs; one epoch is one pass over the source"})
    lr_start: float = field(default=1e-4, metadata={"help": "learning rate of the first epoch (log-spaced schedule)"})
    lr_end: float = field(default=1e-5, metadata={"help": "learning rate of the last epoch (log schedule)"})
    lr_schedule: str = field(default="log", metadata={"help": "log: log-spaced from lr_start to lr_end (DAH); inverse: lr_start / (1 + 10 p)^0.75, p the progress (DAN, DANN)"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    weight_decay: float = field(default=5e-4, metadata={"help": "weight decay on weights (not biases or BatchNorm)"})
    new_lr_mult: float = field(default=1.0, metadata={"help": "learning-rate multiplier of newly initialised layers' weights"})
    pretrained_lr_mult: float = field(default=0.1, metadata={"help": "learning-rate multiplier of pretrained layers' weights"})
    batch_mean_gradient: bool = field(default=True, metadata={"help": "divide the summed loss's gradient by the batch size before the SGD update, as MatConvNet's cnn_train (the authors' framework) does"})
    bias_lr_factor: float = field(default=2.0, metadata={"help": "a bias's multiplier relative to its layer's weights"})
    like_weight: float = field(default=10.0, metadata={"help": "weight of same-class pairs in the hash loss"})
    inner_product_scale: float = field(default=0.5, metadata={"help": "factor on <u_i,u_j> in the hash loss (0.5 authors' code, 1 paper)"})
    beta: float = field(default=1.0, metadata={"help": "quantization loss weight"})
    gamma: float = field(default=5000.0, metadata={"help": "MK-MMD weight (0 disables domain alignment)"})
    eta: float = field(default=1.0, metadata={"help": "entropy loss weight (0 gives DAH-e)"})
    mmd_layers: list[str] = field(default_factory=lambda: list(MMD_LAYER_NAMES), metadata={"help": "layers the MK-MMD aligns"})
    mmd_reduction: str = field(default="sum", metadata={"help": "sum over quadruples (authors' code) or mean (eq. 9)"})
    mmd_estimator: str = field(default="balanced", metadata={"help": "balanced: the linear MMD with source pairs reweighted so that the K-per-class batch layout cannot bias it (default, chosen without target labels: docs/adaptation.md); authors: the plain estimate of the authors' code, which that layout biases; class-weighted: balanced, with the source reweighted to the target class proportions the model predicts (Yan et al., CVPR 2017)"})
    reference_batch: int = field(default=0, metadata={"help": "0: beta, gamma and eta as given; N > 0: they are the weights at a batch of N source rows and scale with the batch (325 = the authors' Office-Home batch), see docs/adaptation.md"})
    entropy_reduction: str = field(default="sum", metadata={"help": "sum over targets (authors' code) or mean (eq. 7)"})
    bank_per_class: int = field(default=200, metadata={"help": "labeled source samples per class in the prediction bank"})
    precision_k: int = field(default=100, metadata={"help": "k of the reported precision@k"})
    seed: int = field(default=0, metadata={"help": "random seed of initialisation, batches and MMD pairing"})
    checkpoint_every: int = field(default=1, metadata={"help": "epochs between checkpoints"})
    num_threads: int | None = field(default=None, metadata={"help": "CPU threads of torch, numba and BLAS (dahash train and DAH.fit: the cores other jobs leave free by the 1-minute load average, at least 1; run(): as the process has them)"})

    def validate(self) -> "TrainConfig":
        """Check ranges and choices; raise ConfigError naming the field."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, got {value!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError, TypeError):
                raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}") from None
        positive = ("bits", "k", "epochs", "lr_start", "lr_end", "bank_per_class", "precision_k", "checkpoint_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("momentum", "weight_decay", "like_weight", "beta", "gamma", "eta", "inner_product_scale",
                     "new_lr_mult", "pretrained_lr_mult", "bias_lr_factor", "adversarial_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if not 0.0 <= self.hidden_dropout < 1.0:
            raise ConfigError(f"hidden_dropout must be in [0, 1), got {self.hidden_dropout!r}")
        if len(self.hidden) != 2 or any(h <= 0 for h in self.hidden):
            raise ConfigError(f"hidden must be two positive widths (fc6 fc7), got {self.hidden!r}")
        bad = [name for name in self.mmd_layers if name not in MMD_LAYER_NAMES]
        if bad or not self.mmd_layers:
            raise ConfigError(f"mmd_layers must be a non-empty subset of {', '.join(MMD_LAYER_NAMES)}; got {self.mmd_layers!r}")
        if self.reference_batch < 0:
            raise ConfigError(f"reference_batch must be >= 0 (0: literal weights), got {self.reference_batch!r}")
        if self.num_workers < 0 or self.extract_batch_size < 1:
            raise ConfigError(f"num_workers must be >= 0 and extract_batch_size >= 1, got "
                              f"{self.num_workers!r} and {self.extract_batch_size!r}")
        if self.finetune and self.feature_norm not in ("none", "auto"):
            raise ConfigError(f"feature_norm must be none with finetune (the head sits on the trained backbone), "
                              f"got {self.feature_norm!r}")
        if self.finetune and (self.source_features or self.target_features):
            raise ConfigError("finetune trains the backbone on images: give --data-root/--source/--target, "
                              "not feature files")
        if self.head == "softmax" and self.eta != 0:
            raise ConfigError(f"eta (DAH's entropy loss) needs the hash head; set eta=0 with head=softmax, got {self.eta!r}")
        if self.adversarial and self.head != "softmax":
            raise ConfigError("adversarial (DANN's domain classifier) needs head=softmax")
        if self.finetune and self.engine not in ("torch", "auto"):
            raise ConfigError(f"engine {self.engine!r}: fine-tuning trains the backbone on torch; give engine torch "
                              "or auto with finetune")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {self.num_threads!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, as written to config.yaml."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "TrainConfig":
        """Build from a dict (YAML), converting types and rejecting unknown keys."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        # Keys come from YAML: any hashable, any text; shown so that the message stays one line.
        unknown = sorted((k for k in values if k not in known), key=str)
        if unknown:
            shown = ", ".join(k if isinstance(k, str) and k.isidentifier() else repr(k) for k in unknown)
            raise ConfigError(f"{source}: unknown setting(s) {shown}; known: {', '.join(known)}")
        hints = typing.get_type_hints(cls)
        converted = {name: _convert(name, value, hints[name], source) for name, value in values.items()}
        try:
            return cls(**converted).validate()
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_saved(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """:meth:`from_dict` of a config dahash saved with a run: a setting it lacks (added after the
        run was written) takes what that version did (:data:`SETTINGS_BEFORE_THEY_EXISTED`)."""
        return cls.from_dict({**SETTINGS_BEFORE_THEY_EXISTED, **values}, source=source)

    def save(self, path: str | os.PathLike) -> None:
        """Write config.yaml atomically."""
        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


def _convert(name: str, value: Any, hint: Any, source: str) -> Any:
    """Coerce a YAML/CLI value to the field's type, or raise ConfigError naming it."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args and typing.get_origin(hint) is not list else hint
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: {name} cannot be empty")
    try:
        if typing.get_origin(base) is list:
            (item,) = typing.get_args(base)
            values = value if isinstance(value, (list, tuple)) else [value]
            return [item(v) for v in values]
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base is float:
            return float(value)
        if base is str:
            return str(value)
        if base is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "yes", "1", "false", "no", "0"):
                return str(value).lower() in ("true", "yes", "1")
            raise ValueError
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise ConfigError(f"{source}: {name} must be {getattr(base, '__name__', base)}, got {value!r}")


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping of settings; errors name the file."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of setting: value, got {type(data).__name__}")
    return data


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = (),
                         help_overrides: dict[str, str] | None = None) -> None:
    """Add one ``--flag`` per TrainConfig field (``help_overrides``: a field's help in place of its own, no default
    shown); unset flags stay absent so YAML values win."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in skip:
            continue
        hint = hints[f.name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        # Defaults stay out of the namespace (YAML values must win over them); help still shows them.
        text = (help_overrides or {}).get(f.name, f.metadata.get("help", "")).replace("%", "%%")
        if default is not None and f.name not in (help_overrides or {}):
            text += f" (default: {str(shown).replace('%', '%%')})"
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": text.lstrip()}
        if typing.get_origin(hint) is list:
            kwargs["nargs"] = "+"
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        if f.name in CHOICES:
            kwargs["choices"] = CHOICES[f.name]
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, metavar=f.name.upper(), **kwargs)


def resolve_config(args: argparse.Namespace, yaml_path: str | None = None,
                   preset: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, overridden by ``preset`` (a method's settings), the YAML file, then flags given on the command line."""
    values: dict[str, Any] = dict(preset or {})
    values.update(load_yaml(yaml_path) if yaml_path else {})
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    config = TrainConfig.from_dict(values, source=str(yaml_path or "command line"))
    # Absolute paths keep config.yaml valid for 'dahash evaluate' run from another directory.
    for name in ("source_features", "target_features", "data_root", "weights", "cache_dir"):
        value = getattr(config, name)
        if value:
            parts = [value] if os.path.exists(value) else value.split(",")  # "feats.npy,labels.npy" pairs
            setattr(config, name, ",".join(os.path.abspath(part) for part in parts))
    for name in ("source", "target"):
        value = getattr(config, name)
        if value and os.path.isfile(value):  # an image-list file, not a domain name
            setattr(config, name, os.path.abspath(value))
    return config
