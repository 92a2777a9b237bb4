"""Build the (frozen, eval-mode) default backbone once per test module: the reproduce and search
code paths load it again for every cell or command, which dominates tiny tests' runtime."""

from __future__ import annotations

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
