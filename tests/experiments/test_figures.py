"""Figure 3 plots: valid, non-trivial PNGs; t-SNE restricted to the first classes; clear errors."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from dahash.experiments.figures import plot_a_distances, plot_tsne

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 300 and img.height > 200
        pixels = np.asarray(img.convert("L"))
    assert pixels.std() > 5  # something was drawn, not a blank canvas
    assert path.stat().st_size > 5_000
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_a_distance_bars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = {}
    real = plt.Axes.bar

    def spy(self, x, height, *args, **kwargs):
        drawn[kwargs.get("label")] = [float(h) for h in height]
        return real(self, x, height, *args, **kwargs)

    monkeypatch.setattr(plt.Axes, "bar", spy)
    values = {"A→W": {"Deep": 1.9, "DAN": 1.7, "DAH": 1.5}, "Ar→Cl": {"Deep": 1.8, "DAN": 1.6, "DAH": -0.02}}
    path = tmp_path / "adist.png"
    plot_a_distances(path, values, title="A-distance")
    assert drawn == {"Deep": [1.9, 1.8], "DAN": [1.7, 1.6], "DAH": [1.5, -0.02]}
    assert_png(path)


def test_a_distance_bars_need_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="values must hold at least one task"):
        plot_a_distances(tmp_path / "x.png", {})
    with pytest.raises(ValueError, match=r"values\['A→W'\] holds no feature kinds"):
        plot_a_distances(tmp_path / "x.png", {"A→W": {}})


def two_domains(n_classes: int = 12, per_class: int = 8, dim: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(n_classes, dim))
    ls = np.repeat(np.arange(n_classes), per_class)
    lt = np.repeat(np.arange(n_classes), per_class // 2)
    source = centres[ls] + rng.normal(size=(len(ls), dim))
    target = centres[lt] + 0.5 + rng.normal(size=(len(lt), dim))
    return source, ls, target, lt


def test_tsne_plots_the_first_classes_of_both_domains(tmp_path: Path) -> None:
    source, ls, target, lt = two_domains()
    classes = [f"class{i}" for i in range(12)]
    path = tmp_path / "tsne.png"
    emb_s, emb_t = plot_tsne(path, source, ls, target, lt, classes, max_classes=5, seed=0,
                             title="Deep", domain_names=("Art", "Clipart"))
    assert emb_s.shape == (5 * 8, 2) and emb_t.shape == (5 * 4, 2)
    assert np.isfinite(emb_s).all() and np.isfinite(emb_t).all()
    assert_png(path)


def test_tsne_is_seeded(tmp_path: Path) -> None:
    source, ls, target, lt = two_domains(n_classes=3)
    classes = ["a", "b", "c"]
    first = plot_tsne(tmp_path / "1.png", source, ls, target, lt, classes, seed=4)
    second = plot_tsne(tmp_path / "2.png", source, ls, target, lt, classes, seed=4)
    np.testing.assert_allclose(first[0], second[0])
    np.testing.assert_allclose(first[1], second[1])


def test_tsne_errors_name_the_argument(tmp_path: Path) -> None:
    source, ls, target, lt = two_domains(n_classes=3)
    classes = ["a", "b", "c"]
    path = tmp_path / "t.png"
    with pytest.raises(ValueError, match="max_classes must be an integer >= 1, got 0"):
        plot_tsne(path, source, ls, target, lt, classes, max_classes=0)
    with pytest.raises(ValueError, match="source has 64 columns, target has 63"):
        plot_tsne(path, source, ls, target[:, :63], lt, classes)
    with pytest.raises(ValueError, match="empty class selection: no target rows"):
        plot_tsne(path, source, ls, target, lt + 1, ["a", "b", "c", "d"], max_classes=1)
    with pytest.raises(ValueError, match=r"source_labels must be 1-D with one label per row"):
        plot_tsne(path, source, ls[:-1], target, lt, classes)
    with pytest.raises(ValueError, match=r"target_labels must be integer class indices in \[0, 3\)"):
        plot_tsne(path, source, ls, target, lt + 1, classes)
    assert not path.exists()


def test_tsne_of_a_collapsed_layer_puts_identical_rows_on_one_point(tmp_path: Path) -> None:
    """All-zero rows (dead ReLUs) used to crash scikit-learn's Barnes-Hut tree."""
    rng = np.random.default_rng(0)
    source = rng.normal(size=(30, 8))
    target = np.zeros((20, 8))
    labels_s, labels_t = np.arange(30) % 3, np.arange(20) % 3
    emb_s, emb_t = plot_tsne(tmp_path / "c.png", source, labels_s, target, labels_t, ["a", "b", "c"])
    assert np.ptp(emb_t, axis=0).max() == 0.0 and np.ptp(emb_s, axis=0).min() > 0
    emb_s, emb_t = plot_tsne(tmp_path / "d.png", np.zeros((5, 8)), labels_s[:5], target, labels_t, ["a", "b", "c"])
    assert not emb_s.any() and not emb_t.any()  # a single distinct point: nothing to embed
