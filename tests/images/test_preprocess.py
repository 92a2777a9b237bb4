"""Pixels to network input: channels-last storage and whole-plane normalisation give the bits of the
planar, broadcast formula they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dahash.images.backbones import Backbone
from dahash.images.extract import batch_features
from dahash.images.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    eval_transform,
    normalize,
    resized_center_crop,
    sample_train_params,
    to_tensor,
    train_transform,
)

PREP = Preprocessing(resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def _image(w: int, h: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").convert(mode)


def _planar(img: Image.Image) -> torch.Tensor:
    """The formula before channels-last storage: a planar copy of the pixels, divided by 255."""
    return torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1).contiguous().float() / 255.0


def _broadcast(t: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    return (t - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


@pytest.mark.parametrize("mode", ["RGB", "L", "P"])
def test_to_tensor_is_the_planar_formula_stored_channels_last(mode: str) -> None:
    img = _image(37, 23, mode=mode)
    t = to_tensor(img)
    assert t.shape == (3, 23, 37) and t.dtype == torch.float32
    assert t.permute(1, 2, 0).is_contiguous()  # H, W, 3 in memory
    assert torch.equal(t, _planar(img))
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


def test_normalize_by_whole_planes_equals_broadcasting_bit_for_bit() -> None:
    img = _image(224, 224, seed=1)
    expected = _broadcast(_planar(img), IMAGENET_MEAN, IMAGENET_STD)
    channels_last = to_tensor(img)
    assert torch.equal(normalize(channels_last, IMAGENET_MEAN, IMAGENET_STD), expected)
    # A planar tensor takes the broadcast path and gets the same values.
    planar = _planar(img)
    assert torch.equal(normalize(planar, IMAGENET_MEAN, IMAGENET_STD), expected)
    # The planes are shared between calls and must come out of them unchanged.
    again = to_tensor(img)
    assert torch.equal(normalize(again, IMAGENET_MEAN, IMAGENET_STD), expected)


def test_eval_and_train_transforms_keep_the_bits_of_the_planar_formula() -> None:
    img = _image(400, 300, seed=2)
    crop = resized_center_crop(img, PREP.resize, PREP.crop, PREP.interpolation)
    assert torch.equal(eval_transform(img, PREP), _broadcast(_planar(crop), PREP.mean, PREP.std))
    rng, replay = np.random.default_rng(5), np.random.default_rng(5)
    out = train_transform(img, PREP, rng)
    # The same draws, applied to the planar formula.
    resized = img.resize((341, 256), Image.Resampling.BICUBIC)
    p = sample_train_params(resized.size, PREP, replay)
    window = resized.resize((224, 224), Image.Resampling.BICUBIC, box=p.box)
    if p.flip:
        window = window.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    expected = _broadcast((_planar(window) * p.brightness).clamp(0.0, 1.0), PREP.mean, PREP.std)
    assert torch.equal(out, expected)


def test_a_batch_of_channels_last_images_is_stacked_for_the_model_without_transposing() -> None:
    seen: list[torch.Tensor] = []

    class Record(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x)
            return x.mean(dim=(2, 3))

    images = [eval_transform(_image(300, 260, seed=s), PREP) for s in range(3)]
    backbone = Backbone(name="record", model=Record().eval(), feature_dim=3, preprocessing=PREP, weights_id="random")
    features = batch_features(backbone, images)
    batch = seen[0]
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch, torch.stack(images))
    # Summation order follows the layout, so the means agree to rounding.
    np.testing.assert_allclose(features, torch.stack(images).mean(dim=(2, 3)).numpy(), rtol=1e-5)
