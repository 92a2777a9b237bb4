"""benchmarks/bow_features.py, the weak-feature set of issue 31: SIFT descriptors, a codebook without
labels, and histograms that count each image's descriptors per word."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from real_data import OFFICE_CALTECH  # tests/ is on sys.path (no __init__.py)

pytest.importorskip("cv2", reason="opencv-python-headless is not installed")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bow_features.py"
spec = importlib.util.spec_from_file_location("bow_features", SCRIPT)
bow = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bow)


def test_histograms_count_every_descriptor_and_the_codebook_is_seeded(tmp_path: Path) -> None:
    if not OFFICE_CALTECH.is_dir():
        pytest.skip(f"Office-Caltech-10 not found at {OFFICE_CALTECH}")
    paths, y, classes = bow.domain_images(OFFICE_CALTECH, "dslr")
    assert len(paths) == 157 and len(classes) == 10 and y.tolist() == sorted(y.tolist())
    picked = paths[::20]
    descriptors = [bow.sift_descriptors(p, max_side=200, max_keypoints=150) for p in picked]
    assert all(d.shape[1] == 128 and 0 < len(d) <= 150 and d.dtype == np.float32 for d in descriptors)
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((64, 64), 128, np.uint8))  # no gradient, no keypoint
    descriptors.append(bow.sift_descriptors(blank, max_side=200, max_keypoints=150))
    assert descriptors[-1].shape == (0, 128)

    codebook = bow.fit_codebook(descriptors, words=16, per_image=40, seed=0)
    X = bow.histograms(descriptors, codebook)
    assert X.shape == (len(picked) + 1, 16)
    # Raw counts: each image's histogram sums to its number of descriptors; the blank image is all zeros.
    assert X.sum(1).tolist() == [float(len(d)) for d in descriptors]
    assert not X[-1].any()
    again = bow.histograms(descriptors, bow.fit_codebook(descriptors, words=16, per_image=40, seed=0))
    np.testing.assert_array_equal(X, again)
    with pytest.raises(ValueError, match="descriptors for a codebook of 10000 words"):
        bow.fit_codebook(descriptors, words=10000, per_image=40, seed=0)
