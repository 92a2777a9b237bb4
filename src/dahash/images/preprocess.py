"""Image preprocessing without torchvision: the eval transform and the paper-style train augmentation.

Eval: resize the shorter side to ``resize`` (antialiased), centre-crop ``crop`` x ``crop``, scale
to [0, 1] in CHW order and normalise by ``mean``/``std``.

Decoding (``decode``): ``"exact"`` decodes every image in full and resamples it in one pass;
``"reduced"`` decodes a large JPEG at a reduced size that still covers ``resize`` (DCT scaling,
:func:`dahash.images.loading.open_image`) and lets Pillow shrink by an integer factor before
resampling where the ratio exceeds :data:`REDUCING_GAP`. The pixels differ slightly (mean absolute
difference about 0.5 of 255 on Office-Caltech DSLR photos), so the two have different cache keys.

Train (the authors' MatConvNet recipe, see docs/shared facts): resize the shorter side to
``resize``, take a window of random aspect ratio (log-uniform in [2/3, 3/2]) at a random
location, resize it to ``crop`` x ``crop``, flip horizontally with probability 1/2, scale the
brightness by a small random factor, then normalise. Every random draw comes from an explicit
``numpy.random.Generator`` so a seed reproduces the exact tensor.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from dahash.errors import ConfigError
from dahash.images.loading import open_image

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DECODE_MODES = ("exact", "reduced")
# What a run, a backbone loaded by name and feature extraction use unless told otherwise.
DEFAULT_DECODE = "reduced"
# Pillow's advice: from 3 on, reducing first is indistinguishable from resampling the full image.
REDUCING_GAP = 3.0


@dataclass(frozen=True)
class Preprocessing:
    """How images are turned into network input; ``key()`` names it in feature-cache paths."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    decode: str = "exact"

    def __post_init__(self) -> None:
        """Validate the values once, so transforms never see a nonsensical setting."""
        if self.interpolation not in _RESAMPLE:
            raise ConfigError(f"interpolation must be one of {sorted(_RESAMPLE)}, got {self.interpolation!r}")
        if self.decode not in DECODE_MODES:
            raise ConfigError(f"decode must be one of {', '.join(DECODE_MODES)}, got {self.decode!r}")
        if not (0 < self.crop <= self.resize):
            raise ConfigError(f"need 0 < crop <= resize, got crop={self.crop}, resize={self.resize}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError(f"mean and std need 3 values (RGB), got mean={self.mean}, std={self.std}")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std values must be positive, got {self.std}")
        # Normalise to tuples of floats so equal settings give equal keys and hashes.
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    def key(self) -> str:
        """A stable, filesystem-safe string identifying these settings (used in cache keys)."""
        key = f"r{self.resize}-c{self.crop}-{self.interpolation}-m{_fmt(self.mean)}-s{_fmt(self.std)}"
        # Exact decoding keeps the key it had before decoding had a setting: caches stay valid.
        return key if self.decode == "exact" else f"{key}-{self.decode}"

    @property
    def reducing_gap(self) -> float | None:
        """Pillow's ``reducing_gap`` for this decoding (None: resample the full image)."""
        return REDUCING_GAP if self.decode == "reduced" else None

    def open(self, path: str | os.PathLike[str]) -> Image.Image:
        """:func:`open_image` of ``path``, at a reduced size where this decoding allows it."""
        return open_image(path, self.resize if self.decode == "reduced" else None)


def _fmt(values: tuple[float, ...]) -> str:
    """Six significant digits: stable across platforms, fine enough to tell settings apart."""
    return ",".join(f"{v:.6g}" for v in values)


def resize_shorter(img: Image.Image, size: int, interpolation: str = "bicubic",
                   reducing_gap: float | None = None) -> Image.Image:
    """Resize so the shorter side is ``size``, keeping the aspect ratio (PIL resize is antialiased)."""
    w, h = img.size
    if min(w, h) == size:
        return img
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return img.resize(new, _RESAMPLE[interpolation], reducing_gap=reducing_gap)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """The central ``size`` x ``size`` window of an image at least that large."""
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def resized_center_crop(img: Image.Image, resize: int, crop: int, interpolation: str = "bicubic",
                        reducing_gap: float | None = None) -> Image.Image:
    """``center_crop(resize_shorter(img, resize), crop)`` in one resampling of just the cropped region.

    Resampling only the source box that becomes the crop gives the same pixels (up to the
    half-pixel rounding of the two-step version) and saves the work on the discarded border.
    """
    w, h = img.size
    side = crop * min(w, h) / resize  # the crop's extent in source pixels
    left, top = (w - side) / 2, (h - side) / 2
    return img.resize((crop, crop), _RESAMPLE[interpolation], box=(left, top, left + side, top + side),
                      reducing_gap=reducing_gap)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 tensor (3, H, W) in [0, 1], stored channels-last (H, W, 3 in memory).

    Why channels-last: it is Pillow's own interleaved layout, so no transposing copy is made here,
    and it is the layout the CPU model runs on (images/extract.py), so stacking a batch of these is
    a plain copy. A planar (3, H, W) copy followed by a channels-last copy of the batch cost 1.1 ms
    an image at 224 x 224 on one core; this costs 0.1 ms.
    """
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    w, h = rgb.size
    pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(h, w, 3)
    return pixels.float().div_(255.0).permute(2, 0, 1)


@functools.lru_cache(maxsize=16)
def _channel_planes(h: int, w: int, values: tuple[float, ...]) -> torch.Tensor:
    """``values`` repeated over an (H, W, C) grid; shared read-only, never written to."""
    return torch.tensor(values, dtype=torch.float32).repeat(h * w).view(h, w, len(values))


def normalize(t: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(t - mean) / std per channel, in place on ``t``.

    On a float32 (3, H, W) tensor stored channels-last (what :func:`to_tensor` returns), mean and
    std are subtracted and divided as whole (H, W, 3) planes: the same IEEE operations, element by
    element, as broadcasting three values, but 25 us instead of 300 us per operation at 224 x 224,
    because broadcasting along an interleaved last dimension of 3 does not vectorise.
    """
    c, h, w = t.shape if t.dim() == 3 else (0, 0, 0)
    if t.dtype == torch.float32 and c == len(mean) == len(std) and t.permute(1, 2, 0).is_contiguous():
        hwc = t.permute(1, 2, 0)
        hwc.sub_(_channel_planes(h, w, tuple(mean))).div_(_channel_planes(h, w, tuple(std)))
        return t
    m = torch.tensor(mean, dtype=t.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=t.dtype).view(-1, 1, 1)
    return t.sub_(m).div_(s)


def eval_transform(img: Image.Image, prep: Preprocessing) -> torch.Tensor:
    """Deterministic network input: shorter side to ``resize``, centre crop, normalise."""
    img = resized_center_crop(img, prep.resize, prep.crop, prep.interpolation, prep.reducing_gap)
    return normalize(to_tensor(img), prep.mean, prep.std)


def eval_input(path: str | os.PathLike[str], prep: Preprocessing) -> torch.Tensor:
    """The network input of the image file ``path``: decoded as ``prep`` says, then :func:`eval_transform`."""
    return eval_transform(prep.open(path), prep)


@dataclass(frozen=True)
class TrainParams:
    """One draw of the train augmentation: crop box in the resized image, flip, brightness."""

    box: tuple[int, int, int, int]
    flip: bool
    brightness: float
    aspect: float


def sample_train_params(
    size: tuple[int, int],
    prep: Preprocessing,
    rng: np.random.Generator,
    *,
    aspect_range: tuple[float, float] = (2 / 3, 3 / 2),
    brightness: float = 0.1,
) -> TrainParams:
    """Draw augmentation parameters for an image of ``size`` (w, h) already resized to ``prep.resize``."""
    lo, hi = aspect_range
    if not (0 < lo <= hi):
        raise ConfigError(f"aspect_range must satisfy 0 < low <= high, got {aspect_range}")
    if not (0 <= brightness < 1):
        raise ConfigError(f"brightness jitter must be in [0, 1), got {brightness}")
    w, h = size
    # Log-uniform so that a ratio and its inverse are equally likely (MatConvNet's jitterAspect).
    aspect = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    cw, ch = prep.crop * math.sqrt(aspect), prep.crop / math.sqrt(aspect)
    # Shrink the window, keeping its aspect, when it would not fit inside the image.
    shrink = min(1.0, w / cw, h / ch)
    cw, ch = max(1, min(w, round(cw * shrink))), max(1, min(h, round(ch * shrink)))
    left = int(rng.integers(0, w - cw + 1))
    top = int(rng.integers(0, h - ch + 1))
    flip = bool(rng.random() < 0.5)
    factor = float(rng.uniform(1 - brightness, 1 + brightness))
    return TrainParams(box=(left, top, left + cw, top + ch), flip=flip, brightness=factor, aspect=aspect)


def train_transform(
    img: Image.Image,
    prep: Preprocessing,
    rng: np.random.Generator,
    *,
    aspect_range: tuple[float, float] = (2 / 3, 3 / 2),
    brightness: float = 0.1,
) -> torch.Tensor:
    """Random aspect-jittered crop, horizontal flip and brightness jitter; reproducible from ``rng``."""
    img = resize_shorter(img, prep.resize, prep.interpolation, prep.reducing_gap)
    p = sample_train_params(img.size, prep, rng, aspect_range=aspect_range, brightness=brightness)
    img = img.resize((prep.crop, prep.crop), _RESAMPLE[prep.interpolation], box=p.box)
    if p.flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    t = to_tensor(img).mul_(p.brightness).clamp_(0.0, 1.0)
    return normalize(t, prep.mean, prep.std)


class TrainTransform:
    """Picklable train transform; the random stream of sample ``index`` in ``epoch`` depends only on the seed.

    Seeding per (seed, epoch, index) instead of sharing one generator keeps results identical
    whatever the number of DataLoader workers or the order in which they run.
    """

    def __init__(self, prep: Preprocessing, seed: int, **jitter: float | tuple[float, float]) -> None:
        """Remember the settings; ``jitter`` passes ``aspect_range``/``brightness`` through."""
        self.prep = prep
        self.seed = int(seed)
        self.jitter = jitter
        self.epoch = 0

    def __call__(self, img: Image.Image, index: int) -> torch.Tensor:
        """Augment ``img`` as sample ``index`` of the current epoch."""
        rng = np.random.default_rng((self.seed, self.epoch, int(index)))
        return train_transform(img, self.prep, rng, **self.jitter)
