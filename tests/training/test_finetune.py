"""End-to-end fine-tuning on CPU: tiny generated image domains through EfficientNet-Lite0 and the DAH head."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dahash.cli import main
from dahash.training.config import TrainConfig
from dahash.errors import ConfigError
from dahash.runs.run import evaluate_run, run
from dahash.images.backbones import load_backbone
from dahash.training.finetune import AugmentedImages, _Slot, build_network, is_stochastic_depth
from dahash.training.optim import make_sgd, parameter_groups
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


def _accuracy_of_predictions(run_dir: Path) -> float:
    """Target accuracy (%) recounted from the run's predictions.csv (predicted against true, row by row)."""
    with open(run_dir / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["true"] for r in rows)
    return 100.0 * sum(r["predicted"] == r["true"] for r in rows) / len(rows)


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


def _batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _one_sgd_step(net: nn.Module) -> None:
    torch.manual_seed(0)
    optimizer = make_sgd(net, lr=0.1, momentum=0.0, weight_decay=0.0, bias_lr_factor=2.0)
    net.train()
    out = net(torch.randn(6, 3, 64, 64))
    optimizer.zero_grad()
    (out.u.square().sum() + sum(t.square().sum() for t in out.taps.values())).backward()
    optimizer.step()


def test_frozen_backbone_batchnorm_keeps_eval_mode_and_statistics_through_training() -> None:
    """The default (backbone_bn=frozen, no stochastic depth): net.train() leaves the backbone's
    BatchNorms and drop-connect in eval mode, so its features in training are the ones evaluation
    extracts; the BatchNorms' scale and shift still learn. The head's own BatchNorm trains."""
    torch.set_num_threads(1)  # restored by conftest; spinning threads on a shared CPU cost 20x here
    net = build_network(TrainConfig(bits=8, hidden=[16, 16]), load_backbone("efficientnet_lite0"))
    bns = _batchnorms(net.backbone)
    blocks = [m for m in net.backbone.modules() if is_stochastic_depth(m)]
    assert len(bns) == 49 and len(blocks) == 16  # EfficientNet-Lite0's BatchNorms and MBConv blocks
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    for _ in range(2):  # train() after eval() too: fit calls both
        net.train()
        assert net.training and net.head.training and net.head.bn.training and net.backbone.training
        assert not any(bn.training for bn in bns) and not any(b.training for b in blocks)
        net.eval()
        assert not any(m.training for m in net.modules())
    net.train()
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        train_features = net.backbone(x)
        torch.testing.assert_close(net.backbone(x), train_features, rtol=0, atol=0)  # no random dropping
        net.eval()
        torch.testing.assert_close(net.backbone(x), train_features, rtol=0, atol=0)  # = eval-mode features
    _one_sgd_step(net)
    after = net.backbone.state_dict()
    for name in before:
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            torch.testing.assert_close(after[name], before[name], rtol=0, atol=0, msg=name)
    assert not torch.equal(after["_bn0.weight"], before["_bn0.weight"])  # the affine parameters learn
    assert not torch.equal(after["_conv_stem.weight"], before["_conv_stem.weight"])


def test_batchnorm_train_mode_and_stochastic_depth_are_options() -> None:
    """backbone_bn=train with stochastic_depth: the earlier behaviour, batch statistics and drop-connect."""
    torch.set_num_threads(1)
    config = TrainConfig(bits=8, hidden=[16, 16], backbone_bn="train", stochastic_depth=True)
    net = build_network(config, load_backbone("efficientnet_lite0"))
    bns = _batchnorms(net.backbone)
    before = [bn.running_mean.clone() for bn in bns]
    net.train()
    assert all(bn.training for bn in bns) and all(m.training for m in net.backbone.modules())
    _one_sgd_step(net)
    assert all(not torch.equal(bn.running_mean, b) for bn, b in zip(bns, before))
    # Batch statistics alone, without drop-connect: the blocks leave train mode, their BatchNorms do not.
    net = build_network(TrainConfig(bits=8, hidden=[16, 16], backbone_bn="train"), load_backbone("efficientnet_lite0"))
    net.train()
    assert all(bn.training for bn in _batchnorms(net.backbone))
    assert not any(m.training for m in net.backbone.modules() if is_stochastic_depth(m))
    with pytest.raises(ConfigError, match="backbone_bn"):
        TrainConfig(backbone_bn="sync").validate()


def test_finetuning_with_a_still_backbone_is_the_frozen_feature_head(tree: Path, tmp_path: Path) -> None:
    """With the backbone's learning rate at 0 and no augmentation, fine-tuning must train the head that
    training on frozen cached features trains: the fix makes the backbone in train mode compute the
    features evaluation extracts. With batch statistics (the earlier default) it does not."""
    # Its own feature cache: the module's must hold no features (test_one_finetuning_step_...).
    frozen = run(_config(tree, tmp_path / "frozen", finetune=False, epochs=2, cache_dir=str(tmp_path / "cache")),
                 progress=False)
    still = dict(epochs=2, augment=False, pretrained_lr_mult=0.0)
    tuned = run(_config(tree, tmp_path / "tuned", **still), progress=False)
    old = run(_config(tree, tmp_path / "old", backbone_bn="train", stochastic_depth=True, **still), progress=False)
    heads = {name: torch.load(tmp_path / name / MODEL, weights_only=False)["model"] for name in ("frozen", "tuned", "old")}
    # Equal up to float rounding: the cached features come from the BatchNorm-folded copy of the backbone.
    for key, value in heads["frozen"].items():
        if value.dtype.is_floating_point:
            scale = float(value.abs().max()) or 1.0
            torch.testing.assert_close(heads["tuned"][key], value, rtol=1e-4, atol=1e-4 * scale, msg=key)
    gap = {name: float((heads[name]["fc6.weight"] - heads["frozen"]["fc6.weight"]).abs().max()) for name in ("tuned", "old")}
    assert gap["old"] > 100 * gap["tuned"], gap
    for key in ("source_accuracy", "target_accuracy", "map"):
        assert tuned[key] == pytest.approx(frozen[key], abs=1e-9), key
    assert old["target_accuracy"] == pytest.approx(_accuracy_of_predictions(tmp_path / "old"))


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
    assert metrics["target_accuracy"] == pytest.approx(_accuracy_of_predictions(tmp_path / "run"))
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


@pytest.mark.parametrize("modes", [{}, {"backbone_bn": "train", "stochastic_depth": True}, {"augment_on": "device"}],
                         ids=["frozen-bn", "train-bn", "augment-on-device"])
def test_interrupted_finetuning_resumes_to_the_uninterrupted_weights(tree: Path, tmp_path: Path, modes: dict,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    straight = _config(tree, tmp_path / "straight", epochs=2, **modes)
    run(straight, progress=False)

    import dahash.training.trainer as trainer

    real_save = trainer.save_torch

    def save_then_die(path, obj):
        real_save(path, obj)
        if obj.get("epoch") == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_torch", save_then_die)
    broken = _config(tree, tmp_path / "broken", epochs=2, **modes)
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


def test_two_processes_fine_tune_the_single_process_network(tree: Path, tmp_path: Path) -> None:
    """With the backbone's BatchNorms frozen and no stochastic depth, nothing in the backbone depends
    on how a batch is dealt to processes (the head's BatchNorm is batch-wide): torchrun over two
    gloo processes trains the network one process trains, up to float rounding."""
    from test_distributed import _torchrun
    from tiny_runs import free_port

    args = ["train", "--gamma", "5000", "--finetune", "--data-root", str(tree), "--source", "photos", "--target", "sketches",
            "--bits", "8", "--hidden", "16", "16", "--k", "2", "--epochs", "2", "--num-workers", "0", "--device", "cpu",
            "--extract-batch-size", "4", "--num-threads", "1", "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    done = _torchrun([*args, "--out", str(tmp_path / "two")], free_port())
    assert done.returncode == 0, done.stdout + done.stderr
    one, two = (torch.load(tmp_path / run / MODEL, weights_only=False) for run in ("one", "two"))
    for part in ("model", "backbone"):
        for name, value in one[part].items():
            scale = float(value.float().abs().max()) or 1.0
            torch.testing.assert_close(two[part][name].float(), value.float(), rtol=2e-4, atol=2e-4 * scale,
                                       msg=f"{part}.{name}")
