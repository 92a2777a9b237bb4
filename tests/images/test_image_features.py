"""Image folders to a trained DAH run: the real Office-Caltech-10 data in ../shared."""

from pathlib import Path

import numpy as np
import pytest

from dahash.cli import main
from dahash.training.config import TrainConfig
from dahash.errors import ConfigError
from dahash.runs.run import run
from dahash.runs.data import load_domains
from real_data import OFFICE_CALTECH  # tests/ is on sys.path (no __init__.py)



def test_feature_files_and_image_domains_are_exclusive(tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        load_domains(TrainConfig(source_features="a.npz", target_features="b.npz", data_root=str(tmp_path),
                                 source="A", target="W"))
    with pytest.raises(ConfigError, match="--source and --target"):
        load_domains(TrainConfig(data_root=str(tmp_path), source="A"))


@pytest.mark.integration
@pytest.mark.skipif(not OFFICE_CALTECH.is_dir(), reason=f"Office-Caltech-10 not found at {OFFICE_CALTECH}")
def test_dslr_to_webcam_on_cached_features(tmp_path, monkeypatch):
    config = TrainConfig(data_root=str(OFFICE_CALTECH), source="D", target="W", bits=64, epochs=30,
                         cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "run"), num_threads=1)
    metrics = run(config, progress=False)
    assert metrics["n_source"] == 157 and metrics["n_target"] == 295
    assert metrics["target_accuracy"] > 80  # chance is 10 %
    assert metrics["map"] > 0.6
    # A second task on the same domains reads the cache: no image is decoded again.
    cached = sorted((tmp_path / "cache").rglob("*.npy"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("features were extracted again instead of read from the cache")

    monkeypatch.setattr("dahash.images.extract.ForkSafeLoader", no_decoding)
    config2 = TrainConfig(data_root=str(OFFICE_CALTECH), source="W", target="D", bits=16, epochs=1,
                          cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "run2"), num_threads=1)
    assert len(load_domains(config2, progress=False).source) == 295
    assert sorted((tmp_path / "cache").rglob("*.npy")) == cached
    # 'dahash encode' on new images (here: the webcam mugs) gives the codes the run gave them.
    out = tmp_path / "mugs.npz"
    assert main(["encode", "--run", config.out, "--images", str(OFFICE_CALTECH / "webcam" / "mug"),
                 "--out", str(out), "--quiet"]) == 0
    new, run_codes = np.load(out), np.load(tmp_path / "run" / "codes_target.npz")
    rows = [list(run_codes["ids"]).index("mug/" + Path(p).name) for p in new["ids"]]
    assert len(rows) == 27 and int(new["n_bits"]) == 64
    np.testing.assert_array_equal(new["codes"], run_codes["codes"][rows])


def test_encode_refuses_a_feature_trained_run(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in ("s", "t"):
        np.savez(tmp_path / f"{name}.npz", X=rng.normal(size=(40, 8)).astype(np.float32), y=np.arange(40) % 4)
    config = TrainConfig(source_features=str(tmp_path / "s.npz"), target_features=str(tmp_path / "t.npz"),
                         bits=8, hidden=[16, 16], epochs=1, out=str(tmp_path / "run"), num_threads=1)
    run(config, progress=False)
    assert main(["encode", "--run", config.out, "--images", str(tmp_path), "--out", str(tmp_path / "c.npz")]) == 2
    assert "trained on feature files" in capsys.readouterr().err


def test_extract_writes_the_feature_files_train_reads(tiny_office31: Path, tmp_path: Path, capsys) -> None:
    from dahash.data.features import load_features
    from dahash.images.backbones import load_backbone, use_engine
    from dahash.images.features import default_cache_dir, domain_features, open_domain

    for domain in ("amazon", "W"):
        assert main(["extract", "--data-root", str(tiny_office31), "--domain", domain, "--out",
                     str(tmp_path / f"{domain}.npz"), "--quiet"]) == 0
    assert "18 images x 1280 features (3 classes) written to" in capsys.readouterr().out
    saved = load_features(str(tmp_path / "W.npz"))
    # extract's default engine is auto: ONNX Runtime where installed, as here.
    net = use_engine(load_backbone("efficientnet_lite0"), "auto", default_cache_dir())
    assert net.engine == "onnxruntime"
    direct = domain_features(open_domain(str(tiny_office31), "webcam"), net, default_cache_dir(), progress=False)
    np.testing.assert_array_equal(saved.X, direct.X)
    assert saved.y.tolist() == direct.y.tolist() and list(saved.classes) == ["bike", "mug", "pen"]
    # The files train as the README's quick start says (a fixed gamma: this test is about the files).
    assert main(["train", "--source-features", str(tmp_path / "amazon.npz"), "--target-features",
                 str(tmp_path / "W.npz"), "--gamma", "10", "--epochs", "2", "--hidden", "8", "8", "--bits", "8",
                 "--k", "2", "--num-threads", "1", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert (tmp_path / "run" / "results.json").exists()
