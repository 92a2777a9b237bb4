"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Training sets torch's process-wide thread count (runs and cells pin it); every test gets
    the session's count back, so one test's setting cannot slow or change the next."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_office31(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Office-31's layout, 3 classes x 6 tiny images per domain: a class is a colour, a domain a brightness."""
    root = tmp_path_factory.mktemp("office31")
    rng = np.random.default_rng(0)
    colours = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220]], dtype=float)
    for d, domain in enumerate(("amazon", "dslr", "webcam")):
        for c, name in enumerate(("bike", "mug", "pen")):
            folder = root / domain / "images" / name
            folder.mkdir(parents=True)
            for i in range(6):
                pixels = colours[c] * (1.0 - 0.25 * d) + rng.normal(0, 20, size=(40, 40, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.jpg")
    return root
