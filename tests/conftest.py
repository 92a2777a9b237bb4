"""Fixtures shared by several test modules."""

from __future__ import annotations

import importlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_runs import free_port  # tests/ is on sys.path (no __init__.py)


@pytest.fixture(scope="session", autouse=True)
def _feature_cache_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every feature a test extracts goes to this session's temporary folder, never the user's
    ~/.cache/dahash ($DAHASH_CACHE is what default_cache_dir reads; subprocesses inherit it)."""
    saved = os.environ.get("DAHASH_CACHE")
    cache = tmp_path_factory.mktemp("feature_cache")
    os.environ["DAHASH_CACHE"] = str(cache)
    yield cache
    if saved is None:
        os.environ.pop("DAHASH_CACHE", None)
    else:
        os.environ["DAHASH_CACHE"] = saved


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


# The Milvus server of the index and search tests: one embedded ``milvus`` (PyPI, 2.3.5) per test session.
#
# ``milvus_server`` starts ``milvus.default_server`` under a temporary base dir (binaries, config,
# etcd, data and logs: about 450 MB, deleted at the end) on a free port, with authentication on,
# and stops it when the session ends.  Set ``DAHASH_MILVUS_URI`` (and ``DAHASH_MILVUS_TOKEN``) to
# test against a running server instead.  A server that cannot be imported or started skips the
# Milvus tests, naming why.

# Seen: 7-14 s on 2 busy cores (4 s unpacking the binaries, 3 s to /healthz OK).
START_TIMEOUT_S = 180

# Milvus reads its config from the environment too (upper case, no dots).  Test-only speed-up: the
# query node swaps freshly indexed segments in every queryCoord.UpdateNextTargetInterval seconds (10 by
# default; a MilvusIndex.wait_for_index waits for it).  Authentication on, so that every test connects
# with a token, as to a guarded production server; the embedded server's one user is root, password Milvus.
_SERVER_ENV = {"QUERYCOORD_UPDATENEXTTARGETINTERVAL": "1", "COMMON_SECURITY_AUTHORIZATIONENABLED": "true"}
EMBEDDED_TOKEN = "root:Milvus"


class MilvusServer(NamedTuple):
    """A live Milvus server: where it is and the token it needs (None: none)."""

    uri: str
    token: str | None
    embedded: bool


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of the Milvus server must be marked ``xdist_group("milvus")``: under
    pytest-xdist (``-n 2 --dist loadgroup``, the README's command) they then run in one worker,
    beside one embedded server.  A second server, started by the other worker, did not come up
    within START_TIMEOUT_S and skipped its tests."""
    unmarked = [item.nodeid for item in items if "milvus_server" in getattr(item, "fixturenames", ())
                and "milvus" not in {m.args[0] for m in item.iter_markers("xdist_group") if m.args}]
    if unmarked:
        raise pytest.UsageError("tests of the Milvus server need @pytest.mark.xdist_group(\"milvus\"): "
                                + ", ".join(unmarked))


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusServer]:
    """A live Milvus server for the whole session (skips the test if none can start)."""
    external = os.environ.get("DAHASH_MILVUS_URI")
    if external:
        yield MilvusServer(external, os.environ.get("DAHASH_MILVUS_TOKEN") or None, embedded=False)
        return
    try:
        importlib.import_module("pymilvus")  # the client the backend needs
        from milvus import default_server
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install
        pytest.skip(f"Milvus test server unavailable (pip install -e '.[test]' installs milvus==2.3.5 "
                    f"and pymilvus>=3.0): {type(exc).__name__}: {exc}")
    base = tmp_path_factory.mktemp("milvus-server")
    default_server.set_base_dir(str(base))
    default_server.listen_port = free_port()  # a start: busy ports are skipped upwards
    default_server.wait_for_started = False
    saved = {key: os.environ.get(key) for key in _SERVER_ENV}
    os.environ.update(_SERVER_ENV)
    t0 = time.monotonic()
    try:
        default_server.start()
        default_server.wait_started(timeout=START_TIMEOUT_S * 1000)
    except Exception as exc:  # noqa: BLE001 - TimeoutError, RuntimeError (exited), OSError
        default_server.stop()
        default_server.cleanup()
        pytest.skip(f"Milvus test server did not start within {START_TIMEOUT_S} s under {base} "
                    f"(logs in {base}/logs): {type(exc).__name__}: {exc}")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    started = time.monotonic() - t0
    uri = f"http://127.0.0.1:{default_server.listen_port}"
    print(f"\nMilvus test server at {uri} started in {started:.1f} s (base dir {base})")
    try:
        yield MilvusServer(uri, EMBEDDED_TOKEN, embedded=True)
    finally:
        default_server.stop()
        default_server.cleanup()


@pytest.fixture
def milvus_uri(milvus_server: MilvusServer) -> str:
    return milvus_server.uri


@pytest.fixture
def milvus_token(milvus_server: MilvusServer) -> str | None:
    return milvus_server.token


@pytest.fixture
def collection_name(request: pytest.FixtureRequest) -> str:
    """A collection name of this test alone (letters, digits and _ only, as Milvus requires)."""
    name = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    return f"t_{name}_{uuid.uuid4().hex[:8]}"
