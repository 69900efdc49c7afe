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

Layout (format 3): format (1 byte), meta length, GRU length, history length (4 bytes
each, big-endian), then the history (stream/worker/history.py: the item ids of the
user's recent sessions, from which a new model version rebuilds the state), meta
(orjson), GRU state h (float32), TCN window (float32, the rest). Format 2, what
workers wrote before histories were kept, is the same without the history length and
the history: it still parses, as a row with no history.

`UserState` is the row's Python side (`to_row`, `from_row`). A row that does not parse
raises BadState: "bad_state:format" (shorter than the header, another format byte),
"bad_state:truncated" (shorter than its header says), "bad_state:meta" (meta not JSON,
not exactly META's keys, or of other types); "bad_state:shape" (blobs not of the
model's size) is found by process_batch, which knows the model. The worker
dead-letters the event that met such a row and starts that user afresh instead of
stopping (stream/worker/recommend.py). A history that does not parse is no bad
state: it is dropped where it is read (a cache of clicks, stream/worker/history.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import orjson

from stream.errors import BadState

HEADER = struct.Struct(">BII")  # format, meta length, GRU length
HISTORY_LEN = struct.Struct(">I")  # after the header, from format 3 on
FORMAT = 3  # 1 was three tables, each row stamped; a new table name keeps them apart
READ = (2, 3)  # 2: no history


def pack(meta: bytes, gru: bytes, window: bytes, history: bytes = b"") -> bytes:
    return (HEADER.pack(FORMAT, len(meta), len(gru)) + HISTORY_LEN.pack(len(history))
            + history + meta + gru + window)


def unpack(row: bytes) -> tuple[bytes, bytes, bytes]:
    """(meta, gru, window) of a row."""
    return split(row)[:3]


def split(row: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(meta, gru, window, history) of a row; b"" history for a format 2 row."""
    if len(row) < HEADER.size:
        raise BadState("format", f"{len(row)} bytes, shorter than the {HEADER.size}-byte header")
    if row[0] not in READ:
        raise BadState("format", f"format byte {row[0]}, this build reads {READ}")
    _, meta_len, gru_len = HEADER.unpack_from(row)
    start, history = HEADER.size, b""
    if row[0] == 3:
        if start + HISTORY_LEN.size > len(row):
            raise BadState("truncated", f"{len(row)} bytes, cut in the history length")
        (history_len,) = HISTORY_LEN.unpack_from(row, start)
        start += HISTORY_LEN.size + history_len
        history = row[start - history_len:start]
    gru_start = start + meta_len
    window_start = gru_start + gru_len
    if window_start > len(row):
        raise BadState("truncated", f"{len(row)} bytes, the header says at least "
                                    f"{window_start}")
    return row[start:gru_start], row[gru_start:window_start], row[window_start:], history


@dataclass
class UserState:
    """One user's state: the design's three parts, stored as one row."""

    gru: bytes  # long-term state h (float32)
    window: bytes  # TCN caches + session sums + latest embedding (float32)
    model: str  # model version that wrote gru and window
    session: int = 0  # sessions opened so far; also the session id in messages
    sessions_rolled: int = 0  # GRU updates
    last_ts: float | None = None  # latest event time in the current session
    length: int = 0  # events fed in the current session
    clicked: list[int] = field(default_factory=list)  # item indices in the session
    offset: int = -1  # offset of the last event applied, in `partition`
    partition: int = -1  # of that event (-1: a state from before partitions were kept)
    applied: int = 0  # events applied since the state was created: proves exactly-once
    last_seen: float | None = None  # latest event time of any session: the TTL clock
    # the item ids of the recent sessions (stream/worker/history.py), any model's
    history: bytes = b""

    def to_row(self) -> bytes:
        meta = orjson.dumps({name: getattr(self, name) for name in META})
        return pack(meta, self.gru, self.window, self.history)

    @classmethod
    def from_row(cls, row: bytes) -> "UserState":
        """Raises BadState for a row that does not parse or whose meta is not exactly
        META's keys with META's types; the blobs' sizes are checked against the model
        by the caller (process_batch)."""
        meta, gru, window, history = split(row)
        try:
            fields = orjson.loads(meta)
        except orjson.JSONDecodeError:
            raise BadState("meta", "meta is not JSON") from None
        if type(fields) is not dict or fields.keys() != META.keys():
            raise BadState("meta", f"meta is not an object with the keys {sorted(META)}")
        for name, types in META.items():
            if type(fields[name]) not in types:
                raise BadState("meta", f"meta {name!r} is a {type(fields[name]).__name__}")
        if not all(type(item) is int for item in fields["clicked"]):
            raise BadState("meta", "meta 'clicked' holds something other than item indices")
        return cls(gru=gru, window=window, history=history, **fields)


_TIME = (float, int, type(None))
# the meta part of a row: UserState's fields but the three blobs, with the JSON types
# each may have (times are written as floats; an int is a time too)
META = {"model": (str,), "session": (int,), "sessions_rolled": (int,), "last_ts": _TIME,
        "length": (int,), "clicked": (list,), "offset": (int,), "partition": (int,),
        "applied": (int,), "last_seen": _TIME}
