"""stream/worker/faust_fixes.py on a real Faust consumer, built but not started: the fixes are
in the consumer's own bookkeeping, which needs no broker. The fetch under the fixed
`getmany` is a list of messages here; benchmarks/reliability.py's scale scenarios
check the whole against the real broker."""

from __future__ import annotations

import asyncio

import faust
from faust.types import TP

from stream.worker import faust_fixes, metrics

CLICKS = "clicks"
P0, P1, CHANGELOG = TP(CLICKS, 0), TP(CLICKS, 1), TP("app-user_state-changelog", 0)


class Msg:
    def __init__(self, offset):
        self.offset = offset


def fixed_consumer(tmp_path, batches=()):
    """Faust's consumer with the fixes installed over a fetch that yields `batches`,
    one per getmany call; a batch item that is a callable runs (a seek, a revoke)
    when the fetcher loop reaches it."""
    app = faust.App("faust-fixes-test", broker="kafka://127.0.0.1:9", store="memory://",
                    datadir=str(tmp_path), web_enabled=False)
    consumer = app.consumer
    batches = list(batches)

    async def fetch(timeout):
        for item in batches.pop(0) if batches else []:
            if callable(item):
                item(consumer)
            else:
                yield item

    consumer.failures = []  # "seek" or "seek_wait": the next such call raises

    async def perform_seek():  # Faust's asks the broker for the committed offsets
        consumer.seeks_asked = getattr(consumer, "seeks_asked", 0) + 1
        if "seek" in consumer.failures:
            consumer.failures.remove("seek")
            raise RuntimeError("rebalancing")
        consumer._read_offset.update({})

    async def seek_wait(partitions):  # Faust's moves aiokafka's fetch positions
        if "seek_wait" in consumer.failures:
            consumer.failures.remove("seek_wait")
            raise RuntimeError("rebalancing")
        consumer.sought = getattr(consumer, "sought", []) + [dict(partitions)]

    consumer.getmany, consumer.perform_seek, consumer.seek_wait = fetch, perform_seek, seek_wait
    faust_fixes.install(app, CLICKS)
    return consumer


def drain(consumer) -> list[tuple[int, int]]:
    """One getmany call, as the fetcher loop makes it: (partition, offset) delivered."""
    async def run():
        return [(tp.partition, m.offset) async for tp, m in consumer.getmany(timeout=1.0)]
    return asyncio.run(run())


def seek(offsets):
    return lambda consumer: consumer._read_offset.update(offsets)  # what perform_seek does


def held(why: str) -> float:
    return metrics.HELD_BACK.labels(why=why)._value.get()


def test_clicks_wait_for_the_seek_after_an_assignment(tmp_path):
    before = held("not_seeked")
    consumer = fixed_consumer(tmp_path, [
        [(P0, Msg(50)), (CHANGELOG, Msg(7))],  # flow resumed before the seek
        [seek({P0: 40, P1: None, CHANGELOG: 7})],
        [(P0, Msg(40)), (P0, Msg(41))],
    ])
    assert drain(consumer) == [(0, 7)], "a click fetched before the seek went through"
    assert held("not_seeked") == before + 1
    drain(consumer)
    assert drain(consumer) == [(0, 40), (0, 41)]


def test_clicks_held_back_are_fetched_again_whenever_the_seek_came(tmp_path):
    """The rebalance's seek moves aiokafka's position (consumer thread) before its
    `update` reaches the read offsets: a click fetched in between is held back as not
    seeked, and the seek that follows the update does not fetch it again. So a seek
    seen after a hold-back is followed by one of our own (lost in scale_churn once)."""
    consumer = fixed_consumer(tmp_path, [
        [(P0, Msg(40))],  # fetched after the position moved to 40, before the update
        [seek({P0: 40})],  # the update: aiokafka already stands at 41
        [(P0, Msg(40)), (P0, Msg(41))],  # our seek went back to 40
        [(P0, Msg(42))],
    ])
    assert drain(consumer) == []
    drain(consumer)
    assert drain(consumer) == [(0, 40), (0, 41)]
    assert consumer.seeks_asked == 1
    assert drain(consumer) == [(0, 42)] and consumer.seeks_asked == 1  # once only


def test_a_partition_with_nothing_committed_is_fetched_from_its_start(tmp_path):
    # aiokafka's seek_to_committed leaves the position alone when there is no
    # committed offset: what was held back would be skipped
    consumer = fixed_consumer(tmp_path, [
        [(P0, Msg(0)), (P1, Msg(5))],  # fetched before the first seek: held back
        [seek({P0: None, P1: 5})],
        [(P0, Msg(0)), (P1, Msg(5))],
    ])
    assert drain(consumer) == []
    drain(consumer)
    assert drain(consumer) == [(0, 0), (1, 5)]
    assert consumer.sought == [{P0: 0}]


def test_failed_seeks_are_retried_and_hold_clicks_back_meanwhile(tmp_path):
    consumer = fixed_consumer(tmp_path, [
        [seek({P0: None, P1: 20})],
        [(P0, Msg(0)), (P1, Msg(20))],  # the seek to P0's start failed: P0 waits
        [(P0, Msg(0)), (P1, Msg(21)), seek({P1: 20}), (P1, Msg(22))],  # cut off, seek fails
        [(P1, Msg(20))],  # the retry failed again: held back
        [(P1, Msg(20))],
    ])
    drain(consumer)
    consumer.failures = ["seek_wait"]
    assert drain(consumer) == [(1, 20)]
    consumer.failures = ["seek", "seek"]
    assert drain(consumer) == [(0, 0), (1, 21)]
    assert consumer.sought == [{P0: 0}]
    assert drain(consumer) == []
    assert drain(consumer) == [(1, 20)]
    assert consumer.seeks_asked == 3


def test_a_batch_fetched_before_a_seek_is_cut_off_there(tmp_path):
    before = held("fetched_before_seek")
    consumer = fixed_consumer(tmp_path, [
        [seek({P0: 10, P1: 20})],
        [(P0, Msg(10)), (P1, Msg(20)), seek({P0: 10, P1: 20}), (P0, Msg(11)), (P1, Msg(21))],
    ])
    drain(consumer)
    assert drain(consumer) == [(0, 10), (1, 20)]
    assert held("fetched_before_seek") == before + 1
    assert consumer.seeks_asked == 1, "what was cut off must be fetched again"


def test_a_revoked_partition_waits_for_its_next_seek(tmp_path):
    consumer = fixed_consumer(tmp_path, [
        [seek({P0: 10, P1: 20})],
        [lambda c: c._read_offset.pop(P1, None), (P0, Msg(10)), (P1, Msg(20))],
        [seek({P1: 20})],
        [(P1, Msg(20))],
    ])
    drain(consumer)
    assert drain(consumer) == [(0, 10)]
    drain(consumer)
    assert drain(consumer) == [(1, 20)]


def test_a_suspended_flow_does_not_move_the_clicks_read_offset(tmp_path):
    consumer = fixed_consumer(tmp_path)
    set_read_offset = consumer._read_offset.__setitem__  # as the fetcher loop binds it
    set_read_offset(P0, 41)
    before = held("suspended")
    consumer.stop_flow()  # what a rebalance does first
    set_read_offset(P0, 42)  # the message the suspended flow did not deliver
    set_read_offset(CHANGELOG, 7)  # other topics keep Faust's behaviour
    assert consumer._read_offset[P0] == 41, "an undelivered click would be dropped"
    assert consumer._read_offset[CHANGELOG] == 7
    assert held("suspended") == before + 1
    consumer.resume_flow()
    set_read_offset(P0, 42)
    assert consumer._read_offset[P0] == 42
    assert consumer._read_offset[TP(CLICKS, 3)] is None  # never read: Faust's default


def test_a_gap_on_the_clicks_topic_is_counted_and_logged(tmp_path, caplog):
    consumer = fixed_consumer(tmp_path)
    gaps = metrics.OFFSET_GAPS._value.get()
    asyncio.run(consumer._add_gap(TP(CLICKS, 1), 10, 14))
    asyncio.run(consumer._add_gap(TP("compacted", 1), 10, 14))
    assert metrics.OFFSET_GAPS._value.get() == gaps + 1
    assert "offsets 10..13 of clicks[1] are missing" in caplog.text
    assert consumer._gap[TP(CLICKS, 1)], "Faust's own bookkeeping still runs"


def test_written_for_the_pinned_faust():
    """The fix patches Faust's consumer internals: a new faust-streaming needs a look."""
    import re
    from pathlib import Path
    pin = re.search(r'"faust-streaming==([\d.]+)"',
                    (Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert pin and pin.group(1) == faust.__version__ == faust_fixes.WRITTEN_FOR
