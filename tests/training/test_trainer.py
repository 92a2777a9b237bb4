"""End-to-end tests of training: artifacts, determinism, learning, exact resume, atomic checkpoints.

All runs use tiny synthetic Gaussian class clusters (a shifted copy is the target domain)
and one torch thread, so a run takes well under a second of training.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dahash.cli import main
from dahash.training.config import TrainConfig
from dahash.errors import ConfigError, DahashError
from dahash.runs.run import evaluate_model, run
from dahash.training.trainer import CHECKPOINT, MODEL, build_model, checkpoint_epoch, train_model
from dahash.runs.data import load_domains

N_CLASSES = 4



def _make_task(directory: Path, n_per_class: int, dim: int = 16, sep: float = 3.0, shift: float = 0.5,
               seed: int = 0) -> tuple[Path, Path]:
    """Gaussian class clusters; the target domain is the same clusters shifted by ``shift``."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(N_CLASSES, dim)) * sep
    paths = []
    for name, offset in (("source", 0.0), ("target", shift)):
        y = np.repeat(np.arange(N_CLASSES), n_per_class)
        X = means[y] + rng.normal(size=(len(y), dim)) + offset
        order = rng.permutation(len(y))
        path = directory / f"{name}.npz"
        np.savez(path, X=X[order].astype(np.float32), y=y[order],
                 classes=np.array(["ant", "bee", "cat", "dog"]))
        paths.append(path)
    return paths[0], paths[1]


def _config(source: Path, target: Path, out: Path | None, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = dict(source_features=str(source), target_features=str(target),
                                  out=str(out) if out else None, bits=16, hidden=[32, 32], k=5, epochs=5,
                                  lr_start=1e-2, lr_end=1e-3, feature_norm="standardize", num_threads=1)
    values.update(overrides)
    return TrainConfig(**values).validate()


def _without_time(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "train_seconds"}


def _assert_same(a: Any, b: Any, path: str = "metrics") -> None:
    """Nested equality of JSON values, floats to 1e-6."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, set(a) ^ set(b))
        for key in a:
            _assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert b == pytest.approx(a, abs=1e-6, rel=0), path
    else:
        assert a == b, path


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def _history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _make_task(tmp_path_factory.mktemp("task"), n_per_class=50)


@pytest.fixture(scope="module")
def finished(task: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One complete 5-epoch run (seed 0), shared by the read-only tests below."""
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("finished") / "run"
    metrics = run(_config(*task, out), progress=False)
    torch.set_num_threads(threads)
    return out, metrics


# ----------------------------------------------------------------------------- one run


def test_run_writes_every_artifact(finished: tuple[Path, dict]) -> None:
    out, metrics = finished
    for name in ("config.yaml", "results.json", "results.csv", "pr_curve.png", "codes_target.npz",
                 "codes_source.npz", "predictions.csv", "history.csv", CHECKPOINT, MODEL):
        assert (out / name).is_file(), name
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]

    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"config", "metrics"}
    assert results["config"]["bits"] == 16 and results["config"]["hidden"] == [32, 32]
    m = results["metrics"]
    _assert_same(_without_time(m), _without_time(metrics))
    assert m["train_seconds"] == pytest.approx(metrics["train_seconds"])
    assert (m["n_source"], m["n_target"], m["n_classes"], m["bits"]) == (200, 200, 4, 16)
    for key in ("target_accuracy", "target_accuracy_codes", "source_accuracy"):
        assert 0.0 <= m[key] <= 100.0
    # An easy task (chance is 25 %): far above chance, in percent.
    assert m["target_accuracy"] > 80.0
    assert m["target_accuracy_codes"] > 80.0
    assert 0.7 < m["map"] <= 1.0 and 0.0 <= m["map_target_within"] <= 1.0
    assert 0.0 <= m["precision_at_100"] <= 1.0
    precision, recall = m["pr_curve"]["precision"], m["pr_curve"]["recall"]
    assert len(precision) == len(recall) == 17  # Hamming radii 0..16
    assert recall[-1] == pytest.approx(1.0)
    assert all(r is None or 0.0 <= r <= 1.0 for r in recall)

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 2 and "pr_curve" not in rows[0]
    row = dict(zip(*rows))
    assert float(row["target_accuracy"]) == pytest.approx(m["target_accuracy"])
    assert float(row["map"]) == pytest.approx(m["map"])

    assert (out / "pr_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with np.load(out / "codes_target.npz", allow_pickle=False) as codes:
        assert codes["codes"].dtype == np.uint8 and codes["codes"].shape == (200, 16 // 8)
        assert int(codes["n_bits"]) == 16
        assert codes["ids"].shape == (200,) and codes["ids"][0].startswith("target:")
        assert codes["labels"].shape == (200,)
        np.testing.assert_array_equal(codes["classes"], ["ant", "bee", "cat", "dog"])

    with open(out / "predictions.csv", newline="") as f:
        preds = list(csv.DictReader(f))
    assert len(preds) == 200
    assert set(preds[0]) == {"id", "predicted", "probability", "predicted_codes", "true"}
    correct = sum(p["predicted"] == p["true"] for p in preds)
    assert correct / 2 == pytest.approx(m["target_accuracy"])
    assert all(0.0 <= float(p["probability"]) <= 1.0 for p in preds)

    history = _history(out / "history.csv")
    assert [int(h["epoch"]) for h in history] == [1, 2, 3, 4, 5]
    assert float(history[0]["lr"]) == pytest.approx(1e-2)
    assert float(history[-1]["lr"]) == pytest.approx(1e-3)
    assert all(math.isfinite(float(h["total"])) for h in history)
    # Training lowers the supervised hash loss (the total is dominated by the linear-time
    # MMD estimate, which is noisy and can be negative, so it is not monotone).
    hash_loss = [float(h["hash"]) for h in history]
    assert hash_loss[-1] < 0.9 * hash_loss[0]

    ckpt = torch.load(out / CHECKPOINT, weights_only=False)
    assert ckpt["epoch"] == 5 and len(ckpt["history"]) == 5


def test_same_seed_same_metrics_other_seed_other_weights(task: tuple[Path, Path], finished: tuple[Path, dict],
                                                         tmp_path: Path) -> None:
    out, metrics = finished
    again = run(_config(*task, tmp_path / "again"), progress=False)
    assert _without_time(again) == _without_time(metrics)
    _assert_same_weights(_state(out / MODEL), _state(tmp_path / "again" / MODEL))
    assert (tmp_path / "again" / "codes_target.npz").read_bytes() == (out / "codes_target.npz").read_bytes()

    run(_config(*task, tmp_path / "seed1", seed=1), progress=False)
    a, b = _state(out / MODEL), _state(tmp_path / "seed1" / MODEL)
    assert not torch.allclose(a["fc6.weight"], b["fc6.weight"])
    assert not torch.allclose(a["fc8.weight"], b["fc8.weight"])


def test_training_improves_over_the_untrained_model(task: tuple[Path, Path], finished: tuple[Path, dict]) -> None:
    _, trained = finished
    config = _config(*task, None)
    domains = load_domains(config)
    torch.manual_seed(config.seed)  # the trainer's initialisation
    untrained = evaluate_model(build_model(config, domains.source.X.shape[1]), config, domains)
    assert untrained["target_accuracy"] < 60.0
    assert trained["target_accuracy"] > untrained["target_accuracy"] + 30.0
    # Random projections already keep much of the cluster structure in Hamming space (mAP
    # about 0.8 here); training still improves it (to about 0.96).
    assert trained["map"] > untrained["map"]


def test_evaluate_command_reproduces_the_run(finished: tuple[Path, dict], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "copy"
    shutil.copytree(finished[0], out)
    before = json.loads((out / "results.json").read_text())
    (out / "pr_curve.png").unlink()
    (out / "codes_target.npz").unlink()
    assert main(["evaluate", "--run", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    after = json.loads((out / "results.json").read_text())
    _assert_same(after, before)  # identical metrics, train_seconds included
    assert after["metrics"]["train_seconds"] == before["metrics"]["train_seconds"]
    assert printed["train_seconds"] == before["metrics"]["train_seconds"]
    _assert_same(printed, {k: v for k, v in before["metrics"].items() if k != "pr_curve"})
    assert (out / "pr_curve.png").is_file() and (out / "codes_target.npz").is_file()


def test_refused_restart_leaves_the_run_untouched(task: tuple[Path, Path], finished: tuple[Path, dict],
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "copy"
    shutil.copytree(finished[0], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    args = ["train", "--gamma", "5000", "--source-features", str(task[0]), "--target-features", str(task[1]), "--out", str(out),
            "--bits", "16", "--hidden", "32", "32", "--k", "5", "--epochs", "5", "--lr-start", "1e-2",
            "--lr-end", "1e-3", "--feature-norm", "standardize", "--num-threads", "1", "--quiet"]
    assert main(args) == 1  # a runtime error: the folder holds a run
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0]
    assert main([*args, "--resume", "--bits", "32", "--eta", "0"]) == 2  # a usage error: settings given
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("settings differ from the checkpoint's: bits, eta")
    # Neither refusal rewrote anything, config.yaml included.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_write_is_atomic(task: tuple[Path, Path], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash while writing epoch 2's checkpoint leaves epoch 1's intact and no temp file."""
    out = tmp_path / "run"
    config = _config(*task, out, epochs=3)
    domains = load_domains(config)
    real_save = torch.save
    calls: list[Path] = []
    snapshot: dict[str, bytes] = {}

    def flaky_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(Path(f))
        if len(calls) == 2:
            snapshot["before"] = (out / CHECKPOINT).read_bytes()
            Path(f).write_bytes(b"torn half-written checkpoint")
            raise OSError("disk full")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", flaky_save)
    with pytest.raises(OSError, match="disk full"):
        train_model(config, domains, progress=False)
    monkeypatch.undo()

    assert len(calls) == 2
    assert all(p.parent == out and p.name != CHECKPOINT for p in calls)  # written beside, under a temp name
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT]          # the temp file is gone
    assert (out / CHECKPOINT).read_bytes() == snapshot["before"]
    assert torch.load(out / CHECKPOINT, weights_only=False)["epoch"] == 1

    # The surviving checkpoint resumes to exactly the uninterrupted result.
    resumed = train_model(config, load_domains(config), resume=True, progress=False)
    straight = train_model(_config(*task, None, epochs=3), load_domains(config), progress=False)
    _assert_same_weights(resumed.state_dict(), straight.state_dict())
    assert torch.load(out / CHECKPOINT, weights_only=False)["epoch"] == 3


def test_absurd_learning_rate_fails_with_a_loss_error(task: tuple[Path, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """lr_start=1e6: the first update blows the weights up and the second step's loss is NaN.

    Observed behaviour: training stops at epoch 1, step 2 with a DahashError naming the loss
    value and its terms and suggesting a lower lr_start; no checkpoint or model is written.
    """
    out = tmp_path / "run"
    config = _config(*task, out, lr_start=1e6, lr_end=1e6)
    with pytest.raises(DahashError, match=r"loss became nan at epoch 1, step \d+ .*lower lr_start") as info:
        train_model(config, load_domains(config), progress=False)
    assert "'mmd'" in str(info.value) and "\n" not in str(info.value)
    assert not (out / CHECKPOINT).exists() and not (out / MODEL).exists()
    # Through the command line it is a one-line error with exit status 2.
    code = main(["train", "--gamma", "5000", "--source-features", str(task[0]), "--target-features", str(task[1]),
                 "--out", str(tmp_path / "cli"), "--lr-start", "1e6", "--lr-end", "1e6", "--bits", "16",
                 "--hidden", "32", "32", "--num-threads", "1", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "loss became nan" in err[0]  # a runtime error


# ----------------------------------------------------------------------------- kill and resume

RESUME_EPOCHS = 16


def _train_cmd(source: Path, target: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dahash", "train", "--gamma", "5000", "--source-features", str(source),
            "--target-features", str(target), "--out", str(out), "--epochs", str(RESUME_EPOCHS),
            "--bits", "16", "--hidden", "128", "128", "--k", "5", "--lr-start", "1e-2", "--lr-end", "1e-3",
            "--feature-norm", "standardize", "--bank-per-class", "50", "--num-threads", "1", "--quiet", *extra]


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL a training process after its second checkpoint; --resume must finish it with
    exactly the metrics, weights, codes and loss history of a run that was never interrupted."""
    source, target = _make_task(tmp_path, n_per_class=100, dim=16)  # 20 batches per epoch
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    straight_dir, victim_dir = tmp_path / "straight", tmp_path / "victim"
    straight = subprocess.Popen(_train_cmd(source, target, straight_dir), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim = subprocess.Popen(_train_cmd(source, target, victim_dir), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert victim.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "no checkpoint of epoch 2 appeared"
            epoch = checkpoint_epoch(victim_dir / CHECKPOINT)
            if epoch is not None and epoch >= 2:
                os.kill(victim.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
        assert victim.wait(timeout=60) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()

    # It really died midway: a valid checkpoint short of the end, no results.
    killed = torch.load(victim_dir / CHECKPOINT, weights_only=False)
    assert 2 <= killed["epoch"] < RESUME_EPOCHS
    assert not (victim_dir / "results.json").exists() and not (victim_dir / MODEL).exists()

    # Restarting without --resume is refused, in one line, and touches nothing.
    config_before = (victim_dir / "config.yaml").read_text()
    code = main(_train_cmd(source, target, victim_dir)[3:])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "already holds a run" in err[0] and "--resume" in err[0]
    # Resuming with a changed setting is refused, naming it.
    code = main(_train_cmd(source, target, victim_dir, "--resume", "--bits", "32")[3:])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "cannot resume" in err[0] and err[0].endswith(": bits")
    assert (victim_dir / "config.yaml").read_text() == config_before
    assert torch.load(victim_dir / CHECKPOINT, weights_only=False)["epoch"] == killed["epoch"]

    # --out and --resume are enough: the run's saved config.yaml holds its other settings.
    resumed = subprocess.run([sys.executable, "-m", "dahash", "train", "--out", str(victim_dir), "--resume"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed at epoch {killed['epoch']} of {RESUME_EPOCHS} ({victim_dir / CHECKPOINT})" in resumed.stderr
    _, straight_err = straight.communicate(timeout=300)
    assert straight.returncode == 0, straight_err

    done = json.loads((victim_dir / "results.json").read_text())
    reference = json.loads((straight_dir / "results.json").read_text())
    _assert_same(_without_time(done["metrics"]), _without_time(reference["metrics"]))
    assert done["metrics"]["target_accuracy"] > 80.0
    _assert_same_weights(_state(victim_dir / MODEL), _state(straight_dir / MODEL))
    for name in ("codes_target.npz", "codes_source.npz", "predictions.csv"):
        assert (victim_dir / name).read_bytes() == (straight_dir / name).read_bytes(), name

    history, ref_history = _history(victim_dir / "history.csv"), _history(straight_dir / "history.csv")
    assert [int(h["epoch"]) for h in history] == list(range(1, RESUME_EPOCHS + 1))
    for row, ref in zip(history, ref_history):
        for key in ("lr", "total", "hash", "quantization", "mmd", "entropy"):
            assert float(row[key]) == pytest.approx(float(ref[key]), rel=1e-6, abs=1e-9), (row["epoch"], key)
    # The epochs before the kill were carried over from the checkpoint, not trained again.
    for row, old in zip(history, killed["history"]):
        assert float(row["seconds"]) == old["seconds"]


def test_head_starts_from_pretrained_fc_layers() -> None:
    """AlexNet/VGG: the head's fc6/fc7 are the pretrained ones, at their widths and the pretrained multiplier."""
    torch.manual_seed(0)
    fc6, fc7 = torch.nn.Linear(12, 10), torch.nn.Linear(10, 9)
    config = TrainConfig(bits=8, hidden=[1024, 1024], pretrained_lr_mult=0.1)
    head = build_model(config, 12, (fc6, fc7))
    assert (head.fc6.out_features, head.fc7.out_features) == (10, 9)
    torch.testing.assert_close(head.fc6.weight, fc6.weight)
    torch.testing.assert_close(head.fc7.bias, fc7.bias)
    assert head.fc6.weight is not fc6.weight  # copies: training the head leaves the backbone's layers alone
    assert (head.fc6.lr_mult, head.fc7.lr_mult, head.fc8.lr_mult) == (0.1, 0.1, 1.0)
    with pytest.raises(ConfigError, match="does not fit"):
        build_model(config, 13, (fc6, fc7))


def test_batch_mean_gradient_divides_the_step_by_the_batch_size(tmp_path: Path) -> None:
    """MatConvNet's cnn_train divides the summed loss's derivatives by the batch size: one plain
    SGD step (no momentum, no decay) with the option moves every weight 1/B as far as without."""
    source, target = _make_task(tmp_path, n_per_class=5)
    # One batch of 4 classes * 5 * 2 = 40; a large rate keeps the steps far above float32 rounding of the weights.
    common = dict(epochs=1, lr_start=0.5, lr_end=0.5, momentum=0.0, weight_decay=0.0)
    torch.manual_seed(0)
    start = build_model(_config(source, target, None, **common), 16).state_dict()
    steps = {}
    for flag in (True, False):
        config = _config(source, target, None, batch_mean_gradient=flag, **common)
        model = train_model(config, load_domains(config), progress=False)
        steps[flag] = {k: v - start[k] for k, v in model.state_dict().items() if k in dict(model.named_parameters())}
    assert any(float(d.abs().max()) > 0 for d in steps[False].values())
    for name, delta in steps[False].items():
        # Relative to the largest move of the tensor: fc8's bias has a zero gradient under BatchNorm.
        error = float((steps[True][name] * 40 - delta).abs().max())
        assert error <= 1e-5 * float(delta.abs().max()) + 1e-3, (name, error)


def test_device_selection_and_mixed_precision_policy() -> None:
    from dahash.training.trainer import autocast_dtype, resolve_device
    from dahash.runs.data import extraction_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    # A run trained on a GPU is evaluated anywhere: its features then come from the CPU.
    assert extraction_device("cuda").type == expected and extraction_device("auto").type == expected
    assert extraction_device("cpu") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert autocast_dtype(torch.device("cpu"), amp=True) is None  # CPU trains in float32
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
    else:
        assert autocast_dtype(torch.device("cuda"), amp=False) is None
        assert autocast_dtype(torch.device("cuda"), amp=True) in (torch.bfloat16, torch.float16)


def test_compiled_training_matches_eager(task: tuple[Path, Path], tmp_path: Path) -> None:
    """--compile trains through torch.compile (inductor: about 20 s of compiling on CPU) and ends
    with the eager run's weights to float rounding; a run may be resumed with or without it."""
    source, target = task
    models = {}
    for flag in (False, True):
        config = _config(source, target, tmp_path / str(flag), epochs=2, lr_start=1e-3, lr_end=1e-4, compile=flag)
        models[flag] = train_model(config, load_domains(config), progress=False).state_dict()
    for name, value in models[False].items():
        scale = float(value.float().abs().max()) or 1.0
        torch.testing.assert_close(models[True][name].float(), value.float(), rtol=1e-4, atol=1e-4 * scale, msg=name)
    config = _config(source, target, tmp_path / "True", epochs=2, lr_start=1e-3, lr_end=1e-4, compile=False)
    train_model(config, load_domains(config), resume=True, progress=False)  # not refused


def test_settings_differ_fills_settings_older_runs_lacked_with_what_they_did():
    from dahash.training.trainer import settings_differ

    now = TrainConfig().to_dict()
    old = {k: v for k, v in now.items() if k not in ("backbone_bn", "stochastic_depth")}
    # A head on cached features: the fine-tuning settings do not apply, the run is the same.
    assert settings_differ(old, now) == []
    # A fine-tuned run from before the settings existed trained BatchNorm and kept stochastic depth.
    old_ft, now_ft = {**old, "finetune": True}, {**now, "finetune": True}
    assert settings_differ(old_ft, now_ft) == ["backbone_bn", "stochastic_depth"]
    assert settings_differ(old_ft, {**now_ft, "backbone_bn": "train", "stochastic_depth": True}) == []
    assert settings_differ(now, {**now, "gamma": 1.0}) == ["gamma"]


def test_settings_differ_ignores_the_mmd_settings_of_runs_without_the_mmd():
    from dahash.training.trainer import settings_differ

    now = TrainConfig().to_dict()
    assert settings_differ({**now, "gamma": 0.0, "mmd_estimator": "authors"}, {**now, "gamma": 0.0}) == []
    assert settings_differ({**now, "mmd_estimator": "authors"}, now) == ["mmd_estimator"]
    # A run saved before the setting existed used the authors' estimate.
    old = {k: v for k, v in now.items() if k != "mmd_estimator"}
    assert settings_differ(old, now) == ["mmd_estimator"]
    assert settings_differ(old, {**now, "mmd_estimator": "authors"}) == []


def test_decode_is_compared_only_for_image_runs_and_was_exact_before():
    from dahash.training.trainer import settings_differ

    now = TrainConfig().to_dict()
    old = {k: v for k, v in now.items() if k != "decode"}
    assert now["decode"] == "reduced" and settings_differ(old, now) == []  # feature files: no image decoded
    images = {"data_root": "/data", "source": "amazon", "target": "webcam"}
    assert settings_differ({**old, **images}, {**now, **images}) == ["decode"]
    assert settings_differ({**old, **images}, {**now, **images, "decode": "exact"}) == []
    # A run's saved config read back: what it lacks is what the version that wrote it did.
    assert TrainConfig.from_saved(old).decode == "exact" and TrainConfig.from_dict(old).decode == "reduced"


def test_a_run_saved_before_decode_existed_resumes_and_encodes_as_it_was_trained(
        tiny_office31: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dahash.runs.loading import load_image_run
    from tiny_runs import tiny_train_args

    out = tmp_path / "run"
    args = tiny_train_args(tiny_office31, tmp_path / "cache", out)
    assert main([*args, "--decode", "exact"]) == 0
    # What dahash wrote before the setting existed: no decode in config.yaml, the checkpoint or model.pt.
    saved = (out / "config.yaml").read_text()
    (out / "config.yaml").write_text("".join(l for l in saved.splitlines(True) if not l.startswith("decode:")))
    for name in (CHECKPOINT, MODEL):
        state = torch.load(out / name, weights_only=False)
        del state["config"]["decode"]
        torch.save(state, out / name)
    assert load_image_run(out).backbone.preprocessing.decode == "exact"
    (out / "results.json").unlink()
    capsys.readouterr()
    # A run interrupted after its last checkpoint: resumed, it only writes its results.
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    assert "resumed at epoch 2 of 2" in capsys.readouterr().err
    assert TrainConfig.from_dict(json.loads((out / "results.json").read_text())["config"]).decode == "exact"
