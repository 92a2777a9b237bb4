"""Tests for feature extraction: DataLoader pipeline, failures, and the content-keyed cache."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dahash.errors import ConfigError
from dahash.images.backbones import Backbone, load_backbone
from dahash.images.extract import cache_path, extract_features, file_sha1, model_only_throughput
from dahash.images.preprocess import Preprocessing, eval_transform
from real_data import OFFICE_CALTECH  # tests/ is on sys.path (no __init__.py)

PREP = Preprocessing(resize=36, crop=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), interpolation="bilinear")


class _Counting(nn.Module):
    """Tiny feature net that counts the images it sees, or refuses to run at all."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(1), nn.Linear(12, 6))
        self.seen = 0
        self.forbidden = False
        self.lock = threading.Lock()  # lanes call forward from several threads at once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.forbidden:
            raise AssertionError("model forward called although every feature is cached")
        with self.lock:
            self.seen += x.shape[0]
        return self.net(x)


def _backbone(weights_id: str = "tiny0001", prep: Preprocessing = PREP) -> Backbone:
    torch.manual_seed(0)
    return Backbone(name="tiny", model=_Counting(), feature_dim=6, preprocessing=prep, weights_id=weights_id)


def _images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, (40 + 3 * i, 50, 3), dtype=np.uint8)
        p = folder / f"img{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


def test_features_match_direct_forward_and_cache_hit(tmp_path: Path) -> None:
    paths = _images(tmp_path / "imgs", 7)
    bb = _backbone()
    feats, kept, failures = extract_features(paths, bb, cache_dir=tmp_path / "cache", batch_size=3,
                                             num_workers=0, progress=False)
    assert feats.shape == (7, 6) and feats.dtype == np.float32
    assert kept.tolist() == list(range(7)) and failures == []
    with torch.no_grad():
        ref = bb.model.net(torch.stack([eval_transform(Image.open(p).convert("RGB"), PREP) for p in paths]))
    np.testing.assert_allclose(feats, ref.numpy(), rtol=1e-5, atol=1e-6)
    assert bb.model.seen == 7
    files = sorted((tmp_path / "cache" / bb.cache_key()).rglob("*.npy"))
    assert len(files) == 7 and (tmp_path / "cache" / bb.cache_key() / "meta.json").is_file()
    assert cache_path(tmp_path / "cache", bb, file_sha1(paths[0])).is_file()

    # Second call, even from another list that contains the same files: no forward at all.
    bb.model.forbidden = True
    again, kept2, _ = extract_features(paths[::-1], bb, cache_dir=tmp_path / "cache", num_workers=0, progress=False)
    np.testing.assert_array_equal(again, feats[::-1])
    assert kept2.tolist() == list(range(7))

    # write_cache=False reads the cache and computes what is missing without adding it.
    bb.model.forbidden = False
    seen = bb.model.seen
    new = _images(tmp_path / "new", 2, seed=1)
    mixed, _, _ = extract_features([paths[0], *new], bb, cache_dir=tmp_path / "cache", num_workers=0,
                                   progress=False, write_cache=False)
    np.testing.assert_array_equal(mixed[0], feats[0])
    assert bb.model.seen == seen + 2
    assert sorted((tmp_path / "cache" / bb.cache_key()).rglob("*.npy")) == files


def test_cache_key_follows_content_preprocessing_and_weights(tmp_path: Path) -> None:
    paths = _images(tmp_path / "imgs", 4)
    cache = tmp_path / "cache"
    bb = _backbone()
    before, _, _ = extract_features(paths, bb, cache_dir=cache, num_workers=0, progress=False)

    # Same path, new content: only that file is recomputed.
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(paths[2])
    bb.model.seen = 0
    after, _, _ = extract_features(paths, bb, cache_dir=cache, num_workers=0, progress=False)
    assert bb.model.seen == 1
    np.testing.assert_array_equal(after[[0, 1, 3]], before[[0, 1, 3]])
    assert not np.allclose(after[2], before[2])

    # A renamed copy is a cache hit: the key is the content, not the path.
    copy = tmp_path / "elsewhere" / "renamed.jpg"
    copy.parent.mkdir()
    copy.write_bytes(paths[0].read_bytes())
    bb.model.seen = 0
    extract_features([copy], bb, cache_dir=cache, num_workers=0, progress=False)
    assert bb.model.seen == 0

    # Other preprocessing or other weights: new keys, everything recomputed.
    other_prep = _backbone(prep=dataclasses.replace(PREP, interpolation="bicubic"))
    other_weights = _backbone(weights_id="tiny0002")
    assert len({bb.cache_key(), other_prep.cache_key(), other_weights.cache_key()}) == 3
    for other in (other_prep, other_weights):
        extract_features(paths, other, cache_dir=cache, num_workers=0, progress=False)
        assert other.model.seen == 4


def test_corrupt_and_missing_images_are_skipped(tmp_path: Path) -> None:
    paths = _images(tmp_path / "imgs", 5)
    truncated = paths[1]
    truncated.write_bytes(truncated.read_bytes()[:200])
    garbage = tmp_path / "imgs" / "garbage.jpg"
    garbage.write_bytes(b"this is not an image")
    missing = tmp_path / "imgs" / "missing.jpg"
    all_paths = paths + [garbage, missing]
    bb = _backbone()
    with pytest.warns(UserWarning, match="3 of 7 images could not be read"):
        feats, kept, failures = extract_features(all_paths, bb, cache_dir=tmp_path / "cache", batch_size=2,
                                                 num_workers=0, progress=False)
    assert kept.tolist() == [0, 2, 3, 4]
    assert feats.shape == (4, 6)
    assert [p for p, _ in failures] == [truncated, garbage, missing]
    assert all(reason for _, reason in failures)
    # Failures are not cached: they are retried (and reported) next time.
    with pytest.warns(UserWarning, match="3 of 7"):
        extract_features(all_paths, bb, cache_dir=tmp_path / "cache", num_workers=0, progress=False)


@pytest.mark.parametrize("lanes", [1, 2], ids=["worker-processes", "lanes"])
def test_parallel_decoding_duplicates_and_random_weights(tmp_path: Path, lanes: int) -> None:
    paths = _images(tmp_path / "imgs", 5)
    dup = tmp_path / "imgs" / "dup.jpg"
    dup.write_bytes(paths[0].read_bytes())
    bb = _backbone()
    feats, kept, _ = extract_features(paths + [dup], bb, cache_dir=tmp_path / "cache", batch_size=2,
                                      num_workers=2, progress=False, lanes=lanes)
    assert bb.model.seen == 5  # the duplicate is decoded and forwarded once
    np.testing.assert_array_equal(feats[5], feats[0])
    serial, _, _ = extract_features(paths, _backbone(), cache_dir=None, num_workers=0, progress=False)
    np.testing.assert_allclose(serial, feats[:5], rtol=1e-6)

    rnd = _backbone(weights_id="random")
    extract_features(paths, rnd, cache_dir=tmp_path / "cache2", num_workers=0, progress=False)
    assert not (tmp_path / "cache2").exists()  # two random inits must never share a cache entry


@pytest.fixture
def two_threads() -> Iterator[None]:
    """torch on 2 threads for the test, the count it had after."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("two_threads")
def test_lanes_give_the_features_failures_and_order_of_one_lane(tmp_path: Path) -> None:
    paths = _images(tmp_path / "imgs", 9)
    paths[4].write_bytes(b"not an image")
    paths.insert(6, tmp_path / "imgs" / "missing.jpg")
    serial = extract_features(paths, _backbone(), cache_dir=None, batch_size=2, num_workers=0, progress=False,
                              lanes=1, warn=False)
    lanes = _backbone()
    threads_seen: list[int] = []
    forward = lanes.model.forward
    lanes.model.forward = lambda x: (threads_seen.append(torch.get_num_threads()), forward(x))[1]
    parallel = extract_features(paths, lanes, cache_dir=None, batch_size=2, progress=False, lanes=3, warn=False)
    np.testing.assert_array_equal(parallel[0], serial[0])
    np.testing.assert_array_equal(parallel[1], serial[1])
    assert parallel[2] == serial[2] and [p.name for p, _ in serial[2]] == ["img4.jpg", "missing.jpg"]
    assert lanes.model.seen == 8 and set(threads_seen) == {1}  # each lane on one torch thread
    assert torch.get_num_threads() == 2  # and the caller's count is back


@pytest.mark.usefixtures("two_threads")
def test_a_lane_that_fails_stops_the_others_and_restores_the_threads(tmp_path: Path) -> None:
    paths = _images(tmp_path / "imgs", 12)
    bb = dataclasses.replace(_backbone(), feature_dim=7)  # the net gives 6: every batch fails its check
    with pytest.raises(ConfigError, match=r"returned features of shape \(2, 6\), expected \(2, 7\)"):
        extract_features(paths, bb, cache_dir=None, batch_size=2, progress=False, lanes=2)
    assert torch.get_num_threads() == 2
    assert bb.model.seen <= 8  # at most the batches in flight ran (2 lanes x 2), not all 6
    with pytest.raises(ConfigError, match="lanes must be a positive integer, got 0"):
        extract_features(paths, bb, cache_dir=None, progress=False, lanes=0)


def test_model_only_throughput_positive() -> None:
    bb = _backbone()
    assert model_only_throughput(bb, batch_size=4, n_batches=2) > 0


@pytest.mark.skipif(not OFFICE_CALTECH.is_dir(), reason="Office-Caltech-10 images not available")
def test_real_backbone_on_a_few_images(tmp_path: Path) -> None:
    paths = sorted((OFFICE_CALTECH / "webcam" / "mug").iterdir())[:3]
    bb = load_backbone("efficientnet_lite0")
    feats, kept, failures = extract_features(paths, bb, cache_dir=tmp_path, num_workers=0, progress=False)
    assert feats.shape == (3, 1280) and failures == [] and np.isfinite(feats).all()
    assert (feats >= 0).all() and (feats <= 6).all()  # average of ReLU6 activations


def test_unwritable_cache_warns_but_returns_features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dahash.images.extract as extract

    def disk_full(path: Path, features: np.ndarray) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(extract, "_write_cached", disk_full)
    paths = _images(tmp_path / "imgs", 3)
    with pytest.warns(UserWarning, match="3 cache entries could not be written.*No space left"):
        feats, kept, failures = extract_features(paths, _backbone(), cache_dir=tmp_path / "cache", num_workers=0,
                                                 progress=False)
    assert feats.shape == (3, 6) and failures == []


def test_the_suite_caches_features_in_a_temporary_folder(tmp_path_factory) -> None:
    from dahash.images.features import default_cache_dir

    # tests/conftest.py points $DAHASH_CACHE at this session's temporary folder: nothing lands in ~/.cache.
    assert default_cache_dir().is_relative_to(tmp_path_factory.getbasetemp())
    assert not default_cache_dir().is_relative_to(Path.home() / ".cache")
