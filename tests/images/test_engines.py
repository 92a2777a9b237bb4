"""The frozen backbone on ONNX Runtime (``--engine``): the same features as torch within
the stated tolerance on real images at batch sizes 1 and 16, an ONNX export made once and made
again when it no longer matches its model, each engine's own feature cache, and ``auto``."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from dahash.errors import ConfigError, DahashError
from dahash.images import backbones
from dahash.images.backbones import FINETUNED_WEIGHTS, EXPORTS_DIR, load_backbone, use_engine
from dahash.images.datasets import find_images
from dahash.images.engines import TOLERANCE, engine_runner, onnx_export
from dahash.images.extract import extract_features
from dahash.training.config import TrainConfig
from real_data import OFFICE_CALTECH  # tests/ is on sys.path (no __init__.py)

pytest.importorskip("onnxruntime")

ENGINES = ["onnxruntime"]


@pytest.fixture(scope="module")
def lite0(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """EfficientNet-Lite0 with its ImageNet weights, a cache folder for its exports, and 16 real
    images: the first 4 of each Office-Caltech-10 domain's first class."""
    if not OFFICE_CALTECH.is_dir():
        pytest.skip(f"Office-Caltech-10 not found at {OFFICE_CALTECH} (set DAHASH_OFFICE_CALTECH)")
    paths = [p for domain in ("amazon", "caltech10", "dslr", "webcam")
             for p in find_images(OFFICE_CALTECH / domain / "backpack")[:4]]
    assert len(paths) == 16
    return {"backbone": load_backbone(), "cache": tmp_path_factory.mktemp("engine-cache"), "paths": paths}


@pytest.fixture(scope="module")
def torch_features(lite0: dict[str, Any]) -> dict[int, np.ndarray]:
    """Torch's features of the 16 images, in batches of 1 and of 16."""
    return {b: extract_features(lite0["paths"], lite0["backbone"], cache_dir=None, batch_size=b, progress=False)[0]
            for b in (1, 16)}


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_features_match_torch_within_tolerance(engine: str, lite0: dict[str, Any],
                                                      torch_features: dict[int, np.ndarray]) -> None:
    """At batch 1 and 16, on real images, every feature within TOLERANCE of the largest torch
    feature (measured: ONNX Runtime 4.8e-6 on features up to 4.1, 1.2e-6 of the scale)."""
    net = use_engine(lite0["backbone"], engine, lite0["cache"])
    assert net.engine == engine and net.export is not None and net.export.parent == lite0["cache"] / EXPORTS_DIR
    for batch, ref in torch_features.items():
        got, kept, failed = extract_features(lite0["paths"], net, cache_dir=None, batch_size=batch, progress=False)
        assert not failed and kept.tolist() == list(range(16)) and got.shape == ref.shape == (16, 1280)
        scale = np.abs(ref).max()
        diff = np.abs(got - ref).max()
        print(f"\n{engine}, batch {batch}: max |diff| {diff:.2e} on features up to {scale:.2f}")
        assert scale > 1.0
        assert diff <= TOLERANCE * scale


def test_each_engine_has_its_own_feature_cache(lite0: dict[str, Any], tmp_path: Path) -> None:
    """Features torch cached are not read by ONNX Runtime: its cache key names it, and its folder's
    meta.json records the engine and the export; a second run reads its own entries back."""
    torch_net = lite0["backbone"]
    ort_net = use_engine(torch_net, "onnxruntime", lite0["cache"])
    paths = lite0["paths"][:4]
    extract_features(paths, torch_net, cache_dir=tmp_path, batch_size=4, progress=False)
    assert ort_net.cache_key() == torch_net.cache_key() + "-onnxruntime"
    assert not (tmp_path / ort_net.cache_key()).exists()
    first = extract_features(paths, ort_net, cache_dir=tmp_path, batch_size=4, progress=False)[0]
    assert len(list((tmp_path / ort_net.cache_key()).rglob("*.npy"))) == 4
    meta = json.loads((tmp_path / ort_net.cache_key() / "meta.json").read_text())
    assert meta["engine"] == "onnxruntime" and meta["export"] == ort_net.export.name
    again = extract_features(paths, dataclasses.replace(ort_net, export=Path("/nonexistent.onnx")),
                             cache_dir=tmp_path, batch_size=4, progress=False)[0]
    assert np.array_equal(first, again)  # read from the cache: the export was not even opened


def _tiny(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1)).eval()


def test_export_is_made_once_and_again_when_it_no_longer_matches(tmp_path: Path) -> None:
    """The export is reused while its sidecar's digest and file hash match; a damaged file is
    exported again, and other weights make another file, which runs the new weights."""
    model = _tiny(0)
    path = onnx_export(model, 8, tmp_path, "tiny")
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert path.name.startswith("tiny-") and sidecar["settings"]["opset"] == 17
    stamp = path.stat().st_mtime_ns
    assert onnx_export(model, 8, tmp_path, "tiny") == path and path.stat().st_mtime_ns == stamp

    path.write_bytes(path.read_bytes()[:-16])  # damaged
    assert onnx_export(model, 8, tmp_path, "tiny") == path
    x = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(engine_runner("onnxruntime", path, 1)(x), model(x), atol=1e-5)

    with torch.no_grad():
        model[0].weight.add_(0.5)
    other = onnx_export(model, 8, tmp_path, "tiny")
    assert other != path and sorted(p.name for p in tmp_path.glob("*.onnx")) == sorted([path.name, other.name])
    with torch.no_grad():
        assert torch.allclose(engine_runner("onnxruntime", other, 2)(x), model(x), atol=1e-5)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temporaries left


def test_auto_takes_the_fastest_usable_engine_else_torch_with_one_line(
        lite0: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """auto is ONNX Runtime where it is installed; with no engine installed, or every engine over
    the tolerance, torch, and one INFO line says why."""
    assert use_engine(lite0["backbone"], "auto", lite0["cache"]).engine == "onnxruntime"
    caplog.set_level(logging.INFO, logger="dahash")
    monkeypatch.setattr(backbones, "installed", lambda engine: False)
    assert use_engine(lite0["backbone"], "auto", lite0["cache"]) is lite0["backbone"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("engine auto: torch (onnxruntime is not installed")
    with pytest.raises(DahashError, match=r"onnxruntime is not installed \(pip install 'dahash\[onnx\]'\)"):
        use_engine(lite0["backbone"], "onnxruntime", lite0["cache"])

    caplog.clear()
    monkeypatch.setattr(backbones, "installed", lambda engine: engine == "onnxruntime")
    monkeypatch.setattr(backbones, "check_engine", lambda *args: 10 * TOLERANCE)
    assert use_engine(lite0["backbone"], "auto", lite0["cache"]).engine == "torch"
    assert len(caplog.records) == 1 and "over the tolerance 1e-05" in caplog.records[0].getMessage()
    with pytest.raises(DahashError, match="differ from torch's by 0.0001 of their scale"):
        use_engine(lite0["backbone"], "onnxruntime", lite0["cache"])


def test_gpus_and_fine_tuning_stay_on_torch(lite0: dict[str, Any], tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """An engine named outright with a CUDA device, or with a fine-tuned backbone, is a ConfigError;
    auto is torch there without a word, and makes no export."""
    caplog.set_level(logging.INFO, logger="dahash")
    net = lite0["backbone"]
    with pytest.raises(ConfigError, match="runs on the CPU; on device cuda the backbone runs on torch"):
        use_engine(net, "onnxruntime", tmp_path, device="cuda")
    tuned = dataclasses.replace(net, weights_id=FINETUNED_WEIGHTS)
    with pytest.raises(ConfigError, match="a fine-tuned backbone runs on torch"):
        use_engine(tuned, "onnxruntime", tmp_path)
    assert use_engine(net, "auto", tmp_path, device="cuda") is net
    assert use_engine(tuned, "auto", tmp_path) is tuned
    assert not caplog.records and not (tmp_path / EXPORTS_DIR).exists()
    with pytest.raises(ConfigError, match="engine must be one of torch, onnxruntime, auto, got 'tensorrt'"):
        use_engine(net, "tensorrt", tmp_path)
    with pytest.raises(ConfigError, match="fine-tuning trains the backbone on torch"):
        TrainConfig(data_root="x", source="a", target="b", finetune=True, feature_norm="none",
                    engine="onnxruntime").validate()


def test_extract_cli_engine_flag(lite0: dict[str, Any], torch_features: dict[int, np.ndarray], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``dahash extract --engine onnxruntime`` of an image list writes ONNX Runtime's features
    (within the tolerance of torch's), cached under the engine's key, with the export reused."""
    from dahash.cli import main

    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{p} 0\n" for p in lite0["paths"]))
    # The export may have been made by an earlier test on this worker or not: make it here, so the
    # check that the CLI reuses it does not depend on which worker ran which test.
    ort_key = use_engine(lite0["backbone"], "onnxruntime", lite0["cache"]).cache_key()
    exports = sorted((lite0["cache"] / EXPORTS_DIR).glob("*.onnx"))
    assert len(exports) == 1
    assert main(["-q", "extract", "--domain", str(listing), "--out", str(tmp_path / "f.npz"), "--cache-dir",
                 str(lite0["cache"]), "--engine", "onnxruntime", "--quiet"]) == 0
    assert "16 images x 1280 features" in capsys.readouterr().out
    with np.load(tmp_path / "f.npz") as f:
        X = f["X"]
    ref = torch_features[16]
    assert np.abs(X - ref).max() <= TOLERANCE * np.abs(ref).max() and not np.array_equal(X, ref)
    assert sorted((lite0["cache"] / EXPORTS_DIR).glob("*.onnx")) == exports  # no new export
    assert len(list((lite0["cache"] / ort_key).rglob("*.npy"))) == 16


def test_a_missing_export_is_a_one_line_error(tmp_path: Path) -> None:
    """An export removed after it was checked fails with one line naming the file, not a traceback."""
    with pytest.raises(DahashError, match=r"gone\.onnx: onnxruntime cannot load the ONNX export \("):
        engine_runner("onnxruntime", tmp_path / "gone.onnx", 1)
