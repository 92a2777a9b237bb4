"""What the fuzz tests share: Hypothesis settings and byte-level damage of a valid file.

The suite runs a fixed, derandomised set of examples per test; ``DAHASH_FUZZ_EXAMPLES=N`` runs N
random ones instead (``benchmarks/fuzz.sh``)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz_settings(examples: int) -> settings:
    """``examples`` derandomised examples, or ``$DAHASH_FUZZ_EXAMPLES`` random ones."""
    long_run = os.environ.get("DAHASH_FUZZ_EXAMPLES")
    return settings(max_examples=int(long_run or examples), deadline=None, derandomize=not long_run,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


def damaged(data: bytes, draw: st.DrawFn, keep: bool = False) -> bytes:
    """``data`` truncated, with one byte flipped, or with random bytes spliced in (or, with
    ``keep``, possibly unchanged)."""
    kinds = ["truncate", "flip", "splice"] + (["keep"] if keep else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "keep" or not data:
        return data
    if kind == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    at = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    return data[:at] + draw(st.binary(min_size=1, max_size=32)) + data[at:]
