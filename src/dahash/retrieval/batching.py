"""Dynamic batching: worker threads (lanes) run a function on batches of the items that concurrent
requests submit, each request getting its own row (bounded batch size, bounded wait)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any


class Batcher:
    """``lanes`` worker threads that run ``encode`` on batches of the items concurrent requests submit.

    A request announces itself (:meth:`announce`) before it prepares its item (decoding, in its
    own thread) and submits the item when ready; it gets a Future of its own row of the batch's
    output (or of the batch's exception). A free worker takes the oldest waiting item and more,
    until it holds ``max_batch`` items, ``max_wait`` seconds have passed since the oldest was
    submitted, or no announced request is still preparing one: a lone request never waits.

    With ``lanes`` > 1, that many batches run side by side (``encode`` must then be safe to call
    from several threads at once). A lane then takes at most its share of the waiting items (the
    queue divided by the lanes, rounded up), and waits for items still being prepared only when no
    other lane is free: a lane that took every item while another sat idle would leave a core
    unused, and on a CPU a batch does not run its images faster than one image at a time.

    The workers start on the first submission (an app that is never asked gets none) and stop
    on :meth:`close`, after the items already submitted; a later submission starts them again.
    """

    def __init__(self, encode: Callable[[list[Any]], Sequence[Any]], max_batch: int, max_wait: float,
                 lanes: int = 1) -> None:
        self.encode, self.max_batch, self.max_wait, self.lanes = encode, max_batch, max_wait, lanes
        self._cond = threading.Condition()
        self._queue: deque[tuple[Any, Future, float]] = deque()  # (item, its Future, submitted at)
        self._coming = 0  # requests announced and still preparing their item
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._running = 0  # lanes running a batch
        self.batches = self.images = self.largest = 0  # for /stats

    @contextlib.contextmanager
    def announce(self) -> Iterator[Callable[[Any], Future]]:
        """While the block runs, the worker may wait (up to ``max_wait``) for this request's item;
        the block gets ``submit(item) -> Future``, to call at most once."""
        submitted = False

        def submit(item: Any) -> Future:
            nonlocal submitted
            if submitted:
                raise RuntimeError("one item per announcement")
            future: Future = Future()
            with self._cond:
                submitted = True
                self._coming -= 1
                self._queue.append((item, future, time.monotonic()))
                self._start()
                self._cond.notify_all()
            return future

        with self._cond:
            self._coming += 1
        try:
            yield submit
        finally:
            if not submitted:  # the item failed to prepare: nobody waits for it any more
                with self._cond:
                    self._coming -= 1
                    self._cond.notify_all()

    def _start(self) -> None:
        """Start the workers that are not running (called holding the lock)."""
        self._threads = [t for t in self._threads if t.is_alive()]
        if len(self._threads) < self.lanes:
            self._closing = False
        while len(self._threads) < self.lanes:
            thread = threading.Thread(target=self._work, name=f"dahash-serve-lane{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def close(self) -> None:
        """Stop the workers once the submitted items are done."""
        with self._cond:
            self._closing = True
            threads = list(self._threads)
            self._cond.notify_all()
        for thread in threads:
            thread.join()

    def _next_batch(self) -> list[tuple[Any, Future]] | None:
        """The next batch to run (a worker that is told to close drains the queue, then gets None)."""
        with self._cond:
            while True:
                while not self._queue:
                    if self._closing:
                        self._threads.remove(threading.current_thread())  # a submission from now on starts it again
                        return None
                    self._cond.wait()
                deadline = self._queue[0][2] + self.max_wait
                while (0 < len(self._queue) < self.max_batch and self._coming > 0 and not self._closing
                       and len(self._threads) - self._running <= 1):  # no other lane is free
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._queue:  # else another lane took the items while this one waited for more
                    break
            share = -(-len(self._queue) // self.lanes)
            taken = [self._queue.popleft() for _ in range(min(self.max_batch, share))]
            self._running += 1
        # A request cancelled meanwhile (its client went away) is dropped from the batch.
        batch = [(item, future) for item, future, _ in taken if future.set_running_or_notify_cancel()]
        with self._cond:
            self.batches += bool(batch)
            self.images += len(batch)
            self.largest = max(self.largest, len(batch))
        return batch

    def _work(self) -> None:
        """The worker: run batches until closed; each request gets its row or the batch's exception."""
        while (batch := self._next_batch()) is not None:
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()  # a lane waiting for stragglers may now leave them to this one

    def _run(self, batch: list[tuple[Any, Future]]) -> None:
        """Encode one batch and hand each request its row, or every request the batch's exception."""
        if not batch:
            return
        try:
            rows = self.encode([item for item, _ in batch])
            if len(rows) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} items gave {len(rows)} rows")
        except BaseException as exc:  # noqa: BLE001 - handed to every request of the batch
            for _, future in batch:
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), row in zip(batch, rows):
            future.set_result(row)

    @property
    def queued(self) -> int:
        """Items submitted and not yet taken into a batch."""
        with self._cond:
            return len(self._queue)

    def stats(self) -> dict[str, Any]:
        """The bounds, and the batches run so far: how many, of how many images, the largest."""
        with self._cond:
            return {"max_batch": self.max_batch, "max_wait_ms": self.max_wait * 1000, "lanes": self.lanes,
                    "batches": self.batches, "images": self.images, "largest_batch": self.largest}
