"""Table reads on the real RocksDB store (no broker): the agent reads a user's row
with one get in the event's partition; Faust's `table.get` without a current event
(what the agent did before) asks every partition's RocksDB, twice (`in`, then the
read). Run with -s for the counts and timings."""

from __future__ import annotations

import time
from collections import Counter

import faust
import pytest

from stream.worker.agents import _as_current
from stream.worker.app import rocksdb_options

PARTITIONS = 4
USERS = 2000  # more than Faust's key index (table_key_index_size, 1000 by default)


class CountingDB:
    """A partition's RocksDB, counting the calls that read it."""

    def __init__(self, db, partition: int, calls: Counter):
        self.db, self.partition, self.calls = db, partition, calls

    def get(self, key, *args):
        self.calls[("get", self.partition)] += 1
        return self.db.get(key, *args)

    def key_may_exist(self, key, *args):
        self.calls[("key_may_exist", self.partition)] += 1
        return self.db.key_may_exist(key, *args)

    def __getattr__(self, name):
        return getattr(self.db, name)


class FakeEvent:
    """Faust's current event, as far as the store reads it."""

    def __init__(self, partition: int):
        self.message = type("Message", (), {"partition": partition})()


@pytest.fixture
def table(tmp_path):
    app = faust.App("reads-test", store="rocksdb://", datadir=str(tmp_path),
                    key_serializer="raw", value_serializer="raw")
    table = app.Table("user_state", key_type=str, value_type=bytes, partitions=PARTITIONS,
                      options=rocksdb_options())
    store = table.data
    for user in range(USERS):  # every user's row in its own partition's db
        with _as_current(FakeEvent(user % PARTITIONS)):
            store[f"u{user}"] = b"x" * 600
    calls = Counter()
    for p in range(PARTITIONS):
        store._dbs[p] = CountingDB(store._db_for_partition(p), p, calls)
    return table, calls


def read_all(read, users):
    t0 = time.perf_counter()
    for user in users:
        assert read(user) is not None
    return (time.perf_counter() - t0) / len(users) * 1e6  # µs per read


def test_one_get_per_read_in_the_events_partition_only(table):
    table, calls = table
    users = range(USERS)

    def agent_read(user):  # as stream/worker/agents.py handle_batch's load
        with _as_current(FakeEvent(user % PARTITIONS)):
            return table.data.get(f"u{user}")

    new_us = read_all(agent_read, users)
    new = Counter(kind for kind, _ in calls.elements())
    assert new == {"get": USERS}  # one RocksDB get per read, no bloom probes
    assert all(calls[("get", p)] == USERS // PARTITIONS for p in range(PARTITIONS))

    calls.clear()
    old_us = read_all(lambda user: table.get(f"u{user}"), users)  # no current event
    old = Counter(kind for kind, _ in calls.elements())
    assert old["get"] >= 2 * USERS  # `in` then the read: two gets at least
    print(f"\nper read of {USERS} users over {PARTITIONS} partitions: agent "
          f"{new['get'] / USERS:.2f} get, {new_us:.1f} µs; Faust table.get without a "
          f"current event {old['get'] / USERS:.2f} get + {old['key_may_exist'] / USERS:.2f} "
          f"key_may_exist, {old_us:.1f} µs")
