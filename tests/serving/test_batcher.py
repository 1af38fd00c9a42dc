"""The cross-request batcher on its own: budgets, ordering, fairness, prefetch, backpressure, deadlines.

A fake `run` records every batch it is handed, so each test checks what the model would have seen.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from robertaops.errors import DeadlineExceededError, OverloadedError
from robertaops.serving.batcher import Batcher


class Recorder:
    """run(key, payloads) -> payload * 10; remembers batches; can be slowed or made to fail."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.batches: list[tuple] = []
        self.delay, self.fail = delay, fail
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, key, payloads):
        self.gate.wait(5)
        self.batches.append((key, list(payloads)))
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("model exploded")
        return [p * 10 for p in payloads]


def make(run, **kw) -> Batcher:
    opts = dict(max_batch_tokens=64, max_batch_requests=8, max_queued=100)
    opts.update(kw)
    return Batcher(run, **opts)


async def started(batcher: Batcher) -> Batcher:
    batcher.start()
    return batcher


def test_results_come_back_in_order_per_request():
    async def main():
        rec = Recorder()
        b = await started(make(rec))
        out = await asyncio.gather(b.submit("k", [1, 2, 3], [4, 4, 4]), b.submit("k", [7], [4]))
        await b.stop()
        return out

    assert asyncio.run(main()) == [[10, 20, 30], [70]]


def test_budget_and_row_cap_hold_across_requests():
    async def main():
        rec = Recorder()
        rec.gate.clear()  # hold the worker so that everything queues first
        b = await started(make(rec, max_batch_tokens=64, max_batch_requests=3))
        calls = [b.submit("k", [i], [length]) for i, length in enumerate([8, 8, 8, 8, 16, 16, 30, 60])]
        task = asyncio.gather(*calls)
        await asyncio.sleep(0.05)
        rec.gate.set()
        await task
        await b.stop()
        return rec.batches

    batches = asyncio.run(main())
    lengths = {0: 8, 1: 8, 2: 8, 3: 8, 4: 16, 5: 16, 6: 30, 7: 60}
    assert sorted(p for _, ps in batches for p in ps) == list(range(8))  # each input ran exactly once
    for _, ps in batches:
        assert len(ps) <= 3
        assert len(ps) == 1 or len(ps) * max(lengths[p] for p in ps) <= 64
    assert len(batches) < 8  # and inputs from different requests did share passes


def test_only_same_key_entries_share_a_batch():
    async def main():
        rec = Recorder()
        rec.gate.clear()
        b = await started(make(rec))
        task = asyncio.gather(b.submit("a", [1, 2], [4, 4]), b.submit("b", [3, 4], [4, 4]))
        await asyncio.sleep(0.05)
        rec.gate.set()
        await task
        await b.stop()
        return rec.batches

    for key, payloads in asyncio.run(main()):
        assert {"a": {1, 2}, "b": {3, 4}}[key] >= set(payloads)


def test_oldest_entry_is_never_starved_by_better_fitting_newcomers():
    batcher = make(lambda k, p: p, max_batch_tokens=40, max_batch_requests=4)

    async def main():
        loop = asyncio.get_running_loop()
        from robertaops.serving.batcher import Entry

        old = Entry("k", "old", 40, loop.create_future())
        batcher.pending = [old] + [Entry("k", f"n{i}", 5, loop.create_future()) for i in range(20)]
        return batcher.take()

    batch = asyncio.run(main())
    assert batch[0].payload == "old"  # the anchor rides first even though it fills the budget alone
    assert len(batch) == 1


def test_closest_lengths_join_the_anchor():
    batcher = make(lambda k, p: p, max_batch_tokens=300, max_batch_requests=3)

    async def main():
        loop = asyncio.get_running_loop()
        from robertaops.serving.batcher import Entry

        lengths = [50, 10, 90, 48, 52, 100]
        batcher.pending = [Entry("k", n, n, loop.create_future()) for n in lengths]
        return [e.payload for e in batcher.take()]

    assert sorted(asyncio.run(main())) == [48, 50, 52]


def test_a_lone_input_runs_alone_without_waiting_for_company():
    async def main():
        rec = Recorder()
        b = await started(make(rec))
        out = await b.submit("k", [5], [4])
        await b.stop()
        return out, rec.batches

    out, batches = asyncio.run(main())
    assert out == [50] and batches == [("k", [5])]


def test_queue_limit_raises_overloaded_before_queueing():
    async def main():
        rec = Recorder()
        rec.gate.clear()
        b = await started(make(rec, max_queued=3, max_batch_requests=1))
        first = asyncio.ensure_future(b.submit("k", [1, 2, 3], [4, 4, 4]))
        await asyncio.sleep(0.05)
        with pytest.raises(OverloadedError) as info:
            await b.submit("k", [4, 5], [4, 4])
        rec.gate.set()
        done = await first
        await b.stop()
        return info.value, done

    err, done = asyncio.run(main())
    assert err.retry_after > 0 and done == [10, 20, 30]


def test_deadline_drops_entries_before_they_run():
    async def main():
        rec = Recorder(delay=0.3)
        b = await started(make(rec, max_batch_requests=1))
        slow = asyncio.ensure_future(b.submit("k", [1], [4]))
        await asyncio.sleep(0.02)  # the worker is now busy with input 1
        with pytest.raises(DeadlineExceededError):
            await b.submit("k", [2, 3, 4], [4, 4, 4], timeout=0.05)
        await slow
        await asyncio.sleep(0.4)
        await b.stop()
        return rec.batches

    ran = [p for _, ps in asyncio.run(main()) for p in ps]
    assert 1 in ran
    assert not {3, 4} & set(ran)  # never prefetched, dropped once their deadline passed


def test_exactly_one_batch_is_prefetched_while_the_model_runs():
    async def main():
        rec = Recorder(delay=0.2)
        b = await started(make(rec, max_batch_requests=1))
        first = asyncio.ensure_future(b.submit("k", [0], [4]))
        await asyncio.sleep(0.05)  # worker busy with input 0
        rest = asyncio.ensure_future(b.submit("k", [1, 2, 3], [4, 4, 4]))
        await asyncio.sleep(0.05)
        waiting = len(b.pending)  # one of the three was taken as the prefetched batch
        await asyncio.gather(first, rest)
        await b.stop()
        return waiting

    assert asyncio.run(main()) == 2


def test_a_failing_batch_fails_its_requests_and_the_server_goes_on():
    async def main():
        rec = Recorder(fail=True)
        b = await started(make(rec))
        with pytest.raises(RuntimeError, match="exploded"):
            await b.submit("k", [1, 2], [4, 4])
        rec.fail = False
        out = await b.submit("k", [3], [4])
        await b.stop()
        return out

    assert asyncio.run(main()) == [30]


def test_the_prefetched_batch_takes_in_later_arrivals_before_it_runs():
    async def main():
        rec = Recorder(delay=0.2)
        b = await started(make(rec, max_batch_requests=4))
        first = asyncio.ensure_future(b.submit("k", [0], [4]))
        await asyncio.sleep(0.05)  # 0 is running
        second = asyncio.ensure_future(b.submit("k", [1], [4]))
        await asyncio.sleep(0.05)  # 1 is the prefetched batch
        third = asyncio.ensure_future(b.submit("k", [2, 3], [4, 4]))
        await asyncio.gather(first, second, third)
        await b.stop()
        return [ps for _, ps in rec.batches]

    assert asyncio.run(main()) == [[0], [1, 2, 3]]


def test_several_workers_run_batches_at_once():
    """Two workers: two single-input batches must be inside `run` together (a barrier both have to reach)."""
    meet = threading.Barrier(2, timeout=5)

    def run(key, payloads):
        meet.wait()  # BrokenBarrierError (the batch fails) unless the other batch is running at the same time
        return [p * 10 for p in payloads]

    async def main():
        b = await started(make(run, max_batch_requests=1, workers=2))
        out = await asyncio.gather(b.submit("k", [1], [4]), b.submit("k", [2], [4]))
        await b.stop()
        return out

    assert asyncio.run(main()) == [[10], [20]]


def test_a_new_batch_takes_its_share_of_the_queue_when_other_workers_idle():
    batcher = make(lambda k, p: p, max_batch_tokens=1000, max_batch_requests=64)

    async def main():
        loop = asyncio.get_running_loop()
        from robertaops.serving.batcher import Entry

        fill = lambda: [Entry("k", i, 10, loop.create_future()) for i in range(8)]  # noqa: E731
        batcher.pending = fill()
        alone = len(batcher.take())  # one idle worker: the whole queue fits the budget
        batcher.pending = fill()
        shared = [len(batcher.take(idle_workers=2)), len(batcher.take(idle_workers=1))]
        return alone, shared

    assert asyncio.run(main()) == (8, [4, 4])


def test_a_burst_on_an_idle_server_runs_on_every_worker_at_once():
    """One request of 8 inputs, two idle workers: two batches of 4 must be inside `run` together."""
    meet = threading.Barrier(2, timeout=5)
    sizes = []

    def run(key, payloads):
        sizes.append(len(payloads))
        meet.wait()  # a single batch of 8 would wait here alone and fail
        return [p * 10 for p in payloads]

    async def main():
        b = await started(make(run, max_batch_tokens=1000, max_batch_requests=64, workers=2))
        out = await b.submit("k", list(range(8)), [10] * 8)
        await b.stop()
        return out

    assert asyncio.run(main()) == [p * 10 for p in range(8)]
    assert sorted(sizes) == [4, 4]
