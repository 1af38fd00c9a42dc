"""Cross-request dynamic batching by token budget: pure asyncio, no torch, no web framework.

Every input of every request is its own `Entry`. One loop assembles batches:
- the oldest live entry anchors the next batch, so nothing starves however unlucky its length;
- entries with the same key (model, task, parameters) and the closest lengths join it while the padded size
  (rows x longest) stays within `max_batch_tokens` and the row count within `max_batch_requests`;
- no delay timer: an idle server runs a lone entry at once; under load, entries pile up while the model is busy,
  so batches grow by themselves;
- exactly one batch is prefetched: while the worker runs batch N, batch N+1 is assembled in a one-batch slot and
  topped up with compatible newcomers (within the budget) until the worker takes it;
- with several workers, a batch started while other workers idle takes only its share of the queued tokens, so a
  burst that lands on an idle server runs on all of them at once instead of as one batch on one of them;
- entries whose request gave up (client gone, deadline passed) are dropped before they run.
The model runs in one worker thread, off the event loop, and takes the prefetched batch itself the moment it
finishes one, rather than waiting for the loop (busy answering the finished batch's requests) to hand it over.
Results go back to the loop in one callback per batch. Backpressure: more than `max_queued` inputs in flight
(waiting or running) raises OverloadedError (HTTP 429) at submission, before anything is queued.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import DeadlineExceededError, OverloadedError

log = logging.getLogger("robertaops.serving")


@dataclass(eq=False)
class Entry:
    key: Hashable
    payload: Any
    tokens: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)
    deadline: float | None = None
    meta: Any = None  # opaque to the batcher (the backend keeps the request's trace context here)
    started: float | None = None  # when its forward pass began / ended (time.monotonic)
    finished: float | None = None

    @property
    def live(self) -> bool:
        return not self.future.done() and (self.deadline is None or time.monotonic() < self.deadline)


@dataclass
class BatchStats:
    """What one forward pass looked like, for metrics."""

    key: Hashable
    size: int
    padded_tokens: int
    queue_seconds: float  # longest wait of an entry in the batch
    run_seconds: float
    started: float  # time.monotonic() when the forward pass began / ended
    finished: float
    entries: list[Entry]


RunFn = Callable[[Hashable, list[Any]], list[Any]]


class Batcher:
    def __init__(self, run: RunFn, *, max_batch_tokens: int, max_batch_requests: int, max_queued: int,
                 max_entry_tokens: int | None = None, on_batch: Callable[[BatchStats], None] | None = None,
                 workers: int = 1):
        """`run(key, payloads)` computes one result per payload; it runs in a worker thread. With `workers` > 1,
        that many batches run at once (each worker taking the next batch from the one prefetched slot)."""
        self.run = run
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_requests = max_batch_requests
        self.max_queued = max_queued
        self.max_entry_tokens = max_entry_tokens  # a long input counts as one window wide in the budget
        self.on_batch = on_batch
        self.pending: list[Entry] = []  # event-loop owned
        self.in_flight = 0  # inputs submitted and not yet answered: queued, prefetched or running
        self._wake = asyncio.Event()
        self.workers = workers
        self._worker = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="robertaops-model")
        self._task: asyncio.Task | None = None
        self._lock = threading.Lock()  # guards the two fields below, shared by the loop and the worker
        self._slot: list[Entry] | None = None  # the prefetched batch
        self._active = 0  # workers draining the slot

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="robertaops-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        with self._lock:
            slot, self._slot = self._slot or [], None
        for entry in self.pending + slot:
            entry.future.cancel()
        self.pending.clear()
        self._worker.shutdown(wait=True, cancel_futures=True)

    async def warm_up(self, fn: Callable[[], Any]) -> None:
        """Run `fn` once on every worker thread, so that all of them exist from now on (the executor would start
        them one by one as load grows, each inheriting the niceness of the thread that happened to submit work:
        the event loop's, once it is lowered) and each has run a forward pass before taking traffic."""
        barrier = threading.Barrier(self.workers)

        def on_its_own_thread() -> None:
            barrier.wait()  # every call holds its thread until all have one: `workers` distinct threads
            fn()

        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._worker, on_its_own_thread) for _ in range(self.workers)))

    @property
    def queued(self) -> int:
        return sum(1 for e in self.pending if not e.future.done())

    # -- submission -----------------------------------------------------------------------------------------------
    async def submit(self, key: Hashable, payloads: Sequence[Any], tokens: Sequence[int],
                     timeout: float | None = None, meta: Any = None,
                     timings: dict[str, float] | None = None) -> list[Any]:
        """Queue one entry per payload and wait for all their results (in order).

        `timings`, if given, gets "queue" (first arrival to first forward pass) and "inference" (first pass start to
        last pass end) added, in seconds: a request's inputs may run in several batches."""
        if not payloads:
            return []
        if self.in_flight + len(payloads) > self.max_queued:
            raise OverloadedError(
                f"server busy: {self.in_flight} inputs in flight, limit {self.max_queued}; retry shortly",
                retry_after=1.0,
            )
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout if timeout else None
        entries = [Entry(key, p, t, loop.create_future(), deadline=deadline, meta=meta)
                   for p, t in zip(payloads, tokens, strict=True)]
        self.pending.extend(entries)
        self.in_flight += len(entries)
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):  # cheaper than wait_for(gather(...)) for the usual lone input
                results = [await entries[0].future] if len(entries) == 1 else list(
                    await asyncio.gather(*(e.future for e in entries)))
            if timings is not None:
                first = min(e.started for e in entries if e.started is not None)
                last = max(e.finished for e in entries if e.finished is not None)
                timings["queue"] = timings.get("queue", 0.0) + max(0.0, first - min(e.enqueued for e in entries))
                timings["inference"] = timings.get("inference", 0.0) + last - first
            return results
        except TimeoutError:
            raise DeadlineExceededError(f"the request did not finish within {timeout:g} s") from None
        finally:
            self.in_flight -= len(entries)
            for e in entries:  # on timeout or client disconnect: mark them dead so the loop drops them
                if not e.future.done():
                    e.future.cancel()

    # -- batch assembly -------------------------------------------------------------------------------------------
    def _width(self, entry: Entry) -> int:
        return min(entry.tokens, self.max_entry_tokens) if self.max_entry_tokens else entry.tokens

    def take(self, batch: list[Entry] | None = None, idle_workers: int = 1) -> list[Entry]:
        """Remove and return the next batch: the oldest live entry plus its closest-length companions.

        Given a `batch` (the prefetched one, about to run), top it up instead with entries that arrived since.
        With `idle_workers` > 1, a new batch holds about 1/idle_workers of the queued tokens (at least its anchor):
        the rest is left for the next batch, which the next idle worker runs meanwhile."""
        keep = []
        for e in self.pending:  # drop the abandoned before they cost anything
            if e.live:
                keep.append(e)
            elif not e.future.done():
                e.future.cancel()  # deadline passed
        self.pending = keep
        new = batch is None
        if new:
            if not self.pending:
                return []
            batch = [self.pending.pop(0)]
        anchor = batch[0]
        widest = max(map(self._width, batch))
        budget = self.max_batch_tokens
        if new and idle_workers > 1:
            queued = self._width(anchor) + sum(self._width(e) for e in self.pending if e.key == anchor.key)
            budget = min(budget, max(-(-queued // idle_workers), widest))
        # Candidates nearest the anchor's length first; stop at the first that would break the budget.
        same = sorted((e for e in self.pending if e.key == anchor.key),
                      key=lambda e: abs(self._width(e) - self._width(anchor)))
        added: set[int] = set()
        for e in same:
            width = max(widest, self._width(e))
            if len(batch) >= self.max_batch_requests or (len(batch) + 1) * width > budget:
                break
            batch.append(e)
            added.add(id(e))
            widest = width
        self.pending = [e for e in self.pending if id(e) not in added]
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            with self._lock:
                if self._slot is None:
                    self._slot = self.take(idle_workers=self.workers - self._active) or None
                else:  # the worker has not taken it yet: top it up with newcomers
                    self.take(self._slot)
                start = self._slot is not None and self._active < self.workers
                self._active += start
            if start:
                loop.run_in_executor(self._worker, self._drain, loop)
            await self._wake.wait()  # new entries, or the worker took the slot

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Worker thread: run the slot's batch, and the next one prefetched meanwhile, until the slot is empty."""
        try:
            while True:
                with self._lock:
                    batch, self._slot = self._slot, None
                    if batch is None:
                        self._active -= 1
                        return
                loop.call_soon_threadsafe(self._wake.set)  # the slot is free: prefetch the next batch
                self._execute(batch, loop)
        except BaseException:
            with self._lock:
                self._active -= 1
            log.exception("the batch worker failed")
            raise

    def _execute(self, batch: list[Entry], loop: asyncio.AbstractEventLoop) -> None:
        """Run one batch and hand each entry its result (or the batch's exception), in one loop callback."""
        batch = [e for e in batch if e.live]  # it may have waited as the prefetched batch
        if not batch:
            return
        started = time.monotonic()
        try:
            results = self.run(batch[0].key, [e.payload for e in batch])
            error = None
        except Exception as exc:  # noqa: BLE001 - delivered to every waiting request
            results, error = None, exc
        finished = time.monotonic()
        for entry in batch:
            entry.started, entry.finished = started, finished
        loop.call_soon_threadsafe(_resolve_all, batch, results, error)
        if self.on_batch is not None:
            self.on_batch(BatchStats(
                key=batch[0].key, size=len(batch), padded_tokens=len(batch) * max(map(self._width, batch)),
                queue_seconds=started - min(e.enqueued for e in batch), run_seconds=finished - started,
                started=started, finished=finished, entries=batch,
            ))


def _resolve_all(batch: list[Entry], results: list[Any] | None, error: BaseException | None) -> None:
    for k, entry in enumerate(batch):
        _resolve(entry.future, None if results is None else results[k], error)


def _resolve(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the request gave up meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
