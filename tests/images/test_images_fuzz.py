"""Property-based fuzzing of image decoding and image lists: damaged files of every format Pillow
writes, arbitrary bytes and arbitrary list files either work or raise the library's own error
naming the file; never another exception."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from dahash.errors import DahashError
from dahash.images.datasets import load_image_list
from dahash.images.loading import ImageLoadError, open_image
from dahash.images.preprocess import Preprocessing, eval_transform
from fuzzing import damaged, fuzz_settings  # tests/ is on sys.path (no __init__.py)

FUZZ = fuzz_settings(60)

FORMATS = {"JPEG": ("RGB", "L", "CMYK"), "PNG": ("RGB", "RGBA", "L", "P", "I;16", "1"), "GIF": ("P", "L"),
           "BMP": ("RGB", "L"), "TIFF": ("RGB", "CMYK", "I;16", "F"), "WEBP": ("RGB", "RGBA")}
PREP = Preprocessing(resize=32, crop=28, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}


@st.composite
def encoded_images(draw: st.DrawFn) -> tuple[bytes, str]:
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt]))
    w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue(), EXTENSIONS[fmt]



def check_decodes_or_refused(path: Path) -> None:
    try:
        img = open_image(path)
    except ImageLoadError as exc:
        assert str(exc).startswith(f"{path}: cannot read image"), str(exc)
        assert "\n" not in str(exc)
        return
    assert img.mode == "RGB" and img.width >= 1 and img.height >= 1
    # What the backbones see: a float tensor of the crop size, finite.
    tensor = eval_transform(img, PREP)
    assert tuple(tensor.shape) == (3, 28, 28) and bool(tensor.isfinite().all())


@FUZZ
@given(image=encoded_images(), data=st.data())
def test_damaged_images_decode_or_are_refused(tmp_path: Path, image: tuple[bytes, str], data: st.DataObject) -> None:
    raw, suffix = image
    path = tmp_path / f"img{suffix}"
    path.write_bytes(damaged(raw, data.draw, keep=True))
    check_decodes_or_refused(path)


@FUZZ
@given(raw=st.binary(max_size=200), suffix=st.sampled_from([".jpg", ".png", ".gif", ".tif", ".webp", ".txt"]))
def test_arbitrary_bytes_are_refused(tmp_path: Path, raw: bytes, suffix: str) -> None:
    path = tmp_path / f"img{suffix}"
    path.write_bytes(raw)
    check_decodes_or_refused(path)


@FUZZ
@given(lines=st.lists(st.text(max_size=20), max_size=6), n_images=st.integers(0, 3))
def test_image_lists_load_or_name_the_line(tmp_path: Path, lines: list[str], n_images: int) -> None:
    for i in range(n_images):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{i}.png")
    text = "\n".join(lines + [f"{i}.png {i % 2}" for i in range(n_images)])
    listing = tmp_path / "list.txt"
    listing.write_text(text, encoding="utf-8")
    try:
        domain = load_image_list(listing)
    except DahashError as exc:
        assert str(listing) in str(exc) and "\n" not in str(exc), str(exc)
        return
    assert len(domain.paths) == len(domain.labels) >= 1
    assert all(0 <= label < len(domain.classes) for label in domain.labels)
