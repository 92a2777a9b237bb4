"""Decode one image file to an RGB ``PIL.Image`` or fail with a one-line :class:`ImageLoadError`.

Conventions
-----------
* An image file is recognised by its extension alone (:data:`IMAGE_EXTENSIONS`, any case);
  hidden files and OS junk (``Thumbs.db``, ``.DS_Store``, ``desktop.ini``) never are.
* :func:`open_image` always returns a fully decoded, detached ``RGB`` image with its EXIF
  orientation applied. Transparent pixels are composited on white, because clipart (Office-Home
  Clipart, Amazon product shots) is drawn on a transparent canvas that means "background" and
  black would turn it into a dark silhouette. 16-bit and float grayscale is rescaled to 8 bits,
  not clipped, so it does not come out white.
* Truncated files are errors: ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is a process-wide switch
  and is left as it is, so a half-written JPEG is reported rather than padded with grey.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dahash.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "ImageLoadError", "is_image_file", "open_image"]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
# Compared lower-cased: Windows and macOS write these with varying case.
JUNK_FILE_NAMES: frozenset[str] = frozenset({"thumbs.db", ".ds_store", "desktop.ini"})

_WHITE = (255, 255, 255)
# Reasons are cut so that a decoder's long message still fits on one readable line.
_MAX_REASON = 200
# What Pillow documents for unreadable files; anything else is reported with its type name.
_EXPECTED = (OSError, SyntaxError, ValueError, EOFError)
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class ImageLoadError(DataError):
    """An image file cannot be opened or fully decoded: ``"<path>: cannot read image (<reason>)"``."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        """Keep ``path`` and ``reason`` apart so that callers can list failures without re-parsing."""
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: cannot read image ({reason})")


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an image by its extension; hidden files and OS junk never do."""
    name = os.path.basename(os.fspath(path))
    if not name or name.startswith(".") or name.lower() in JUNK_FILE_NAMES:
        return False
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _reason(exc: BaseException) -> str:
    """One short line describing ``exc`` without repeating the path the caller already names."""
    if isinstance(exc, UnidentifiedImageError):
        text = "not a recognised image format"
    elif isinstance(exc, Image.DecompressionBombError):
        text = str(exc)  # Pillow's own wording names the pixel count and the limit
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    elif isinstance(exc, _EXPECTED):
        text = str(exc) or type(exc).__name__
    else:
        # Pillow plugins leak struct.error, IndexError... on corrupt data; the type helps a bug report.
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _gray_to_8bit(img: Image.Image) -> Image.Image:
    """Rescale wide grayscale (``I;16*``, ``I``, ``F``) to ``L`` by its nominal range, not by clipping."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        scaled = arr.astype(np.float64) / 257.0
    elif img.mode == "I":
        # 16-bit PNGs and TIFFs have decoded as mode "I" in some Pillow versions; values above
        # 255 mean the data are 16-bit, otherwise they are already 8-bit.
        scaled = arr.astype(np.float64)
        if scaled.size and scaled.max() > 255:
            scaled = scaled / 257.0
    else:  # "F": floats in [0, 1] are the usual convention, anything wider is taken as 0..255
        scaled = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if scaled.size and scaled.max() <= 1.0:
            scaled = scaled * 255.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any decoded mode to ``RGB``, compositing transparency on white."""
    mode = img.mode
    # Palette, RGB and L images mark transparency with a tRNS colour instead of an alpha band.
    keyed = "transparency" in img.info and mode in ("P", "RGB", "L")
    if mode == "RGB" and not keyed:
        return img
    if keyed or mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, _WHITE)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if mode.startswith("I;16") or mode in ("I", "F"):
        img = _gray_to_8bit(img)
    return img.convert("RGB")


def open_image(path: str | os.PathLike[str], min_side: int | None = None) -> Image.Image:
    """Open, fully decode, EXIF-orient and convert ``path`` to RGB, or raise :class:`ImageLoadError`.

    With ``min_side``, a JPEG is decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling,
    Pillow's draft mode): the smallest that keeps its shorter side at least ``min_side``. A 4000 x
    3000 photo then decodes as 500 x 375, about 8x less work, where a full decode would be resized
    down to ``min_side`` anyway. Other formats, and JPEGs too small to scale, decode in full.
    """
    try:
        with Image.open(path) as img:
            if min_side is not None and img.format == "JPEG" and min(img.size) >= 2 * min_side:
                img.draft(None, (min_side, min_side))
            # Decoding here, not lazily later, is what makes truncated and corrupt files fail now.
            img.load()
            try:
                oriented = ImageOps.exif_transpose(img)
            except Exception as exc:  # noqa: BLE001 - broken EXIF must not cost a decodable image
                warnings.warn(f"{os.fspath(path)}: EXIF orientation ignored ({_reason(exc)})", stacklevel=2)
                oriented = img.copy()
            # exif_transpose always returns a new image, so nothing returned is tied to the file.
            return _to_rgb(oriented)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise many types on corrupt data
        raise ImageLoadError(path, _reason(exc)) from exc
