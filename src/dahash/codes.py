"""Binary hash codes: sign binarisation, bit packing and Hamming distances.

A hash code is a vector in {-1, +1}^d.  Codes are stored packed, one bit per
coordinate, as a ``uint8`` array of shape ``(n, ceil(d / 8))``:

* bit = 1 encodes +1 and bit = 0 encodes -1, with sgn(0) = +1;
* bits are packed with :func:`numpy.packbits` along axis 1, i.e. big-endian
  within each byte: coordinate ``j`` lives in byte ``j // 8`` at bit
  ``7 - j % 8`` (the most significant bit holds the lowest coordinate);
* when d is not a multiple of 8 the last byte is padded with zero bits.  The
  padding is identical for every code, so it never contributes to a Hamming
  distance; ``n_bits`` must be kept alongside the packed array to unpack it.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from dahash.errors import DataError

__all__ = [
    "binarize",
    "pack_codes",
    "unpack_codes",
    "hamming_distance",
    "as_packed",
    "check_n_bits",
    "distance_dtype",
    "to_words",
]

# Bound on the uint64 XOR scratch buffer of one block of query rows (32 MiB),
# so hamming_distance's temporaries stay small next to its output.
_XOR_BLOCK_PAIRS = 1 << 22

_POPCOUNT_TABLE = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount_lut(words: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per-element popcount of a uint64 array via a 256-entry byte table."""
    as_bytes = words.view(np.uint8).reshape(words.shape + (8,))
    np.sum(_POPCOUNT_TABLE[as_bytes], axis=-1, dtype=out.dtype, out=out)
    return out


def _popcount_native(words: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per-element popcount of a uint64 array with numpy >= 2's bitwise_count."""
    return np.bitwise_count(words, out=out)


_popcount: Callable[[np.ndarray, np.ndarray], np.ndarray] = (
    _popcount_native if hasattr(np, "bitwise_count") else _popcount_lut
)


def _to_numpy_real(u: Any, name: str) -> np.ndarray:
    """Return ``u`` (numpy array, torch tensor or array-like) as a real numeric numpy array."""
    if hasattr(u, "detach") and hasattr(u, "cpu"):
        tensor = u.detach().cpu()
        if str(tensor.dtype) in ("torch.bfloat16", "torch.float8_e4m3fn", "torch.float8_e5m2"):
            # numpy has no such dtype; widening never changes a sign.
            tensor = tensor.float()
        u = tensor.numpy()
    arr = np.asarray(u)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(f"{name} must hold real numbers (integer or float), got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        raise DataError(f"{name} contains NaN, which has no sign")
    return arr


def binarize(u: Any) -> np.ndarray:
    """Return sgn(u) as an int8 array of +-1 with the same shape, taking sgn(0) = +1."""
    arr = _to_numpy_real(u, "u")
    return np.where(arr >= 0, np.int8(1), np.int8(-1)).astype(np.int8, copy=False)


def pack_codes(u: Any) -> np.ndarray:
    """Pack the signs of real outputs ``u`` of shape (n, d) into uint8 codes of shape (n, ceil(d/8)).

    Bit 1 where ``u >= 0`` (sgn(0) = +1), big-endian within each byte as in
    :func:`numpy.packbits`; trailing pad bits of the last byte are zero.
    """
    arr = _to_numpy_real(u, "u")
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise DataError(f"u must be a 2-D array (n, d) with d >= 1, got shape {arr.shape}")
    return np.packbits(arr >= 0, axis=1)


def as_packed(packed: Any, name: str) -> np.ndarray:
    """Validate packed codes: a 2-D uint8 array with at least one byte per code."""
    arr = np.asarray(packed)
    if arr.dtype != np.uint8 or arr.ndim != 2:
        raise DataError(
            f"{name} must be a 2-D uint8 array of packed codes, got dtype {arr.dtype} "
            f"and shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise DataError(f"{name} has zero bytes per code, got shape {arr.shape}")
    return arr


def check_n_bits(n_bits: Any, n_bytes: int, name: str = "n_bits") -> int:
    """Check that ``n_bits`` packs into exactly ``n_bytes`` bytes and return it as int."""
    if isinstance(n_bits, (bool, np.bool_)) or not isinstance(n_bits, (int, np.integer)):
        raise DataError(f"{name} must be an integer, got {n_bits!r}")
    n_bits = int(n_bits)
    if not 8 * (n_bytes - 1) < n_bits <= 8 * n_bytes:
        raise DataError(
            f"{name}={n_bits} does not fit codes of {n_bytes} bytes "
            f"(expected {8 * (n_bytes - 1) + 1}..{8 * n_bytes})"
        )
    return n_bits


def unpack_codes(packed: Any, n_bits: int) -> np.ndarray:
    """Unpack uint8 codes of shape (n, ceil(n_bits/8)) into an int8 array of +-1, shape (n, n_bits)."""
    arr = as_packed(packed, "packed")
    n_bits = check_n_bits(n_bits, arr.shape[1])
    n_pad = 8 * arr.shape[1] - n_bits
    if n_pad and (arr[:, -1] & np.uint8((1 << n_pad) - 1)).any():
        raise DataError(
            f"packed has non-zero padding bits beyond n_bits={n_bits}; "
            "was it packed with more bits?"
        )
    bits = np.unpackbits(arr, axis=1, count=n_bits)
    return (bits.view(np.int8) * np.int8(2) - np.int8(1)).astype(np.int8, copy=False)


def distance_dtype(n_bytes: int) -> np.dtype:
    """Smallest unsigned dtype holding every distance between codes of ``n_bytes`` bytes."""
    # One spare value so callers can mark excluded pairs with 8 * n_bytes + 1.
    return np.dtype(np.uint16) if 8 * n_bytes + 1 <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def to_words(packed: np.ndarray) -> np.ndarray:
    """View validated packed codes as uint64 words, zero-padding each row to a multiple of 8 bytes."""
    n, n_bytes = packed.shape
    if n_bytes % 8:
        padded = np.zeros((n, n_bytes + (-n_bytes) % 8), dtype=np.uint8)
        padded[:, :n_bytes] = packed
    else:
        padded = np.ascontiguousarray(packed)
    return padded.view(np.uint64)


def _hamming_words(query_words: np.ndarray, db_words: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Hamming distances between uint64-word codes, looping over words and row blocks only."""
    n_q, n_words = query_words.shape
    n_db = db_words.shape[0]
    out = np.zeros((n_q, n_db), dtype=dtype)
    if n_q == 0 or n_db == 0:
        return out
    block = max(1, _XOR_BLOCK_PAIRS // n_db)
    xor_buf = np.empty((min(block, n_q), n_db), dtype=np.uint64)
    count_buf = np.empty((min(block, n_q), n_db), dtype=np.uint8)
    for start in range(0, n_q, block):
        stop = min(start + block, n_q)
        rows = stop - start
        for w in range(n_words):
            np.bitwise_xor(
                query_words[start:stop, w, None], db_words[None, :, w], out=xor_buf[:rows]
            )
            _popcount(xor_buf[:rows], count_buf[:rows])
            np.add(out[start:stop], count_buf[:rows], out=out[start:stop])
    return out


def hamming_distance(query_packed: np.ndarray, db_packed: np.ndarray) -> np.ndarray:
    """Return the (n_q, n_db) Hamming distances between two sets of packed codes.

    The result is ``uint16`` (``uint32`` only for codes wider than 8,191 bytes).
    Computed as XOR + popcount on 64-bit words, so besides the output only a
    bounded scratch buffer (about 36 MiB) is allocated.
    """
    query = as_packed(query_packed, "query_packed")
    db = as_packed(db_packed, "db_packed")
    if query.shape[1] != db.shape[1]:
        raise DataError(
            f"query_packed has {query.shape[1]} bytes per code but db_packed has {db.shape[1]}"
        )
    return _hamming_words(to_words(query), to_words(db), distance_dtype(query.shape[1]))
