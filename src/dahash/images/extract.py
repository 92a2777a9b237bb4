"""Backbone features for lists of image files, with an on-disk cache keyed by file content.

Pipeline: every file is hashed (sha1 of its bytes) in the main process; files whose features are
already cached are read back without decoding; the others are decoded, preprocessed and run through
the model batch by batch, and their features are written to the cache. On the CPU, lanes (threads
with one torch thread each) decode and run whole batches side by side; on a GPU, a torch
``DataLoader`` with ``num_workers`` worker processes decodes while the model runs. Unreadable
images are skipped and reported, never fatal.

Cache layout (``cache_dir`` may be shared by every task and domain)::

    cache_dir/
      <backbone>-<weights_id>-<sha1(preprocessing.key())[:12]>[-<engine>]/   # Backbone.cache_key()
        meta.json                    # name, weights_id, engine, preprocessing, feature_dim (for humans)
        ab/abcdef0123....npy         # float32 (D,) features of the file whose sha1 is abcdef0123...
      onnx/<backbone>-<digest>.onnx, .json   # the ONNX export other engines run (dahash.images.engines)

Each engine other than torch has its own folder: its features are within 1e-5 of torch's scale,
but a hash code's bit can flip on a difference that small, and an image's code must not depend
on which engine met it first (docs/usage.md, "Inference engines").

Keying by content rather than path means a renamed or copied image (the same domain in another
transfer task, duplicates across domains) is never recomputed, and an edited file always is. Each
``.npy`` is written atomically, so an interrupted run leaves only whole entries. Backbones with
random or fine-tuned weights (``weights_id`` ``"random"`` or ``"finetuned"``) are never cached: two
such models would otherwise share one key.
"""

from __future__ import annotations

import hashlib
import itertools
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from dahash.errors import ConfigError
from dahash.images.backbones import FINETUNED_WEIGHTS, RANDOM_WEIGHTS, Backbone
from dahash.images.loading import ImageLoadError
from dahash.images.preprocess import Preprocessing, eval_input
from dahash.images.workers import ForkSafeLoader
from dahash.io import atomic_path, write_json

__all__ = ["batch_features", "cache_path", "cached_features", "extract_features", "file_sha1", "image_tensor",
           "model_only_throughput"]

# oneDNN's depthwise and 1x1 convolutions run 1.5-1.8x faster on NHWC input on CPU (EfficientNet-Lite,
# 2 cores); only the input is converted, so the caller's model is left as it is.
_MEMORY_FORMAT = torch.channels_last
# A worker's item: (tensor or None, index into the work list, failure reason or "").
_Item = tuple[torch.Tensor | None, int, str]


def file_sha1(path: str | Path) -> str:
    """Hex sha1 of a file's bytes: the content part of a cache key."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_path(cache_dir: Path, backbone: Backbone, content_sha1: str) -> Path:
    """Where the features of a file with this content are cached for this backbone."""
    return Path(cache_dir) / backbone.cache_key() / content_sha1[:2] / f"{content_sha1}.npy"


class _ImageDataset(Dataset):
    """Decodes and preprocesses images in DataLoader workers; failures become markers, not exceptions."""

    def __init__(self, paths: Sequence[Path], prep: Preprocessing) -> None:
        """Images ``paths`` decoded and transformed as ``prep`` says."""
        self.paths = list(paths)
        self.prep = prep

    def __len__(self) -> int:
        """Number of images."""
        return len(self.paths)

    def __getitem__(self, i: int) -> _Item:
        """(tensor, i, "") or (None, i, reason) for an unreadable image."""
        try:
            return eval_input(self.paths[i], self.prep), i, ""
        except ImageLoadError as exc:
            return None, i, exc.reason


def _stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One input batch of preprocessed (3, H, W) images, NHWC (see _MEMORY_FORMAT).

    Stacked as (H, W, 3) views: images stored channels-last, as :func:`eval_input` returns them,
    are then copied whole (0.1 ms an image at 224 x 224), where stacking planar and converting
    the batch cost 1.1 ms.
    """
    return torch.stack([t.permute(1, 2, 0) for t in tensors]).permute(0, 3, 1, 2)


def _collate(items: list[_Item]) -> tuple[torch.Tensor | None, list[int], list[tuple[int, str]]]:
    """Stack the readable images of a batch; pass the failures through."""
    ok = [(t, i) for t, i, _ in items if t is not None]
    # NHWC in the worker, where the copy is free for the model's process.
    batch = _stack([t for t, _ in ok]) if ok else None
    return batch, [i for _, i in ok], [(i, r) for t, i, r in items if t is None]


def _forward(net: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, backbone: Backbone,
             device: str | torch.device) -> np.ndarray:
    """float32 (B, D) features of one stacked batch (call under ``torch.no_grad()``)."""
    out = net(batch.to(device, non_blocking=True)).float().cpu().numpy()
    if out.shape != (len(batch), backbone.feature_dim):
        raise ConfigError(f"backbone {backbone.name!r} returned features of shape "
                          f"{tuple(out.shape)}, expected ({len(batch)}, {backbone.feature_dim})")
    return out


def _read_cached(path: Path, dim: int) -> np.ndarray | None:
    """Cached features, or None when missing or unusable (then they are recomputed and rewritten)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return arr if arr.dtype == np.float32 and arr.shape == (dim,) else None


def _write_cached(path: Path, features: np.ndarray) -> None:
    """Write one feature vector atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, features, allow_pickle=False)


def extract_features(
    paths: Sequence[Path],
    backbone: Backbone,
    *,
    cache_dir: Path | None,
    batch_size: int = 64,
    num_workers: int = 2,
    progress: bool = True,
    device: str | torch.device = "cpu",
    write_cache: bool = True,
    warn: bool = True,
    lanes: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, str]]]:
    """Features of ``paths``: (float32 (n_ok, D), kept row indices into ``paths``, [(path, reason)] failures).

    ``cache_dir=None`` disables the cache; ``write_cache=False`` reads it but adds nothing (a
    server's uploads must not grow it without bound). Unreadable images are skipped with a warning,
    or silently with ``warn=False`` for a caller that reports the failures itself. The model is
    moved to ``device`` and run in eval mode under ``torch.no_grad()``; its train/eval mode is
    restored afterwards.

    On the CPU, ``lanes`` threads (default: torch's thread count) each decode a batch and run the
    model on it with one torch thread, side by side; with one lane, ``num_workers`` worker
    processes decode and the model runs on every torch thread, as it does on a GPU. Either way the
    batches hold the same images, so the features are the same.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size}")
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    if lanes is not None and lanes < 1:
        raise ConfigError(f"lanes must be a positive integer, got {lanes}")
    paths = [Path(p) for p in paths]
    dim = backbone.feature_dim
    use_cache = cache_dir is not None and backbone.weights_id not in (RANDOM_WEIGHTS, FINETUNED_WEIGHTS)
    features, failures, todo = _plan(paths, backbone, cache_dir if use_cache else None)
    if todo:
        use_cache = use_cache and write_cache and _write_cache_meta(Path(cache_dir), backbone)
        model = backbone.model.to(device)
        was_training = model.training
        model.eval()
        # Cache writes (fsync'd, ~2 ms each) run on a thread so they overlap the next forward pass.
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dahash-cache")
        writes: list[Future] = []
        try:
            todo_paths = [paths[idx[0]] for _, idx in todo]
            if torch.device(device).type == "cpu":
                n_lanes = min(torch.get_num_threads() if lanes is None else lanes, -(-len(todo) // batch_size))
            else:
                n_lanes = 1
            batches = (_lane_batches(todo_paths, backbone, batch_size, n_lanes) if n_lanes > 1
                       else _loader_batches(todo_paths, backbone, batch_size, num_workers, device))
            # Closed on any exit: the generators restore the thread count and grad mode they changed.
            with closing(batches), tqdm(total=len(todo), unit="img", desc=f"features {backbone.name}",
                                        disable=not progress) as bar:
                for out, done, failed in batches:
                    for row, j in zip(out, done):
                        h, idx = todo[j]
                        row = np.ascontiguousarray(row, dtype=np.float32)
                        if use_cache:
                            writes.append(writer.submit(_write_cached, cache_path(cache_dir, backbone, h), row))
                        features.update({i: row for i in idx})
                    for j, reason in failed:
                        failures.update({i: reason for i in todo[j][1]})
                    bar.update(len(done) + len(failed))
            errors = [w.exception() for w in writes if w.exception() is not None]
            if errors:
                # The cache only saves time: a full disk must not cost the features, but say so.
                warnings.warn(f"{Path(cache_dir) / backbone.cache_key()}: {len(errors)} cache entries could not be "
                              f"written ({errors[0]})", stacklevel=2)
        finally:
            writer.shutdown(wait=True)
            model.train(was_training)

    kept = np.array(sorted(features), dtype=np.int64)
    feats = np.stack([features[i] for i in kept]) if len(kept) else np.zeros((0, dim), np.float32)
    failed_list = [(paths[i], failures[i]) for i in sorted(failures)]
    if failed_list and warn:
        first_path, first_reason = failed_list[0]
        warnings.warn(f"{len(failed_list)} of {len(paths)} images could not be read and were skipped "
                      f"(first: {first_path}: {first_reason})", stacklevel=2)
    return feats.astype(np.float32, copy=False), kept, failed_list


# Features of one batch: (float32 (n_ok, D), indices into the work list, [(index, failure reason)]).
_Batch = tuple[np.ndarray, list[int], list[tuple[int, str]]]


def _plan(paths: list[Path], backbone: Backbone, cache_dir: Path | None
          ) -> tuple[dict[int, np.ndarray], dict[int, str], list[tuple[str, list[int]]]]:
    """(cached features by row, unreadable files by row, work list of (content sha1, rows) to compute).

    Paths are grouped by content, so duplicates are decoded once and share one cache entry.
    """
    features: dict[int, np.ndarray] = {}
    failures: dict[int, str] = {}
    by_hash: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        try:
            by_hash.setdefault(file_sha1(p), []).append(i)
        except OSError as exc:
            failures[i] = exc.strerror or type(exc).__name__
    todo: list[tuple[str, list[int]]] = []
    for h, idx in by_hash.items():
        cached = _read_cached(cache_path(cache_dir, backbone, h), backbone.feature_dim) if cache_dir else None
        if cached is None:
            todo.append((h, idx))
        else:
            features.update({i: cached for i in idx})
    return features, failures, todo


def _write_cache_meta(cache_dir: Path, backbone: Backbone) -> bool:
    """Describe the cache folder for humans; False (and a warning) when the cache is not writable."""
    meta = cache_dir / backbone.cache_key() / "meta.json"
    if meta.exists():
        return True
    try:
        write_json(meta, {"name": backbone.name, "weights_id": backbone.weights_id, "engine": backbone.engine,
                          "export": None if backbone.export is None else backbone.export.name,
                          "feature_dim": backbone.feature_dim, "preprocessing": asdict(backbone.preprocessing),
                          "preprocessing_key": backbone.preprocessing.key()})
    except OSError as exc:
        # The cache only saves time: an unwritable one must not cost the features.
        warnings.warn(f"{meta.parent}: feature cache not writable ({exc.strerror or exc}); "
                      "features are computed but not cached", stacklevel=3)
        return False
    return True


def _loader_batches(paths: list[Path], backbone: Backbone, batch_size: int, num_workers: int,
                    device: str | torch.device) -> Iterator[_Batch]:
    """Batches decoded by ``num_workers`` processes, run through the model here on every torch thread."""
    dataset = _ImageDataset(paths, backbone.preprocessing)
    # Pinned host memory lets a batch's copy to the GPU overlap the decoding of the next.
    loader = ForkSafeLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            collate_fn=_collate, pin_memory=torch.device(device).type == "cuda")
    # EfficientNet-Lite: a BatchNorm-folded copy, twice as fast on CPU (backbones.inference_model),
    # traced there, so that its forward pass does not take the GIL between layers (backbones.traced_for_cpu).
    net = backbone.inference()
    with torch.no_grad():
        for batch, done, failed in loader:
            out = _forward(net, batch, backbone, device) if batch is not None else np.zeros((0, backbone.feature_dim))
            yield out, done, failed


def _lane_batches(paths: list[Path], backbone: Backbone, batch_size: int, lanes: int) -> Iterator[_Batch]:
    """Batches in order, each decoded and run through the model by one of ``lanes`` threads on one
    torch thread.

    Why: a small batch runs 1.5x faster on 2 torch threads than on 1, so two lanes of one thread
    do more than one of two; and decoding in the lanes (Pillow and torch release the GIL) fills
    the gaps of the model's own, instead of decoding processes preempting its threads.
    """
    net = backbone.inference(threads=1)
    dataset = _ImageDataset(paths, backbone.preprocessing)

    def lane(start: int) -> _Batch:
        batch, done, failed = _collate([dataset[i] for i in range(start, min(start + batch_size, len(paths)))])
        with torch.no_grad():
            out = _forward(net, batch, backbone, "cpu") if batch is not None else np.zeros((0, backbone.feature_dim))
        return out, done, failed

    threads = torch.get_num_threads()
    # A thread reads the count when it first runs a torch op: the lanes start with one thread each,
    # and threads that already run torch ops (a server's) keep theirs.
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="dahash-lane")
    try:
        starts = iter(range(0, len(paths), batch_size))
        # Two batches per lane in flight: the next is decoding while this one is consumed.
        pending = deque(pool.submit(lane, s) for s in itertools.islice(starts, 2 * lanes))
        while pending:
            result = pending.popleft().result()
            for s in itertools.islice(starts, 1):
                pending.append(pool.submit(lane, s))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)


def image_tensor(path: str | Path, backbone: Backbone) -> torch.Tensor:
    """The backbone input (3, crop, crop) of one image file, as :func:`extract_features`' decoding
    workers make it; :class:`ImageLoadError` when the file cannot be decoded."""
    return eval_input(path, backbone.preprocessing)


def cached_features(path: str | Path, backbone: Backbone, cache_dir: Path | None) -> np.ndarray | None:
    """The (D,) features the cache holds for this file's content, as :func:`extract_features` reads
    them; None without a cache, for an uncached backbone (random or fine-tuned weights), or when
    the cache has no usable entry. OSError when the file cannot be read."""
    if cache_dir is None or backbone.weights_id in (RANDOM_WEIGHTS, FINETUNED_WEIGHTS):
        return None
    return _read_cached(cache_path(cache_dir, backbone, file_sha1(path)), backbone.feature_dim)


def batch_features(backbone: Backbone, tensors: Sequence[torch.Tensor],
                   device: str | torch.device = "cpu") -> np.ndarray:
    """float32 (len(tensors), D) features of preprocessed images (:func:`image_tensor`) in one
    forward pass, computed as :func:`extract_features` computes a batch.

    The model must be in eval mode already (as :func:`~dahash.images.backbones.load_backbone`
    leaves it): this function changes no module state, so threads may call it side by side.
    """
    if not tensors:
        return np.zeros((0, backbone.feature_dim), np.float32)
    if backbone.model.training:
        raise ConfigError(f"backbone {backbone.name!r} is in training mode; put it in eval mode first")
    with torch.no_grad():
        return _forward(backbone.inference(), _stack(tensors), backbone, device)


def model_only_throughput(backbone: Backbone, batch_size: int = 64, n_batches: int = 5,
                          device: str | torch.device = "cpu", lanes: int = 1) -> float:
    """Images per second of the model alone on random input of the backbone's crop size (one warm-up
    batch), run as :func:`extract_features` runs it: with ``lanes`` > 1 on the CPU, that many threads
    of one torch thread each run ``n_batches`` batches side by side."""
    if lanes < 1:
        raise ConfigError(f"lanes must be a positive integer, got {lanes}")
    crop = backbone.preprocessing.crop
    x = torch.randn(batch_size, 3, crop, crop, device=device).contiguous(memory_format=_MEMORY_FORMAT)
    model = backbone.model.to(device)
    was_training = model.training
    model.eval()
    cuda = torch.device(device).type == "cuda"

    def run(n: int) -> None:
        with torch.no_grad():
            for _ in range(n):
                net(x)

    def timed(warm_up: Callable[[], Any], work: Callable[[], Any]) -> float:
        warm_up()  # first-call allocations and kernel selection are not throughput
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        work()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    threads = torch.get_num_threads()
    try:
        # What extract_features runs: with lanes, each lane's engine session has one thread.
        net = backbone.inference(threads=1 if lanes > 1 and not cuda else None)
        if lanes == 1:  # in this thread, as extract_features runs one lane
            elapsed = timed(lambda: run(1), lambda: run(n_batches))
        else:
            if not cuda:
                torch.set_num_threads(1)  # the lanes' threads start with one torch thread each
            with ThreadPoolExecutor(max_workers=lanes) as pool:
                elapsed = timed(lambda: list(pool.map(run, [1] * lanes)),
                                lambda: list(pool.map(run, [n_batches] * lanes)))
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
    return lanes * batch_size * n_batches / elapsed
