"""What ``POST /search`` of ``dahash serve`` takes in: an upload saved under a byte cap and checked
(header, pixel count, decodability) before it is encoded, and the ``code`` and ``k`` of a query.

Nothing here serves anything: :mod:`dahash.retrieval.serve` turns these checks' errors into HTTP
answers (:class:`TooLarge` and :class:`TooManyPixels` a 413, :class:`NotAnImage` a 415, a
:class:`DataError` of :func:`parse_code` or :func:`parse_k` a 400).
"""

import re
from pathlib import Path
from typing import Any

import numpy as np

from dahash.errors import DahashError, DataError
from dahash.images.loading import ImageLoadError, open_image
from dahash.index.base import check_packed_codes

__all__ = ["MAX_K", "MAX_PIXELS", "MULTIPART_OVERHEAD", "TooLarge", "NotAnImage", "TooManyPixels", "save_upload",
           "check_upload_image", "check_upload_header", "capped", "upload_suffix", "parse_code", "parse_k"]

# The most hits one query may ask for (k).
MAX_K = 1000
# Pixels of an uploaded image beyond which it is refused before decoding (about 7000 x 7000).
MAX_PIXELS = 50_000_000
# Room for the multipart boundary, part headers and the k field on top of the image's bytes.
MULTIPART_OVERHEAD = 64 * 1024
_HEX = re.compile(r"[0-9a-fA-F]*")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class TooLarge(Exception):
    """The request body went past the cap while it was being read."""


class NotAnImage(DahashError):
    """An upload Pillow cannot decode."""


class TooManyPixels(DahashError):
    """An upload whose pixel count is over MAX_PIXELS."""


def save_upload(source: Any, target: str, cap: int) -> int:
    """Copy the spooled upload to ``target``, counting bytes; :class:`TooLarge` past ``cap``."""
    size = 0
    source.seek(0)
    with open(target, "wb") as f:
        while chunk := source.read(1 << 20):
            size += len(chunk)
            if size > cap:
                raise TooLarge()
            f.write(chunk)
    return size


def check_upload_image(path: str) -> None:
    """Refuse a file Pillow cannot decode (415) or one with too many pixels (413), like the encoder would."""
    check_upload_header(path)
    try:
        open_image(path)
    except ImageLoadError as exc:
        raise NotAnImage(f"the upload is not a readable image ({exc.reason})") from None


def check_upload_header(path: str) -> None:
    """Refuse, from its header alone, a file Pillow cannot identify (415) or one with too many
    pixels (413)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            w, h = img.size
    except Image.DecompressionBombError as exc:  # over twice Pillow's MAX_IMAGE_PIXELS
        raise TooManyPixels(f"the image is too large to decode ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise NotAnImage(f"the upload is not an image Pillow can read ({type(exc).__name__})") from None
    if w * h > MAX_PIXELS:  # read at call time, so tests can lower it
        raise TooManyPixels(f"the image is {w} x {h} pixels; at most {MAX_PIXELS} pixels are accepted")


def capped(request: Any, cap: int) -> Any:
    """The request with a receive channel that raises :class:`TooLarge` once more than ``cap``
    bytes of body arrived (chunked bodies included: the bytes are counted, not the header)."""
    from fastapi import Request

    seen = 0
    receive = request.receive

    async def counting() -> Any:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap:
                raise TooLarge()
        return message

    return Request(request.scope, counting)


def upload_suffix(filename: str | None) -> str:
    """The suffix of the temporary file an upload is saved to: the client's, if it is an image's, else ``.img``."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if suffix in _IMAGE_SUFFIXES else ".img"


def parse_code(code: Any, n_bits: int) -> np.ndarray:
    """A query code (hex of the packed bytes, or a list of 0/1 bits) as a (1, ceil(n_bits/8)) uint8
    array, else a DataError naming the expected and the given length."""
    n_bytes = (n_bits + 7) // 8
    if isinstance(code, str):
        text = code.strip()
        if text[:2].lower() == "0x":
            text = text[2:]
        if not _HEX.fullmatch(text):
            raise DataError("code must be hexadecimal digits (the packed code bytes) or a list of 0/1 bits")
        if len(text) != 2 * n_bytes:
            raise DataError(f"code has {4 * len(text)} bits ({len(text)} hex digits), expected {n_bits} bits "
                            f"({2 * n_bytes} hex digits)")
        packed = np.frombuffer(bytes.fromhex(text), dtype=np.uint8).reshape(1, n_bytes)
        return check_packed_codes(packed, n_bits, "code")
    if isinstance(code, list):
        if not all(type(b) is int and b in (0, 1) for b in code):
            raise DataError("code as a list must hold only 0 and 1 bits")
        if len(code) != n_bits:
            raise DataError(f"code has {len(code)} bits, expected {n_bits} bits")
        return np.packbits(np.asarray(code, dtype=np.uint8)[None, :], axis=1)
    raise DataError("code must be a hex string of the packed code bytes or a list of 0/1 bits, "
                    f"got {type(code).__name__}")


def parse_k(value: Any) -> int:
    """``k`` as an int from 1 to MAX_K (a form field's text or a JSON integer), else a DataError."""
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise DataError(f"k must be an integer from 1 to {MAX_K}, got {value!r}") from None
    if type(value) is not int or not 1 <= value <= MAX_K:
        raise DataError(f"k must be an integer from 1 to {MAX_K}, got {value!r}")
    return value
