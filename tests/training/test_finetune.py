"""End-to-end fine-tuning on CPU: tiny generated image domains through EfficientNet-Lite0 and the DAH head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dahash.cli import main
from dahash.config import TrainConfig
from dahash.errors import ConfigError
from dahash.evaluate import evaluate_run, run
from dahash.images.backbones import load_backbone
from dahash.training.finetune import AugmentedImages, _Slot, build_network
from dahash.training.optim import parameter_groups
from dahash.training.trainer import MODEL


def _tree(root: Path) -> None:
    """Two domains of two classes, two tiny images each (Office-Home clipart can be 18x18)."""
    rng = np.random.default_rng(0)
    for d, domain in enumerate(("photos", "sketches")):
        for c, cls in enumerate(("cat", "dog")):
            folder = root / domain / cls
            folder.mkdir(parents=True)
            for i in range(2):
                base = np.full((18, 22, 3), 60 + 120 * c, np.uint8)
                noise = rng.integers(0, 40 + 30 * d, size=base.shape, dtype=np.uint8)
                Image.fromarray(base + noise).save(folder / f"{i}.png")


def _config(root: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(data_root=str(root), source="photos", target="sketches", finetune=True, bits=8, hidden=[16, 16],
                  k=2, epochs=1, num_workers=0, device="cpu", extract_batch_size=4, out=str(out), num_threads=1,
                  cache_dir=str(root / "cache"))
    values.update(overrides)
    return TrainConfig(**values).validate()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    _tree(root)
    return root


def test_backbone_learns_at_the_pretrained_multipliers() -> None:
    config = TrainConfig(bits=8, hidden=[16, 16])
    backbone = load_backbone("efficientnet_lite0")
    net = build_network(config, backbone)
    groups = parameter_groups(net, weight_decay=5e-4, bias_lr_factor=2.0)
    mult = {id(p): g["lr_mult"] for g in groups for p in g["params"]}
    stem = net.backbone._conv_stem.weight
    assert mult[id(stem)] == pytest.approx(0.1)
    assert mult[id(net.backbone._bn0.bias)] == pytest.approx(0.2)
    assert mult[id(net.head.fc8.weight)] == pytest.approx(1.0)
    assert mult[id(net.head.fc8.bias)] == pytest.approx(2.0)
    assert mult[id(net.head.bn.weight)] == pytest.approx(1.0)
    assert len(mult) == sum(1 for _ in net.parameters())


def test_augmentation_is_a_function_of_seed_epoch_and_slot(tree: Path) -> None:
    backbone = load_backbone("efficientnet_lite0")
    paths = sorted((tree / "photos").rglob("*.png"))
    images = AugmentedImages(paths, backbone.preprocessing, seed=3)
    a = images[_Slot(epoch=1, slot=5, index=0)]
    assert a.shape == (3, 224, 224)
    torch.testing.assert_close(images[_Slot(1, 5, 0)], a, rtol=0, atol=0)
    assert not torch.equal(images[_Slot(1, 6, 0)], a)
    assert not torch.equal(images[_Slot(2, 5, 0)], a)
    plain = AugmentedImages(paths, backbone.preprocessing, seed=3, augment=False)
    torch.testing.assert_close(plain[_Slot(1, 5, 0)], plain[_Slot(2, 9, 0)], rtol=0, atol=0)


def test_one_finetuning_step_trains_backbone_and_head(tree: Path, tmp_path: Path) -> None:
    config = _config(tree, tmp_path / "run")
    metrics = run(config, progress=False)
    assert metrics["n_source"] == 4 and metrics["n_target"] == 4
    assert 0 <= metrics["target_accuracy"] <= 100
    state = torch.load(tmp_path / "run" / MODEL, weights_only=False)
    pretrained = load_backbone("efficientnet_lite0").model.state_dict()
    moved = [k for k, v in state["backbone"].items() if v.dtype.is_floating_point and not torch.equal(v, pretrained[k])]
    assert "_conv_stem.weight" in moved  # the step reached the first convolution
    # The fine-tuned features are never cached: the cache holds pretrained features only.
    assert not list((tree / "cache").rglob("*.npy"))
    # 'evaluate' and 'encode' go through the fine-tuned backbone, not the pretrained one.
    again = evaluate_run(tmp_path / "run")
    assert again["target_accuracy"] == metrics["target_accuracy"] and again["map"] == metrics["map"]
    out = tmp_path / "codes.npz"
    assert main(["encode", "--run", str(tmp_path / "run"), "--images", str(tree / "sketches"), "--out", str(out),
                 "--quiet"]) == 0
    new, saved = np.load(out), np.load(tmp_path / "run" / "codes_target.npz")
    order = [list(saved["ids"]).index(str(Path(p).relative_to(tree / "sketches").as_posix())) for p in new["ids"]]
    np.testing.assert_array_equal(new["codes"], saved["codes"][order])


def test_interrupted_finetuning_resumes_to_the_uninterrupted_weights(tree: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    straight = _config(tree, tmp_path / "straight", epochs=2)
    run(straight, progress=False)

    import dahash.training.trainer as trainer

    real_save = trainer.save_torch

    def save_then_die(path, obj):
        real_save(path, obj)
        if obj.get("epoch") == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_torch", save_then_die)
    broken = _config(tree, tmp_path / "broken", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        run(broken, progress=False)
    monkeypatch.setattr(trainer, "save_torch", real_save)
    run(broken, resume=True, progress=False)
    a = torch.load(tmp_path / "straight" / MODEL, weights_only=False)
    b = torch.load(tmp_path / "broken" / MODEL, weights_only=False)
    for part in ("model", "backbone"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, rtol=0, atol=0, msg=f"{part}.{key} differs")


def test_finetune_needs_images_and_no_feature_normalisation(tree: Path) -> None:
    with pytest.raises(ConfigError, match="feature_norm must be none"):
        TrainConfig(data_root=str(tree), source="photos", target="sketches", finetune=True,
                    feature_norm="standardize").validate()
    with pytest.raises(ConfigError, match="not feature files"):
        TrainConfig(source_features="a.npz", target_features="b.npz", finetune=True).validate()
