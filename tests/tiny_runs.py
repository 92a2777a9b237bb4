"""Helpers of the tests that train tiny image runs: the default backbone built once per test module
(the reproduce and search code paths load it again for every cell or command, which dominates
tiny tests' runtime) and the arguments of a tiny ``dahash train``."""

from __future__ import annotations

import contextlib

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
    return ["train", "--gamma", "5000", "--data-root", str(root), "--source", "amazon", "--target", "webcam", "--bits", str(bits),
            "--epochs", "2", "--hidden", "16", "16", "--k", "2", "--cache-dir", str(cache), "--out", str(out),
            "--seed", str(seed), "--num-threads", "1", "--quiet"]


def tiny_dslr_index(root: Path, base: Path, bits: int = 16, index_name: str = "index") -> dict[str, Any]:
    """A tiny run trained in ``base`` and a FAISS flat index of the 18 dslr images of ``root``:
    ``{"run", "index", "dslr"}`` (the sorted image paths)."""
    from dahash.cli import main
    from dahash.retrieval.search import build_index

    run = base / "run"
    assert main(tiny_train_args(root, base / "cache", run, bits=bits)) == 0
    dslr = sorted(str(p) for p in (root / "dslr").rglob("*.jpg"))
    assert len(dslr) == 18
    index = base / index_name
    index.parent.mkdir(parents=True, exist_ok=True)
    assert build_index(run, [str(root / "dslr")], index, progress=False) == 18
    return {"run": run, "index": index, "dslr": dslr}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(app: Any, name: str = "dahash-serve-test") -> Iterator[str]:
    """``app`` served by uvicorn on a free 127.0.0.1 port in a thread; yields its base URL and
    checks on exit that the server stopped."""
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
    assert not thread.is_alive()
