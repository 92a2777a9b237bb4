"""Helpers of the tests that train tiny image runs: the default backbone built once per test module
(the reproduce and search code paths load it again for every cell or command, which dominates
tiny tests' runtime) and the arguments of a tiny ``dahash train``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dahash.images import backbones


def build_backbone_once(mp: pytest.MonkeyPatch) -> None:
    """Patch the registry so that efficientnet_lite0 is built once per weights file."""
    built: dict[Any, Any] = {}
    make = backbones.BACKBONES["efficientnet_lite0"]

    def cached(weights: Any) -> Any:
        if weights not in built:
            built[weights] = make(weights)
        return built[weights]

    mp.setitem(backbones.BACKBONES, "efficientnet_lite0", cached)


@pytest.fixture(scope="module")
def backbone_built_once() -> Iterator[None]:
    """:func:`build_backbone_once` for a whole test module (``pytestmark = usefixtures(...)``)."""
    with pytest.MonkeyPatch.context() as mp:
        build_backbone_once(mp)
        yield


def tiny_train_args(root: Path, cache: Path, out: Path, seed: int = 0, bits: int = 16) -> list[str]:
    """``dahash train`` of a tiny image run on the generated Office-31 layout (seconds, one thread)."""
    return ["train", "--data-root", str(root), "--source", "amazon", "--target", "webcam", "--bits", str(bits),
            "--epochs", "2", "--hidden", "16", "16", "--k", "2", "--cache-dir", str(cache), "--out", str(out),
            "--seed", str(seed), "--num-threads", "1", "--quiet"]
