"""One user's state is one row of the `user_state` table: the design's three parts,
session meta, GRU state and TCN window, behind a small header.

Why one row and not three tables: a table is a changelog topic, and a kill -9 can lose
the unsent tail of one changelog and not of another. With three, a recovery (in place,
or on the worker that takes the partition over) found a user's TCN window one batch
behind its meta; the redelivery check, which reads the meta, then skipped the events
the window lacked: a torn state, seen in benchmarks/reliability.py's kill -9 scenario.
One record per user is written whole or not at all, and Faust flushes the changelog
before it commits source offsets, so whichever version recovery restores, every event
after it is redelivered and applied: exactly-once state without transactions.

Layout: format (1 byte), meta length, GRU length (4 bytes each, big-endian), then meta
(orjson), GRU state h (float32), TCN window (float32, the rest).
"""

from __future__ import annotations

import struct

from stream.errors import StreamError

HEADER = struct.Struct(">BII")
FORMAT = 2  # 1 was three tables, each row stamped; a new table name keeps them apart


def pack(meta: bytes, gru: bytes, window: bytes) -> bytes:
    return HEADER.pack(FORMAT, len(meta), len(gru)) + meta + gru + window


def unpack(row: bytes) -> tuple[bytes, bytes, bytes]:
    """(meta, gru, window) of a row."""
    if len(row) < HEADER.size or row[0] != FORMAT:
        raise StreamError("a user_state row of another format: this app id's table was "
                          "written by another build; use a new --app-id (or delete the "
                          "datadir and the app's changelog topics) to start it afresh")
    _, meta_len, gru_len = HEADER.unpack_from(row)
    start = HEADER.size
    gru_start = start + meta_len
    window_start = gru_start + gru_len
    if window_start > len(row):
        raise StreamError(f"a user_state row is cut short: {len(row)} bytes, the header "
                          f"says at least {window_start}")
    return row[start:gru_start], row[gru_start:window_start], row[window_start:]
