"""DataLoader whose forked worker processes cannot be brought down by what the parent holds."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

__all__ = ["ForkSafeLoader"]


class ForkSafeLoader(DataLoader):
    """A ``DataLoader`` that forks its workers only when forking is safe, and clean.

    * Where gRPC is loaded (pymilvus's client is built on it), the data is loaded in this
      process instead (``num_workers`` 0). A DataLoader worker forked after the Milvus tests
      died twice in CI-like runs, once with ``SIGABRT`` right after gRPC's
      ``ev_epoll1_linux.cc: ASSERTION FAILED`` and once with ``SIGSEGV``. gRPC's event engine
      does not survive a fork, and a child that touches it crashes.
    * Before it forks, it collects the parent's cyclic garbage. A forked worker inherits every
      unreachable cycle the parent had not yet collected, and the worker's own collector would
      finalise them there. A gRPC channel among them closes itself in its finaliser, in the
      child. Collected in the parent first, such an object is finalised where its threads live.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """``DataLoader``'s arguments; ``num_workers`` becomes 0 where gRPC is loaded."""
        if kwargs.get("num_workers", 0) > 0 and "grpc" in sys.modules:
            kwargs["num_workers"] = 0
            kwargs.pop("prefetch_factor", None)
            kwargs.pop("persistent_workers", None)
        super().__init__(*args, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        """Start the workers (after a collection in this process) and iterate."""
        if self.num_workers > 0:
            gc.collect()
        return super().__iter__()
