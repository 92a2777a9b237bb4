"""Image folders to a trained DAH run: the real Office-Caltech-10 data in ../shared."""

from pathlib import Path

import pytest

from dahash.config import TrainConfig
from dahash.errors import ConfigError
from dahash.evaluate import run
from dahash.training.trainer import load_domains

OFFICE_CALTECH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "office_caltech_10"


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

    monkeypatch.setattr("dahash.images.extract.DataLoader", no_decoding)
    config2 = TrainConfig(data_root=str(OFFICE_CALTECH), source="W", target="D", bits=16, epochs=1,
                          cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "run2"), num_threads=1)
    assert len(load_domains(config2, progress=False).source) == 295
    assert sorted((tmp_path / "cache").rglob("*.npy")) == cached
