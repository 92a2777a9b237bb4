"""ImageTensorCache: images decoded once, batches cut on the device as the CPU workers cut them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dahash.errors import DataError
from dahash.images.preprocess import Preprocessing, eval_input, resize_shorter, train_transform
from dahash.images.tensor_cache import ImageTensorCache

PREP = Preprocessing(resize=64, crop=56, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Smooth, photo-like images of several sizes and aspects (JPEG and PNG)."""
    root = tmp_path_factory.mktemp("photos")
    paths = []
    for i, (w, h) in enumerate([(120, 90), (90, 120), (200, 200), (64, 80), (300, 110)]):
        y, x = np.mgrid[0:h, 0:w] / max(w, h)
        pixels = np.stack([128 + 100 * np.sin((6 + i) * x + 2 * y), 128 + 90 * np.cos(5 * y - 3 * x), 255 * x * y], -1)
        path = root / f"{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def test_the_cache_holds_each_image_resized_once(photos: list[Path]) -> None:
    cache = ImageTensorCache(photos, PREP, "cpu", num_workers=0, progress=False)
    for path, img in zip(photos, cache.images):
        expected = np.asarray(resize_shorter(PREP.open(path), PREP.resize, PREP.interpolation))
        assert img.dtype == torch.uint8 and min(img.shape[1:]) == PREP.resize
        np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), expected)
    assert cache.nbytes == sum(3 * t.shape[1] * t.shape[2] for t in cache.images)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_augmented_batch_is_the_workers_batch_up_to_the_resampling_kernel(photos: list[Path], workers: int) -> None:
    cache = ImageTensorCache(photos, PREP, "cpu", num_workers=workers, progress=False)
    seeds = [(3, 1, slot) for slot in range(len(photos))]
    got = cache.batch(range(len(photos)), [np.random.default_rng(s) for s in seeds])
    want = torch.stack([train_transform(PREP.open(p), PREP, np.random.default_rng(s)) for p, s in zip(photos, seeds)])
    assert got.shape == want.shape == (len(photos), 3, PREP.crop, PREP.crop)
    # Same boxes, flips and brightness: the difference is torch's bicubic against Pillow's, about
    # one grey level in a hundred on average (measured on Office-Caltech photos: 0.16 / 255).
    levels = (got - want).abs() * 0.5 * 255
    assert float(levels.mean()) < 1.0, float(levels.mean())
    # Another draw of the same images is another crop: the match above is not a coincidence.
    other = cache.batch(range(len(photos)), [np.random.default_rng((3, 2, s[2])) for s in seeds])
    assert float(((other - want).abs() * 0.5 * 255).mean()) > 5 * float(levels.mean())


def test_an_unaugmented_batch_is_the_eval_centre_crop(photos: list[Path]) -> None:
    cache = ImageTensorCache(photos, PREP, "cpu", num_workers=0, progress=False)
    got = cache.batch(range(len(photos)), None)
    want = torch.stack([eval_input(p, PREP) for p in photos])
    # The centre crop of the resized image; eval resamples that window in one step (half a pixel apart).
    assert float(((got - want).abs() * 0.5 * 255).mean()) < 3.0


def test_an_image_broken_since_the_scan_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "gone.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match="gone.jpg.*readable when training started"):
        ImageTensorCache([bad], PREP, "cpu", num_workers=0, progress=False)
