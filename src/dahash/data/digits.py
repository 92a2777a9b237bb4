"""Offline digit domains: printed digits from matplotlib's fonts vs sklearn's handwritten optdigits.

Both domains go through the UCI optdigits preprocessing (Alpaydin & Kaynak 1998): a binary
character image is normalised by NIST's second-generation routine (NISTIR 5469, ``norm_2nd_gen``
then ``shear_mis``) into a 32x32 bitmap, and on-pixels are counted in non-overlapping 4x4 blocks,
giving 8x8 images with values 0..16.  The NIST normalisation is reproduced from its source: tight
bounding box, nearest-neighbour zoom of the box to 20x32 (x and y scaled independently, so the
aspect ratio is NOT preserved), centred in 32x32 (columns 6..25), stroke-width normalisation by
4-neighbour erosion/dilation driven by the on-pixel count, then a horizontal shear that lines up
the left edges of the top and bottom rows.  The statistics of ``load_digits`` agree with this:
every image fills all 8 block rows, column 0 is almost always empty and the ink per image sits
inside the 256..412 pixel band the morphology aims for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dahash.errors import ConfigError, DataError

__all__ = [
    "available_fonts",
    "render_font_digits",
    "load_handwritten_digits",
    "save_digit_grid",
]

_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Glyphs are rendered at this pixel size on a square canvas large enough for jittered glyphs;
# NIST's input characters were scanned at 300 dpi and were also larger than 32 px, so the
# 20x32 zoom below shrinks them just as it shrank the handwriting.
_FONT_PX = 64
_CANVAS = 128

# Constants of NIST norm_2nd_gen (NISTIR 5469): output box, reduced box, morphology thresholds.
_NORM = 32
_RED_W, _RED_H = 20, 32
_ERODE_TWICE, _ERODE_ONCE, _DILATE_ONCE, _DILATE_TWICE = 560, 412, 256, 108

# Jitter ranges model the variation of printed digits (print weight, slant, scan rotation and
# glyph proportions); they were fixed a priori and are not tuned on the handwritten target.
_MAX_ROTATION_DEG = 8.0
_MAX_SHEAR = 0.2
_MAX_LOG_ASPECT = 0.15
_THICKNESS_STEPS = (-1, 0, 1, 2)  # <0: erosions, >0: dilations of the 64-px binary glyph


def _ttf_dir() -> Path:
    """Matplotlib's bundled TrueType folder (mpl-data/fonts/ttf), identical on every install."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _maps_digits(path: Path) -> bool:
    """True when the font's charmap sends '0'..'9' to glyphs named as those digits (Adobe names)."""
    from matplotlib.ft2font import FT2Font

    # Symbol fonts (cmsy10, cmex10, LastResort) map ASCII digits to non-digit glyphs that render
    # non-blank and distinct, so a pixel test alone would accept them.  FreeType's default
    # charmap is the one PIL renders with, so the names checked are those of the drawn glyphs.
    font = FT2Font(str(path))
    for k, word in enumerate(_DIGIT_NAMES):
        index = font.get_char_index(ord(str(k)))
        if index == 0:
            return False
        name = font.get_glyph_name(index)
        if not (name.startswith(word) or name == f"uni{0x30 + k:04X}"):
            return False
    return True


def _render_glyphs(path: Path) -> np.ndarray:
    """The ten digits of one font as anti-aliased uint8 images (10, _CANVAS, _CANVAS), centred."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(path), _FONT_PX)
    out = np.zeros((10, _CANVAS, _CANVAS), dtype=np.uint8)
    centre = (_CANVAS / 2, _CANVAS / 2)
    for k in range(10):
        img = Image.new("L", (_CANVAS, _CANVAS), 0)
        ImageDraw.Draw(img).text(centre, str(k), font=font, fill=255, anchor="mm")
        out[k] = np.asarray(img)
    return out


def available_fonts() -> list[Path]:
    """Matplotlib's bundled TTF fonts whose digits exist and render as 10 distinct non-blank glyphs."""
    fonts = []
    for path in sorted(_ttf_dir().glob("*.ttf")):
        if not _maps_digits(path):
            continue
        glyphs = _render_glyphs(path) >= 128
        if not glyphs.reshape(10, -1).any(axis=1).all():
            continue
        codes = _optdigits_from_binary(glyphs).reshape(10, -1)
        if len(np.unique(codes, axis=0)) < 10:
            continue
        fonts.append(path)
    return fonts


def _erode4(img: np.ndarray) -> np.ndarray:
    """NIST erode_charimage: clear an on-pixel unless all 4 neighbours are on (outside is off)."""
    out = img.copy()
    # In-place slice updates avoid allocating a shifted copy per neighbour for big batches.
    out[..., 1:, :] &= img[..., :-1, :]
    out[..., :-1, :] &= img[..., 1:, :]
    out[..., :, 1:] &= img[..., :, :-1]
    out[..., :, :-1] &= img[..., :, 1:]
    out[..., 0, :] = out[..., -1, :] = False
    out[..., :, 0] = out[..., :, -1] = False
    return out


def _dilate4(img: np.ndarray) -> np.ndarray:
    """NIST dilate_charimage: set a pixel when any of its 4 neighbours is on."""
    out = img.copy()
    out[..., 1:, :] |= img[..., :-1, :]
    out[..., :-1, :] |= img[..., 1:, :]
    out[..., :, 1:] |= img[..., :, :-1]
    out[..., :, :-1] |= img[..., :, 1:]
    return out


def _nist_zoom_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output row/column under NIST zoom (nearest-neighbour shrink/enlarge)."""
    f = n_out / n_in
    if f <= 1.0:
        src = (np.arange(n_out) / f + 0.5).astype(np.int64)
    else:
        # enlarge_x copies source i to outputs up to round((i + 1) * f - 1).
        last = ((np.arange(n_in) + 1) * f - 0.5).astype(np.int64)
        src = np.searchsorted(last, np.arange(n_out), side="left")
    return np.minimum(src, n_in - 1)


def _nist_normalise(binary: np.ndarray) -> np.ndarray:
    """NIST norm_2nd_gen + shear_mis (NISTIR 5469): binary (N, H, W) characters -> (N, 32, 32)."""
    n = binary.shape[0]
    rows_on = binary.any(axis=2)
    cols_on = binary.any(axis=1)
    if not rows_on.any(axis=1).all():
        raise DataError("a character image is blank; cannot normalise it")
    r0 = rows_on.argmax(axis=1)
    r1 = rows_on.shape[1] - rows_on[:, ::-1].argmax(axis=1)
    c0 = cols_on.argmax(axis=1)
    c1 = cols_on.shape[1] - cols_on[:, ::-1].argmax(axis=1)

    # Zoom each bounding box to 20x32 by gathering rows/columns (index tables differ per image).
    ri = np.stack([r0[i] + _nist_zoom_index(r1[i] - r0[i], _RED_H) for i in range(n)])
    ci = np.stack([c0[i] + _nist_zoom_index(c1[i] - c0[i], _RED_W) for i in range(n)])
    zoomed = binary[np.arange(n)[:, None, None], ri[:, :, None], ci[:, None, :]]
    norm = np.zeros((n, _NORM, _NORM), dtype=bool)
    ox, oy = (_NORM - _RED_W) >> 1, (_NORM - _RED_H) >> 1
    norm[:, oy : oy + _RED_H, ox : ox + _RED_W] = zoomed

    # Stroke-width normalisation: thick characters are eroded, thin ones dilated, by pixel count.
    npix = norm.sum(axis=(1, 2))[:, None, None]
    e1 = _erode4(norm)
    d1 = _dilate4(norm)
    norm = np.where(npix > _ERODE_TWICE, _erode4(e1), np.where(npix > _ERODE_ONCE, e1, norm))
    norm = np.where(npix < _DILATE_TWICE, _dilate4(d1), np.where(npix < _DILATE_ONCE, d1, norm))
    return _nist_shear(norm)


def _nist_shear(img: np.ndarray) -> np.ndarray:
    """NIST shear_char: shift rows so the left edges 2 rows inside the top and bottom line up."""
    n, h, w = img.shape
    rows_on = img.any(axis=2)
    top = rows_on.argmax(axis=1)
    bot = h - 1 - rows_on[:, ::-1].argmax(axis=1)
    top_in = np.minimum(top + 2, h - 1)
    bot_in = np.maximum(bot - 2, 0)
    idx = np.arange(n)
    top_row, bot_row = img[idx, top_in], img[idx, bot_in]
    top_left = np.where(top_row.any(axis=1), top_row.argmax(axis=1), -1)
    bot_left = np.where(bot_row.any(axis=1), bot_row.argmax(axis=1), -1)
    active = (
        rows_on.any(axis=1)
        & (bot - top + 1 > 5)
        & (top_left >= 0)
        & (bot_left >= 0)
        & (top_left != bot_left)
        & (top_in != bot_in)
    )
    span = np.where(active, bot_in - top_in, 1)
    fctr = np.where(active, (top_left - bot_left) / span, 0.0).astype(np.float32)
    # sround in NIST rounds half away from zero.
    raw = (np.arange(h)[None, :] - (h >> 1)) * fctr[:, None]
    sval = (np.sign(raw) * np.floor(np.abs(raw) + 0.5)).astype(np.int64)
    src = np.arange(w)[None, None, :] - sval[:, :, None]
    valid = (src >= 0) & (src < w)
    gathered = np.take_along_axis(img, np.clip(src, 0, w - 1), axis=2)
    return gathered & valid


def _block_counts(bitmaps: np.ndarray) -> np.ndarray:
    """UCI optdigits features: on-pixel counts in non-overlapping 4x4 blocks of 32x32 -> (N, 64)."""
    n = bitmaps.shape[0]
    counts = bitmaps.reshape(n, 8, 4, 8, 4).sum(axis=(2, 4))
    return counts.reshape(n, 64).astype(np.float32)


def _optdigits_from_binary(binary: np.ndarray) -> np.ndarray:
    """UCI optdigits preprocessing (Alpaydin & Kaynak 1998): binary characters -> (N, 64) in 0..16."""
    return _block_counts(_nist_normalise(binary))


def _crop_centred(glyphs: np.ndarray, size: int) -> np.ndarray:
    """Cut a size x size window centred on each glyph's ink bounding box from (N, H, W) images."""
    n, h, w = glyphs.shape
    pad = size
    padded = np.zeros((n, h + 2 * pad, w + 2 * pad), dtype=glyphs.dtype)
    padded[:, pad : pad + h, pad : pad + w] = glyphs
    out = np.empty((n, size, size), dtype=glyphs.dtype)
    for i in range(n):
        rows = np.flatnonzero(glyphs[i].any(axis=1))
        cols = np.flatnonzero(glyphs[i].any(axis=0))
        cy = (rows[0] + rows[-1] + 1) // 2 + pad
        cx = (cols[0] + cols[-1] + 1) // 2 + pad
        top, left = cy - size // 2, cx - size // 2
        out[i] = padded[i, top : top + size, left : left + size]
    return out


def _jitter_window(glyphs: np.ndarray) -> int:
    """Side of a square window that holds any one glyph of (N, H, W) under the most extreme jitter."""
    rows_on = glyphs.any(axis=2)
    cols_on = glyphs.any(axis=1)
    heights = rows_on.shape[1] - rows_on[:, ::-1].argmax(axis=1) - rows_on.argmax(axis=1)
    widths = cols_on.shape[1] - cols_on[:, ::-1].argmax(axis=1) - cols_on.argmax(axis=1)
    extent = int(max(heights.max(), widths.max()))
    rot = np.deg2rad(_MAX_ROTATION_DEG)
    growth = (1 + _MAX_SHEAR) * np.exp(_MAX_LOG_ASPECT) * (np.cos(rot) + np.sin(rot))
    return min(int(np.ceil(extent * growth)) + 4, glyphs.shape[-1])


def _jittered_binary(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotated/sheared/stretched, re-thresholded and re-weighted binary copies of glyphs (N, S, S)."""
    from PIL import Image

    n, size = crops.shape[0], crops.shape[-1]
    theta = np.deg2rad(rng.uniform(-_MAX_ROTATION_DEG, _MAX_ROTATION_DEG, size=n))
    shear = rng.uniform(-_MAX_SHEAR, _MAX_SHEAR, size=n)
    aspect = np.exp(rng.uniform(-_MAX_LOG_ASPECT, _MAX_LOG_ASPECT, size=n))
    # A threshold away from 50% grey thins or thickens strokes by a fraction of a pixel, as ink
    # spread and toner density do; whole-pixel erosions/dilations add coarser print weights.
    threshold = rng.uniform(64.0, 192.0, size=n)
    steps = rng.choice(np.asarray(_THICKNESS_STEPS), size=n)

    cos, sin = np.cos(theta), np.sin(theta)
    # forward = R(theta) @ [[1, shear], [0, 1]] @ diag(aspect, 1); PIL wants its inverse.
    f00, f01 = cos * aspect, (cos * shear - sin)
    f10, f11 = sin * aspect, (sin * shear + cos)
    det = f00 * f11 - f01 * f10
    i00, i01, i10, i11 = f11 / det, -f01 / det, -f10 / det, f00 / det
    c = size / 2
    off0 = c - (i00 * c + i01 * c)
    off1 = c - (i10 * c + i11 * c)

    coeff_rows = np.stack([i00, i01, off0, i10, i11, off1], axis=1).tolist()
    warped = np.empty_like(crops)
    for k, coeffs in enumerate(coeff_rows):
        warped[k] = np.asarray(
            Image.fromarray(crops[k]).transform(
                (size, size), Image.Transform.AFFINE, tuple(coeffs), resample=Image.Resampling.BILINEAR
            )
        )
    base = warped >= threshold[:, None, None]

    out = base.copy()
    for step in set(_THICKNESS_STEPS) - {0}:
        mask = steps == step
        reweighted = base[mask]
        for _ in range(abs(step)):
            reweighted = _dilate4(reweighted) if step > 0 else _erode4(reweighted)
        out[mask] = reweighted
    # Erosion can wipe out a thin serif glyph, and a blank scan is not a printed digit.
    blank = ~out.any(axis=(1, 2))
    out[blank] = base[blank]
    blank = ~out.any(axis=(1, 2))
    out[blank] = crops[blank] >= 128
    return out


def render_font_digits(
    n_per_class: int,
    *,
    seed: int,
    fonts: Sequence[Path | str] | None = None,
    jitter: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Printed digits through the UCI optdigits pipeline (NIST 32x32 normalisation, 4x4 block counts)."""
    valid_int = isinstance(n_per_class, (int, np.integer)) and not isinstance(n_per_class, bool)
    if not valid_int or n_per_class < 1:
        raise ConfigError(f"n_per_class must be a positive integer, got {n_per_class!r}")
    font_paths = [Path(f) for f in (available_fonts() if fonts is None else fonts)]
    if not font_paths:
        raise ConfigError("no fonts to render digits with")
    rng = np.random.default_rng(seed)

    glyphs = []
    for path in font_paths:
        g = _render_glyphs(path)
        if not (g >= 128).reshape(10, -1).any(axis=1).all():
            raise DataError(f"font {path} renders a blank digit")
        glyphs.append(g)
    # Warping a window that just holds the jittered glyph halves the pixels PIL has to resample.
    glyphs_all = np.stack(glyphs)
    flat = glyphs_all.reshape(-1, _CANVAS, _CANVAS)
    crops = _crop_centred(flat, _jitter_window(flat))
    crops = crops.reshape(len(font_paths), 10, *crops.shape[1:])

    # Fonts are dealt out evenly within each class so no font dominates a class by chance.
    labels = np.repeat(np.arange(10), n_per_class)
    font_idx = np.concatenate(
        [rng.permutation(np.resize(np.arange(len(font_paths)), n_per_class)) for _ in range(10)]
    )
    chosen = crops[font_idx, labels]
    binary = _jittered_binary(chosen, rng) if jitter else chosen >= 128

    X = _optdigits_from_binary(binary)
    order = rng.permutation(labels.size)
    return X[order], labels[order].astype(np.int64)


def load_handwritten_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled copy of the UCI optdigits test set (1797 handwritten 8x8 digits, 0..16)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float32), data.target.astype(np.int64)


def save_digit_grid(
    path: Path | str,
    X: np.ndarray,
    y: np.ndarray,
    *,
    X_other: np.ndarray | None = None,
    y_other: np.ndarray | None = None,
    per_class: int = 4,
    titles: tuple[str, str] = ("rendered (source)", "handwritten (target)"),
) -> Path:
    """PNG grid of `per_class` examples per digit, one panel per domain side by side (Agg backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    domains = [(np.asarray(X), np.asarray(y), titles[0])]
    if X_other is not None:
        if y_other is None:
            raise ConfigError("X_other needs y_other")
        domains.append((np.asarray(X_other), np.asarray(y_other), titles[1]))

    n_cols = per_class * len(domains) + (len(domains) - 1)
    # A Figure with an explicit Agg canvas leaves pyplot's global figure registry untouched.
    fig = Figure(figsize=(0.6 * n_cols, 6.4))
    FigureCanvasAgg(fig)
    for d, (Xd, yd, title) in enumerate(domains):
        col0 = d * (per_class + 1)
        for k in range(10):
            idx = np.flatnonzero(yd == k)[:per_class]
            for j in range(per_class):
                ax = fig.add_subplot(10, n_cols, k * n_cols + col0 + j + 1)
                ax.set_axis_off()
                if j < idx.size:
                    ax.imshow(Xd[idx[j]].reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
        fig.text((col0 + per_class / 2) / n_cols, 0.99, title, ha="center", va="top", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.01, wspace=0.08, hspace=0.08)
    out = Path(path)
    fig.savefig(out, dpi=100)
    return out
