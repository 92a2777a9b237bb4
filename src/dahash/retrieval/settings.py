"""The settings of ``dahash serve`` checked and defaulted: the packages it needs, the ranges of
:func:`dahash.retrieval.serve.create_app`'s limits, and its thread count by default."""

import importlib.util
import math
import os
from typing import Any

from dahash.errors import ConfigError, DahashError

__all__ = ["INSTALL_HINT", "require_server_packages", "check_settings", "default_threads", "default_lanes"]

INSTALL_HINT = "pip install 'dahash[serve]'"


def require_server_packages() -> None:
    """A one-line :class:`DahashError` naming the missing package when FastAPI, uvicorn or
    python-multipart is not installed."""

    def found(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken module, or one without a spec
            return False

    # python-multipart is imported as python_multipart (>= 0.0.13) or, before, as multipart.
    for modules, package in ((("fastapi",), "fastapi"), (("uvicorn",), "uvicorn"),
                             (("python_multipart", "multipart"), "python-multipart")):
        if not any(found(m) for m in modules):
            raise DahashError(f"dahash serve needs {package}, which is not installed: {INSTALL_HINT}")


def _positive_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


def _seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def check_settings(*, max_upload_bytes: Any, max_concurrent: Any, queue_timeout: Any, max_batch: Any,
                   max_wait_ms: Any, lanes: Any = 1) -> None:
    """A :class:`ConfigError` naming the first setting of :func:`dahash.retrieval.serve.create_app`
    out of its range."""
    if not _positive_int(max_upload_bytes):
        raise ConfigError(f"max_upload_bytes must be a positive integer, got {max_upload_bytes!r}")
    if not _positive_int(max_concurrent):
        raise ConfigError(f"max_concurrent must be a positive integer, got {max_concurrent!r}")
    if not _seconds(queue_timeout):
        raise ConfigError(f"queue_timeout must be a finite number of seconds >= 0, got {queue_timeout!r}")
    if not _positive_int(max_batch):
        raise ConfigError(f"max_batch must be a positive integer, got {max_batch!r}")
    if not _seconds(max_wait_ms):
        raise ConfigError(f"max_wait_ms must be a finite number of milliseconds >= 0, got {max_wait_ms!r}")
    if not _positive_int(lanes):
        raise ConfigError(f"lanes must be a positive integer, got {lanes!r}")


def default_threads(max_concurrent: int, max_batch: int, cores: int | None = None) -> int:
    """The torch and FAISS threads of ``dahash serve`` by default: every core when uploads are
    batched (one batch at a time runs the backbone), else the cores divided among the
    ``max_concurrent`` uploads encoded side by side, at least one (more threads than cores made
    each of them slower, see benchmarks/serve_load.py)."""
    cores = cores or os.cpu_count() or 1
    return cores if max_batch > 1 else max(1, cores // max(1, int(max_concurrent)))


def default_lanes(threads: int, max_batch: int) -> int:
    """The batch lanes of ``dahash serve`` by default: one per thread when uploads are batched, each
    lane running its batches on one torch thread (on 2 cores, two lanes of one thread ran the model
    at 1.46x one lane of two, see benchmarks/README.md); none (1) without batching."""
    return threads if max_batch > 1 else 1
