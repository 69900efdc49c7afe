"""Micro-batches without idle waiting: `take_available(stream, max_n, max_age_s)`.

Faust's `Stream.take_events(n, within)` yields when its buffer holds `n` events or when
`within` seconds pass, so a lone click waits the whole window (50 ms by default) before
any work. Here a batch is what is already there: the agent waits only when nothing is
buffered, and otherwise takes, without waiting, the events the stream has already
fetched, up to `max_n`.

Acking is the caller's. Faust commits a partition's offsets up to the first event not
acked, and `take_events` acks a batch when the loop body returns (its `finally`, which
also runs when the body raises and the generator is closed: a batch whose outputs were
lost would still be committed). Here nothing is acked: the caller acks each event with
`stream.ack(event)` once the batch's outputs are delivered, batch after batch in the
order they were yielded (stream/worker/publisher.py, `OrderedAcks`). Acks out of order
are not safe: Faust's `Consumer._new_offset` commits the first run of consecutive
acked offsets, and with no commit yet (or a hole of one offset) that run may start
past an event not acked.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Sequence


def take_available(stream, max_n: int, max_age_s: float) -> AsyncIterator[Sequence]:
    """Yield lists of 1..`max_n` events (Faust `EventT`s) in stream order, never acked.

    A batch is yielded as soon as the stream has no further event already fetched
    (its channel queue is empty) or it holds `max_n`; if neither happens within
    `max_age_s` of the batch's first event (the queue keeps getting events but the
    buffer does not fill), it goes as it is. While nothing is buffered it waits.

    What bounds a click's wait: the work of the batch in progress when it arrives, then
    its own batch's work (at most `max_n` events); with a backlog, it also waits
    behind the batches fetched before it, and, when the agent already has
    `MAX_BATCHES_IN_FLIGHT` batches awaiting delivery, for the oldest of those
    (stream/worker/publisher.py). `max_age_s` only bounds the filling of one batch,
    which never waits for more input.

    While the caller works on a batch, the stream keeps filling the next one, up to
    `max_n` events; then it holds (Kafka keeps the rest).
    """
    agen = _take_available(stream, max_n, max_age_s)
    active = getattr(stream, "_active_agens", None)
    if active is not None:  # as Faust's take*: Stream.on_stop closes it
        active.add(agen)
    return agen


async def _take_available(stream, max_n: int, max_age_s: float) -> AsyncIterator[Sequence]:
    state = _Buffer(stream, max_n)
    prev_acks = stream.enable_acks
    stream.enable_acks = False  # the caller acks, after the outputs are delivered
    stream.add_processor(state.add)
    try:
        stream._enable_passive(stream.channel.__aiter__())  # the stream feeds `add`
        while not stream.should_stop:
            if not state.events:
                await stream.wait_for_stopped(state.arrived)  # idle: wait for the first
                continue
            if not state.ready.is_set():  # still filling from the fetched queue
                age = time.monotonic() - state.first_at
                await stream.wait_for_stopped(state.ready, timeout=max(0.0, max_age_s - age))
            await state.settle(max_age_s)
            batch = state.take()
            if batch:
                yield batch
    finally:
        stream.enable_acks = prev_acks
        stream._processors.remove(state.add)


SETTLE_TURNS = 3  # event-loop turns without a new event that end a batch's filling


class _Buffer:
    """The events the stream handed over since the last batch; `arrived` is set when
    there is one, `ready` when the batch can go (full, or no other event waiting in
    the stream's queue)."""

    def __init__(self, stream, max_n: int):
        self.stream, self.max_n = stream, max_n
        self.events: list = []
        self.first_at = 0.0
        self.ready = asyncio.Event()
        self.arrived = asyncio.Event()  # the buffer holds an event
        self.room = asyncio.Event()  # the buffer may grow; cleared while full
        self.room.set()
        queue = getattr(stream.channel, "queue", None)
        self.queued = queue.qsize if queue is not None else (lambda: 0)

    async def add(self, value):
        """The stream's processor: runs in the stream's task for each event."""
        event = self.stream.current_event
        if event is None:
            raise RuntimeError("take_available: the stream gave a value without its event")
        if not self.events:
            self.first_at = time.monotonic()
            self.arrived.set()
        self.events.append(event)
        full = len(self.events) >= self.max_n
        if full or not self.queued():
            self.ready.set()
        if full:
            self.room.clear()
            await self.stream.wait(self.room)  # never more than max_n: Kafka keeps the rest
        return value

    async def settle(self, max_age_s: float) -> None:
        """A few event-loop turns, while they bring more: the fetcher hands the stream
        the records it has already fetched a chunk at a time, and between two chunks
        the stream's queue is empty for a turn or two. No timer: a lone click costs
        `SETTLE_TURNS` turns (microseconds)."""
        deadline = self.first_at + max_age_s
        while len(self.events) < self.max_n and time.monotonic() < deadline:
            before = len(self.events)
            for _ in range(SETTLE_TURNS):
                await asyncio.sleep(0)
            if len(self.events) == before:
                return

    def take(self) -> list:
        batch, self.events = self.events, []
        self.ready.clear()
        self.arrived.clear()
        self.room.set()
        return batch
