"""A batch's `user_state` writes: the row into the partition's RocksDB at once, and its
changelog record through the batch's librdkafka `Outbox`, next to the batch's outputs.

Why not `table[user] = row`: Faust then sends the changelog record through its own
Python producer (aiokafka). A row is the model's whole state, 37 KB for the full-size
model, and on the concurrent workload about 0.7 rows are written per click: Faust's
producer and its socket writes were a quarter of the worker's event loop
(benchmarks/results/stream_worker_profile.txt). librdkafka sends them from its own
threads, in C.

What Faust's path did and this one keeps:
- the record: the same topic (the table's changelog), key and value bytes (the store's
  own encoders), partition (the event's, as `Table.partition_for_key`), a tombstone
  (value None) for a delete;
- at-least-once: the batch's events are acked only after every record of the batch,
  outputs and changelog, is delivered (`OrderedAcks`), so a commit never covers a row
  that is not in the changelog; librdkafka's idempotent producer keeps each
  partition's records in order;
- recovery: Faust keeps in each partition's RocksDB the offset of the last changelog
  record it holds (`set_persisted_offset`) and on restart replays the changelog from
  there. Here it is set once per partition per batch, when the batch is delivered,
  to the highest offset delivered (never lowered).
"""

from __future__ import annotations

import asyncio
import weakref

from faust.streams import _current_event
from faust.types import TP

from stream.worker.publisher import Outbox


class StateWrites:
    """The `user_state` table's writes, one object per worker."""

    def __init__(self, table):
        self.table = table
        self.persisted: dict[int, int] = {}  # partition -> offset set in RocksDB

    @property
    def topic(self) -> str:
        return self.table.changelog_topic.get_topic_name()

    def put(self, out: Outbox, event, user_id: str, row: bytes) -> None:
        """Write `row` as `event`'s partition's row of `user_id`."""
        store = self.table.data
        with _as_current(event):
            store[user_id] = row  # RocksDB of the event's partition
        out.send(self.topic, store._encode_key(user_id), store._encode_value(row),
                 partition=event.message.partition, track=True)

    def delete(self, out: Outbox, event, user_id: str) -> None:
        store = self.table.data
        with _as_current(event):
            try:
                del store[user_id]
            except KeyError:
                pass  # nothing stored: the tombstone still goes out, as Faust's would
        out.send(self.topic, store._encode_key(user_id), None,
                 partition=event.message.partition, track=True)

    def on_delivered(self, out: Outbox):
        """A done-callback for the batch's delivery future: record in RocksDB the
        changelog offsets the batch reached, as Faust's `_on_changelog_sent` did."""
        def record(future: asyncio.Future) -> None:
            if future.cancelled() or future.exception() is not None:
                return  # not delivered: the worker stops, nothing is recorded
            topic = self.topic
            for partition, offset in out.offsets.get(topic, {}).items():
                if offset > self.persisted.get(partition, -1):
                    self.persisted[partition] = offset
                    self.table.data.set_persisted_offset(TP(topic, partition), offset)
        return record


class _as_current:
    """Make `event` Faust's current event for the store writes inside the block (the
    RocksDB store picks the partition's database by it)."""

    def __init__(self, event):
        self.event = event

    def __enter__(self):
        self.token = _current_event.set(weakref.ref(self.event))

    def __exit__(self, *exc):
        _current_event.reset(self.token)
