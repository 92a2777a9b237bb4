"""DataLoader whose forked worker processes inherit no garbage from the parent."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

__all__ = ["ForkSafeLoader"]


class ForkSafeLoader(DataLoader):
    """A ``DataLoader`` that collects the parent's cyclic garbage before it forks its workers.

    A forked worker inherits every unreachable object cycle the parent had not yet collected,
    and the worker's own garbage collector then finalises them there. A gRPC channel (pymilvus
    holds several) closes itself in its finaliser, calling into gRPC's event engine, whose
    threads do not exist in the child: the worker aborts (``ev_epoll1_linux.cc: ASSERTION
    FAILED``), seen once in CI after the Milvus tests. Collected in the parent first, such an
    object is finalised where its threads live, and the worker never sees it.
    """

    def __iter__(self) -> Iterator[Any]:
        """Start the workers (after a collection in this process) and iterate."""
        if self.num_workers > 0:
            gc.collect()
        return super().__iter__()
