"""Micro-batching without idle waits (stream/worker/batching.py) and the ordered,
delivery-gated acks (stream/worker/publisher.py), on a fake stream: no broker."""

import asyncio
import time

import pytest

from stream.errors import DeliveryFailed
from stream.worker.batching import take_available
from stream.worker.publisher import OrderedAcks


class FakeStream:
    """What take_available uses of a Faust Stream: its channel's queue, processors, a
    passive drainer that hands each event to them as `current_event` (one per loop
    turn, as Stream._py_aiter does), `enable_acks`, and Service waits."""

    def __init__(self, queue=None):
        self.channel = self
        self.queue = queue or asyncio.Queue()
        self.enable_acks = True
        self._processors = []
        self.current_event = None
        self.should_stop = False
        self.acked = []

    def __aiter__(self):
        return self

    def add_processor(self, fun):
        self._processors.append(fun)

    def _enable_passive(self, channel):
        self.drainer = asyncio.ensure_future(self._drain())

    async def _drain(self):
        while True:
            await asyncio.sleep(0)
            event = await self.queue.get()
            self.current_event = event
            for fun in self._processors:
                await fun(event)
            self.current_event = None

    async def wait(self, event):
        await event.wait()

    async def wait_for_stopped(self, event, timeout=None):
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return False

    async def ack(self, event):
        self.acked.append(event)


async def batches(stream, max_n, max_age_s, count):
    out = []
    agen = take_available(stream, max_n, max_age_s)
    async for batch in agen:
        out.append(list(batch))
        if len(out) == count:
            break
    await agen.aclose()
    return out


def test_a_lone_event_goes_at_once_even_with_a_long_max_age():
    async def run():
        stream = FakeStream()
        stream.queue.put_nowait("click")
        t0 = time.monotonic()
        got = await asyncio.wait_for(batches(stream, 200, 30.0, 1), timeout=5)
        return got, time.monotonic() - t0, stream

    got, took, stream = asyncio.run(run())
    assert got == [["click"]]
    assert took < 5  # take_events(200, within=30) would have held it 30 s
    assert stream.acked == [] and stream.enable_acks is True  # acking is the caller's


def test_what_is_buffered_goes_in_one_batch_and_max_n_splits_it_in_order():
    async def run(n, max_n, count):
        stream = FakeStream()
        for i in range(n):
            stream.queue.put_nowait(i)
        return await asyncio.wait_for(batches(stream, max_n, 30.0, count), timeout=5)

    assert asyncio.run(run(5, 200, 1)) == [[0, 1, 2, 3, 4]]
    assert asyncio.run(run(7, 3, 3)) == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_batch_that_keeps_filling_goes_at_its_max_age():
    class NeverDry(asyncio.Queue):
        def qsize(self):  # as if the fetcher always had more on the way
            return 1 + super().qsize()

    async def run():
        stream = FakeStream(NeverDry())
        stream.queue.put_nowait("a")
        stream.queue.put_nowait("b")
        return await asyncio.wait_for(batches(stream, 200, 0.05, 1), timeout=5)

    assert asyncio.run(run()) == [["a", "b"]]


def test_acks_follow_delivery_in_batch_order_and_stop_at_a_failure():
    async def run():
        loop = asyncio.get_running_loop()
        stream, failures = FakeStream(), []

        async def on_failure(exc):
            failures.append(exc)

        acks = OrderedAcks(on_failure, limit=3)
        acks.start()
        first, second, third, fourth = (loop.create_future() for _ in range(4))
        acks.add(first, ["a1", "a2"], stream.ack)
        acks.add(second, ["b1"], stream.ack)
        second.set_result(None)  # delivered before the first batch: must wait for it
        await asyncio.sleep(0.01)
        before_first = list(stream.acked)
        first.set_result(None)
        await acks.drained()
        acked_two = list(stream.acked)
        acks.add(third, ["c1"], stream.ack)
        restarted = FakeStream()  # e.g. the stream of an actor Faust restarted
        acks.add(fourth, ["d1"], restarted.ack)
        fourth.set_result(None)  # delivered, but after a batch that fails
        third.set_exception(DeliveryFailed("output to recs not delivered"))
        await asyncio.sleep(0.01)
        with pytest.raises(DeliveryFailed):
            await acks.room()  # the agent takes no further batch
        return before_first, acked_two, stream.acked + restarted.acked, failures

    before_first, acked_two, acked, failures = asyncio.run(run())
    assert before_first == []
    assert acked_two == ["a1", "a2", "b1"]
    assert acked == ["a1", "a2", "b1"]  # the failed batch and later ones never acked
    assert len(failures) == 1  # and the worker is stopped once


def test_after_a_batch_lost_before_delivery_nothing_more_is_acked():
    async def run():
        loop = asyncio.get_running_loop()
        stream = FakeStream()

        async def on_failure(exc):
            pass

        acks = OrderedAcks(on_failure)
        acks.start()
        acks.fail(RuntimeError("the agent raised in the middle of a batch"))
        later = loop.create_future()
        with pytest.raises(RuntimeError):
            acks.add(later, ["x"], stream.ack)
        return stream.acked

    assert asyncio.run(run()) == []


def test_a_message_refused_before_sending_fails_its_batch():
    """librdkafka refuses a message over message.max.bytes in produce() itself: the
    batch's delivery fails as it would for a message the broker refused (no broker
    is needed to see it)."""
    from stream.config import StreamConfig
    from stream.worker.publisher import Publisher

    async def run():
        publisher = Publisher(StreamConfig(bootstrap_servers="127.0.0.1:9"))
        publisher.start()
        out = publisher.batch()
        out.send("recs", b"u1", b"x" * (9 << 20))  # over the producer's 8 MiB + 64 KiB
        try:
            with pytest.raises(DeliveryFailed, match="MSG_SIZE_TOO_LARGE"):
                await asyncio.wait_for(out.close(), timeout=10)
        finally:
            publisher.stop()

    asyncio.run(run())
