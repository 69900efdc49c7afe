"""Stamped rows: recovery from a changelog never moves a local RocksDB row back."""

from __future__ import annotations

from types import SimpleNamespace

import faust
from faust.types import TP

from stream import stamps
from stream.app import rocksdb_options
from stream.stamps import StampedTable


def record(offset: int, key: bytes, value: bytes | None, partition: int = 0):
    """A changelog record as Faust's recovery hands it to the table."""
    tp = TP("rows-changelog", partition)
    return SimpleNamespace(message=SimpleNamespace(tp=tp, offset=offset, partition=partition,
                                                   key=key, value=value))


def test_stamp_round_trip_and_order():
    value = stamps.stamp(3, 41, b"payload")
    assert stamps.split(value) == ((3, 41), b"payload")
    assert stamps.older(stamps.stamp(3, 40, b""), value)
    assert not stamps.older(value, value)
    # two partitions' offsets are not comparable: the changelog is trusted
    assert not stamps.older(stamps.stamp(2, 1, b""), value)
    assert stamps.whole((3, 41), (3, 41), (3, 41)) and not stamps.whole((3, 41), (3, 40))


def test_recovery_skips_records_older_than_the_local_row(tmp_path):
    app = faust.App("stamps-test", store="rocksdb://", datadir=str(tmp_path))
    table = app.tables.add(StampedTable(app, name="rows", beacon=app.tables.beacon,
                                        key_type=str, value_type=bytes, partitions=1,
                                        options=rocksdb_options()))
    db = table.data._db_for_partition(0)
    new, old = stamps.stamp(0, 900, b"new"), stamps.stamp(0, 580, b"old")
    db.put(b'"u"', new)  # written locally before its changelog record was lost
    table.apply_changelog_batch([record(7, b'"u"', old), record(8, b'"v"', old)])
    assert db.get(b'"u"') == new, "an older changelog record moved the local row back"
    assert db.get(b'"v"') == old, "a key the store lacks is restored"
    table.apply_changelog_batch([record(9, b'"u"', stamps.stamp(0, 950, b"newer"))])
    assert stamps.split(db.get(b'"u"')) == ((0, 950), b"newer")
    table.apply_changelog_batch([record(10, b'"u"', None)])  # a tombstone always applies
    assert db.get(b'"u"') is None
