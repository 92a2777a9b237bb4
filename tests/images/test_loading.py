"""Tests for recognising image files and decoding every common mode and format to RGB."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, features

from dahash.errors import DataError
from dahash.images.loading import IMAGE_EXTENSIONS, ImageLoadError, is_image_file, open_image


def _noise(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    """An RGB image of random pixels, so that JPEG files are large enough to truncate mid-scan."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def _check_rgb(img: Image.Image, size: tuple[int, int]) -> None:
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB"
    assert img.size == size


def _load_error(path: Path, *phrases: str) -> ImageLoadError:
    """Assert open_image(path) raises a one-line ImageLoadError naming path and containing phrases."""
    with pytest.raises(ImageLoadError) as info:
        open_image(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: cannot read image ("), message
    assert message.endswith(")")
    for phrase in phrases:
        assert phrase in message, message
    assert isinstance(info.value, DataError) and isinstance(info.value, ValueError)
    assert info.value.path == str(path)
    return info.value


# --- is_image_file ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.jpg", "a.JPG", "a.jpeg", "b.Jpeg", "c.png", "d.bmp", "e.webp", "f.gif",
                                  "g.tif", "h.TIFF", "with space.jpg", "dir/x.PNG"])
def test_is_image_file_accepts_image_extensions_in_any_case(name: str) -> None:
    assert is_image_file(name)
    assert is_image_file(Path(name))


@pytest.mark.parametrize("name", ["notes.txt", "Thumbs.db", "thumbs.db", ".DS_Store", "desktop.ini",
                                  "Desktop.ini", ".hidden.jpg", "._frame_0001.jpg", "jpg", "a.jpg.txt",
                                  "archive.zip", "", "dir/.secret.png"])
def test_is_image_file_rejects_other_hidden_and_junk_files(name: str) -> None:
    assert not is_image_file(name)


def test_image_extensions_are_lower_case_with_dot() -> None:
    assert IMAGE_EXTENSIONS == {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


# --- modes and formats --------------------------------------------------------------------------


def test_rgb_jpeg_is_returned_decoded_and_detached(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    _noise().save(path, quality=90)
    img = open_image(path)
    _check_rgb(img, (64, 48))
    path.unlink()  # nothing may still read from the file
    assert img.getpixel((0, 0)) is not None
    assert np.asarray(img).shape == (48, 64, 3)


def test_grayscale_png_becomes_three_equal_channels(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.new("L", (10, 6), 77).save(path)
    img = open_image(path)
    _check_rgb(img, (10, 6))
    assert img.getpixel((3, 3)) == (77, 77, 77)


def test_one_bit_image_is_black_and_white(tmp_path: Path) -> None:
    path = tmp_path / "bw.png"
    bw = Image.new("1", (8, 8), 0)
    bw.putpixel((0, 0), 1)
    bw.save(path)
    img = open_image(path)
    _check_rgb(img, (8, 8))
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert img.getpixel((1, 1)) == (0, 0, 0)


def test_cmyk_jpeg_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (12, 10), (0, 255, 255, 0)).save(path, quality=95)  # red in CMYK
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    img = open_image(path)
    _check_rgb(img, (12, 10))
    r, g, b = img.getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60


def test_palette_png_with_transparency_composites_on_white(tmp_path: Path) -> None:
    path = tmp_path / "pal.png"
    pal = Image.new("P", (6, 6), 1)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))  # 0: black (transparent), 1: blue
    pal.putpixel((0, 0), 0)
    pal.save(path, transparency=0)
    with Image.open(path) as raw:
        assert raw.mode == "P" and "transparency" in raw.info
    img = open_image(path)
    _check_rgb(img, (6, 6))
    assert img.getpixel((0, 0)) == (255, 255, 255)  # not black
    assert img.getpixel((3, 3)) == (0, 0, 255)


def test_rgba_png_composites_transparent_pixels_on_white(tmp_path: Path) -> None:
    path = tmp_path / "clipart.png"
    rgba = Image.new("RGBA", (8, 4), (0, 0, 0, 0))  # fully transparent *black*
    for x in range(4):
        for y in range(4):
            rgba.putpixel((x, y), (200, 10, 10, 255))
    rgba.putpixel((7, 0), (0, 0, 0, 128))  # half-transparent black over white -> mid grey
    rgba.save(path)
    img = open_image(path)
    _check_rgb(img, (8, 4))
    assert img.getpixel((0, 0)) == (200, 10, 10)
    assert img.getpixel((6, 3)) == (255, 255, 255)
    assert all(120 <= v <= 135 for v in img.getpixel((7, 0)))


def test_la_png_composites_on_white(tmp_path: Path) -> None:
    path = tmp_path / "la.png"
    la = Image.new("LA", (4, 4), (30, 0))
    la.putpixel((1, 1), (30, 255))
    la.save(path)
    img = open_image(path)
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert img.getpixel((1, 1)) == (30, 30, 30)


def test_rgb_png_with_transparent_colour_key_composites_on_white(tmp_path: Path) -> None:
    path = tmp_path / "keyed.png"
    rgb = Image.new("RGB", (4, 4), (1, 2, 3))
    rgb.putpixel((0, 0), (9, 9, 9))
    rgb.save(path, transparency=(1, 2, 3))
    img = open_image(path)
    assert img.getpixel((2, 2)) == (255, 255, 255)
    assert img.getpixel((0, 0)) == (9, 9, 9)


def test_16_bit_png_is_rescaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    values = np.array([[0, 32896, 65535, 1000]], dtype=np.uint16)  # 32896 = 128 * 257
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    img = open_image(path)
    _check_rgb(img, (4, 1))
    assert [img.getpixel((x, 0))[0] for x in range(4)] == [0, 128, 255, 4]
    assert img.getpixel((1, 0)) == (128, 128, 128)


def test_32_bit_integer_tiff_with_16_bit_values_is_rescaled(tmp_path: Path) -> None:
    path = tmp_path / "int.tif"
    Image.fromarray(np.array([[0, 65535]], dtype=np.int32)).save(path)
    with Image.open(path) as raw:
        assert raw.mode == "I"
    assert [open_image(path).getpixel((x, 0)) for x in range(2)] == [(0, 0, 0), (255, 255, 255)]


def test_8_bit_range_integer_tiff_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "int8.tif"
    Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32)).save(path)
    assert [open_image(path).getpixel((x, 0))[0] for x in range(3)] == [0, 100, 255]


def test_float_tiff_in_unit_range_is_scaled(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(path)
    with Image.open(path) as raw:
        assert raw.mode == "F"
    assert [open_image(path).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_bmp(tmp_path: Path) -> None:
    path = tmp_path / "a.bmp"
    Image.new("RGB", (5, 7), (1, 2, 3)).save(path)
    img = open_image(path)
    _check_rgb(img, (5, 7))
    assert img.getpixel((0, 0)) == (1, 2, 3)


@pytest.mark.skipif(not features.check("webp"), reason="this Pillow build has no WebP support")
def test_webp_lossless_with_alpha(tmp_path: Path) -> None:
    path = tmp_path / "a.webp"
    rgba = Image.new("RGBA", (6, 6), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 255, 0, 255))
    rgba.save(path, lossless=True)
    img = open_image(path)
    _check_rgb(img, (6, 6))
    assert img.getpixel((0, 0)) == (0, 255, 0)
    assert img.getpixel((5, 5)) == (255, 255, 255)


def test_gif_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (9, 9), (255, 0, 0)), Image.new("RGB", (9, 9), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    img = open_image(path)
    _check_rgb(img, (9, 9))
    r, g, b = img.getpixel((4, 4))
    assert r > 200 and b < 60


def test_tiff(tmp_path: Path) -> None:
    path = tmp_path / "a.tiff"
    Image.new("RGB", (3, 4), (10, 20, 30)).save(path)
    assert open_image(path).getpixel((1, 1)) == (10, 20, 30)


def test_tiny_18x18_image(tmp_path: Path) -> None:
    """Office-Home's Clipart has images as small as 18x18 (Venkateswara et al., Table 1)."""
    path = tmp_path / "tiny.jpg"
    _noise((18, 18)).save(path)
    _check_rgb(open_image(path), (18, 18))


def test_exif_orientation_6_swaps_width_and_height(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    base = Image.new("RGB", (40, 20), (0, 0, 0))
    base.paste((255, 255, 255), (0, 0, 10, 20))  # white stripe on the left
    base.save(path, exif=exif.tobytes(), quality=95)
    with Image.open(path) as raw:
        assert raw.size == (40, 20)
    img = open_image(path)
    _check_rgb(img, (20, 40))
    # Rotated clockwise, the left stripe ends up along the top.
    assert min(img.getpixel((10, 2))) > 200
    assert max(img.getpixel((10, 37))) < 60


def test_jpeg_upper_case_extension(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0001.JPEG"
    _noise((8, 8)).save(path, format="JPEG")
    _check_rgb(open_image(path), (8, 8))


def test_accepts_str_paths(tmp_path: Path) -> None:
    path = tmp_path / "s.png"
    Image.new("RGB", (2, 2)).save(path)
    _check_rgb(open_image(str(path)), (2, 2))


# --- failures -----------------------------------------------------------------------------------


def test_random_bytes_with_jpg_extension_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    error = _load_error(path, "not a recognised image format")
    assert error.reason == "not a recognised image format"


def test_truncated_jpeg_is_reported_not_padded(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    _noise((128, 96)).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    _load_error(path, "truncated")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # the process-wide switch is never touched


def test_truncated_png_is_reported(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    _noise((64, 64)).save(buffer, format="PNG")
    path = tmp_path / "half.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    _load_error(path)


def test_empty_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _load_error(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    _load_error(tmp_path / "nope.jpg", "No such file or directory")


def test_directory_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    _load_error(folder)


def test_text_file_named_png_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "readme.png"
    path.write_text("not an image\nsecond line\n")
    _load_error(path)


def test_decompression_bomb_is_reported(tmp_path: Path) -> None:
    """A header claiming 20000x20000 pixels is refused before any pixel is allocated."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    _load_error(path, "decompression bomb")
