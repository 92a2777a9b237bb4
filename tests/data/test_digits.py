"""Tests of the offline printed-vs-handwritten digit domains in dahash.data.digits."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from dahash.data import digits
from dahash.data.digits import (
    available_fonts,
    load_handwritten_digits,
    render_font_digits,
    save_digit_grid,
)
from dahash.errors import ConfigError

N_PER_CLASS = 60


@pytest.fixture(scope="module")
def fonts() -> list[Path]:
    return available_fonts()


@pytest.fixture(scope="module")
def rendered(fonts: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    return render_font_digits(N_PER_CLASS, seed=0, fonts=fonts)


def test_rendered_shapes_dtypes_and_range(rendered: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = rendered
    assert X.shape == (10 * N_PER_CLASS, 64) and X.dtype == np.float32
    assert y.shape == (10 * N_PER_CLASS,) and y.dtype == np.int64
    assert X.min() >= 0 and X.max() <= 16
    assert np.array_equal(X, np.round(X))  # block counts are whole pixel counts
    assert (X.sum(axis=1) > 0).all()


def test_each_class_present_n_per_class_times(rendered: tuple[np.ndarray, np.ndarray]) -> None:
    _, y = rendered
    assert np.array_equal(np.bincount(y, minlength=10), np.full(10, N_PER_CLASS))


def test_same_seed_is_deterministic(fonts: list[Path], rendered: tuple[np.ndarray, np.ndarray]) -> None:
    X2, y2 = render_font_digits(N_PER_CLASS, seed=0, fonts=fonts)
    assert np.array_equal(rendered[0], X2) and np.array_equal(rendered[1], y2)


def test_different_seeds_differ(fonts: list[Path], rendered: tuple[np.ndarray, np.ndarray]) -> None:
    X2, _ = render_font_digits(N_PER_CLASS, seed=1, fonts=fonts)
    assert not np.array_equal(rendered[0], X2)


def test_fonts_ship_with_matplotlib_and_skip_symbol_fonts(fonts: list[Path]) -> None:
    assert len(fonts) > 0
    ttf_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    assert all(f.parent == ttf_dir and f.suffix == ".ttf" for f in fonts)
    names = {f.name for f in fonts}
    # These map ASCII digits to no glyph or to math symbols/brackets/placeholder boxes.
    symbol_fonts = {
        "DejaVuSansDisplay.ttf",
        "STIXSizFiveSymReg.ttf",
        "cmsy10.ttf",
        "cmex10.ttf",
        "LastResortHE-Regular.ttf",
    }
    assert not names & symbol_fonts


def test_every_font_renders_ten_distinct_non_blank_digits(fonts: list[Path]) -> None:
    for font in fonts:
        X, y = render_font_digits(1, seed=0, fonts=[font], jitter=False)
        assert sorted(y.tolist()) == list(range(10)), font.name
        assert (X.sum(axis=1) > 0).all(), font.name
        assert len(np.unique(X, axis=0)) == 10, font.name


def test_rendered_digits_fill_the_nist_box_like_the_handwritten_ones(
    rendered: tuple[np.ndarray, np.ndarray],
) -> None:
    # NIST norm_2nd_gen stretches the character to 20x32 centred in 32x32: every block row is
    # inked, block column 0 (pixels 0..3) is left blank unless the slant correction shifts ink there.
    images = rendered[0].reshape(-1, 8, 8)
    assert (images.sum(axis=2) > 0).all()
    assert (images[:, :, 0] > 0).mean() < 0.05
    ink = rendered[0].sum(axis=1)  # stroke-width normalisation keeps most inside 256..412 pixels
    assert 256 <= np.median(ink) <= 412


def test_source_classes_are_learnable_across_seeds(
    fonts: list[Path], rendered: tuple[np.ndarray, np.ndarray]
) -> None:
    X_test, y_test = render_font_digits(30, seed=123, fonts=fonts)
    clf = LogisticRegression(max_iter=2000).fit(rendered[0] / 16.0, rendered[1])
    assert clf.score(X_test / 16.0, y_test) > 0.9


def test_load_handwritten_digits() -> None:
    X, y = load_handwritten_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 16
    assert set(y.tolist()) == set(range(10))


def test_nist_zoom_index_is_nearest_neighbour_and_covers_the_source() -> None:
    shrink = digits._nist_zoom_index(64, 32)
    assert np.array_equal(shrink, np.arange(0, 64, 2))
    enlarge = digits._nist_zoom_index(10, 20)
    assert np.array_equal(enlarge, np.repeat(np.arange(10), 2))
    for n_in, n_out in [(7, 20), (45, 32), (33, 32), (32, 32)]:
        idx = digits._nist_zoom_index(n_in, n_out)
        assert idx.shape == (n_out,) and idx[0] == 0 and idx[-1] <= n_in - 1
        assert (np.diff(idx) >= 0).all()


def test_nist_shear_straightens_a_slanted_bar() -> None:
    img = np.zeros((1, 32, 32), dtype=bool)
    for r in range(32):
        c = 20 - r // 2  # leans right going up, like an italic "1"
        img[0, r, c : c + 3] = True
    out = digits._nist_shear(img)
    left = out[0].argmax(axis=1)
    assert left.max() - left.min() <= 2
    assert out.sum() <= img.sum()


def test_save_digit_grid_writes_png(tmp_path: Path, rendered: tuple[np.ndarray, np.ndarray]) -> None:
    Xt, yt = load_handwritten_digits()
    X, y = rendered
    out = save_digit_grid(tmp_path / "grid.png", X, y, X_other=Xt, y_other=yt, per_class=3)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rejects_bad_n_per_class(fonts: list[Path]) -> None:
    with pytest.raises(ConfigError):
        render_font_digits(0, seed=0, fonts=fonts)
