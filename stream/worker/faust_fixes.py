"""Fixes to Faust's consumer across a rebalance, installed on every worker
(stream/worker/app.py): without them a rebalance could skip clicks, never answered nor applied
and committed past (seen in benchmarks/reliability.py's scale scenarios).

What goes wrong, in faust/transport/consumer.py and faust/tables/recovery.py
(faust-streaming 0.15): when no table needs restoring, recovery resumes the flow
*before* it seeks the partitions back to their committed offsets (`perform_seek`).
The fetcher loop (`_drain_messages`) then hands the streams messages fetched ahead of
the committed offset (the ones a rebalance cleared from the stream buffers were already
fetched), and the rest of such a batch can still arrive after the seek. The loop takes
a message past its read offset + 1 for a "gap" (meant for compacted and transactional
topics), which later commits count as done, and drops re-fetched messages below its
read offset as already read: the clicks in between are lost. Also, the loop records a
read offset even for a message it did not deliver because a rebalance suspended the
flow. (Seen with DEVLOG=1: "DROPPED MESSAGE" lines and the gaps this module logs, in
the scale_churn scenario.)

The fix, for the clicks topic only: a partition's clicks are delivered only after the
seek that follows its (re)assignment (which fetches them again; with nothing committed
that seek leaves the position alone, so such a partition is seeked to its start); a
batch during whose fetch a seek happened is cut off there and the consumer seeks to the
committed offsets again, as it does after any seek that follows held-back clicks (the
rebalance's seek may have moved the fetch position before they were fetched); an
undelivered message never moves the read offset. Gaps are left to Faust (a
transactional producer's markers make real ones), but counted and logged.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import faust

from stream.worker import metrics

log = logging.getLogger(__name__)


class ClicksReadOffsets(defaultdict):
    """Faust's {partition: read offset}, which also knows which clicks partitions have
    been seeked to their committed offset since they were (re)assigned. Faust writes it
    three ways: `update` from `perform_seek` (a seek: counted in `seeks`), `pop` when a
    partition is revoked, and item assignment for each message the fetcher loop read."""

    def __init__(self, consumer, topic: str, current):
        super().__init__(lambda: None, current)
        self.consumer, self.topic = consumer, topic
        self.seeked: set = set()
        self.from_start: set = set()  # seeked to "no committed offset": see update
        self.seeks = 0
        self.seek_pending = False  # a seek after a cut-off batch failed: retried
        # `seeks` when a click was first held back for want of a seek since we last
        # sought ourselves: see in_order
        self.held_at: int | None = None

    def update(self, *args, **kwargs):
        offsets = dict(*args, **kwargs)
        super().update(offsets)
        for tp, offset in offsets.items():
            if tp.topic == self.topic:
                self.seeked.add(tp)
                if not offset:
                    # nothing committed (None) or 0: aiokafka's seek_to_committed does
                    # not move the position then, which would skip what was fetched
                    self.from_start.add(tp)
        self.seeks += 1
        self.seek_pending = False

    def pop(self, tp, *default):
        self.seeked.discard(tp)
        self.from_start.discard(tp)
        return super().pop(tp, *default)

    def __setitem__(self, tp, offset):
        if tp.topic == self.topic and self.consumer.suspend_flow.is_set():
            # a message the suspended flow did not deliver: it is read again later
            metrics.HELD_BACK.labels(why="suspended").inc()
            return
        super().__setitem__(tp, offset)


def _deliver_in_order(consumer, offsets: ClicksReadOffsets) -> None:
    getmany = consumer.getmany

    async def in_order(timeout: float):
        if offsets.seek_pending:
            await _seek_again(consumer, offsets)
        if offsets.held_at not in (None, offsets.seeks) and not offsets.seek_pending:
            # clicks were held back waiting for a seek, and a seek has come: but a
            # rebalance's seek moves aiokafka's position in the consumer thread before
            # `update` shows it here, so the held clicks may have been fetched *after*
            # that move, and nothing would fetch them again (seen: one click lost in
            # scale_churn under load). Seeking once more from here costs a re-fetch.
            await _seek_again(consumer, offsets)
        if offsets.from_start:
            await _seek_to_start(consumer, offsets)
        seeks = offsets.seeks  # before the fetch: a seek during it makes the batch stale
        async for tp, message in getmany(timeout):
            if tp.topic == offsets.topic and consumer._read_offset is offsets:
                if offsets.seeks != seeks:
                    metrics.HELD_BACK.labels(why="fetched_before_seek").inc()
                    await _seek_again(consumer, offsets)
                    return
                if (tp not in offsets.seeked or tp in offsets.from_start
                        or offsets.seek_pending):  # its position is not right yet
                    metrics.HELD_BACK.labels(why="not_seeked").inc()
                    if offsets.held_at is None:
                        offsets.held_at = offsets.seeks
                    continue
            yield tp, message

    consumer.getmany = in_order


async def _seek_to_start(consumer, offsets: ClicksReadOffsets) -> None:
    """Partitions with nothing committed start over from their first offset (the
    consumer's auto_offset_reset, earliest, if that is gone): the state skips what it
    has applied. Retried at the next fetch if it fails, until the partition is revoked."""
    tps, offsets.from_start = offsets.from_start, set()
    try:
        await consumer.seek_wait({tp: 0 for tp in tps})
    except Exception as exc:
        offsets.from_start |= tps
        log.warning("seek of %s to their start failed, retrying: %r", sorted(tps), exc)


async def _seek_again(consumer, offsets: ClicksReadOffsets) -> None:
    """Back to the committed offsets: whether the batch cut off was fetched before the
    seek or after it, its clicks are fetched again (those applied and not yet committed
    are skipped by the state, and answered again). Faust's getmany does the same when
    it finds the flow stopped. Retried at the next fetch if it fails, until some seek
    (a rebalance's own) succeeds."""
    try:
        await consumer.perform_seek()
        offsets.held_at = None  # this seek came after every click held so far
    except Exception as exc:
        offsets.seek_pending = True
        log.warning("seek to the committed offsets (after a stale batch or held-back "
                    "clicks) failed, retrying: %r", exc)


def _watch_gaps(consumer, topic: str) -> None:
    add_gap = consumer._add_gap

    async def watched(tp, offset_from: int, offset_to: int) -> None:
        if tp.topic == topic:
            metrics.OFFSET_GAPS.inc()
            log.warning("offsets %d..%d of %s[%d] are missing (read offset %r, committed "
                        "%r); Faust counts them as done", offset_from, offset_to - 1,
                        tp.topic, tp.partition, consumer._read_offset.get(tp),
                        consumer._committed_offset.get(tp))
        await add_gap(tp, offset_from, offset_to)

    consumer._add_gap = watched


WRITTEN_FOR = "0.15.3"  # the faust-streaming whose consumer this was read against


def install(app, clicks_topic: str, fix: bool = True) -> None:
    """Before the worker starts: the fetcher loop binds these when it starts. `fix`
    False leaves Faust as it is, still watching for gaps (to show the loss)."""
    if faust.__version__ != WRITTEN_FOR:
        log.warning("stream/worker/faust_fixes.py was written for faust-streaming %s, this is %s: "
                    "check that its consumer still needs and fits the fix", WRITTEN_FOR,
                    faust.__version__)
    consumer = app.consumer
    if fix:
        offsets = ClicksReadOffsets(consumer, clicks_topic, consumer._read_offset)
        consumer._read_offset = offsets
        _deliver_in_order(consumer, offsets)
    _watch_gaps(consumer, clicks_topic)
