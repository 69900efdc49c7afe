"""Every table row starts with a stamp: the partition and offset of the last event its
user's state applied. The three rows of a state carry the same stamp.

Why: a user's state is three rows in three changelogs, and a kill -9 can lose the
unsent tail of one changelog and not of another. Faust's recovery replays each changelog
from the last offset it persisted, so it can carry one row back to an older version
than the local store holds while the other two stay new: a torn state, which the
redelivery check then keeps (it skips the events the newer meta row has seen; seen in
benchmarks/reliability.py's kill -9 scenario). `whole` tells a torn state from a whole
one, so it is counted and logged. Skipping changelog records older than the local row
at recovery would prevent it, but breaks on Faust's zombie writes: a worker that keeps
processing a revoked partition's prefetched events leaves rows stamped newer than the
new owner's, and they must lose (seen in the 1 -> 2 -> 1 scenario).
"""

from __future__ import annotations

import struct

STAMP = struct.Struct(">iq")  # partition, offset


def stamp(partition: int, offset: int, payload: bytes) -> bytes:
    return STAMP.pack(partition, offset) + payload


def split(value: bytes) -> tuple[tuple[int, int], bytes]:
    return STAMP.unpack_from(value), value[STAMP.size:]


def whole(*stamps: tuple[int, int]) -> bool:
    return len(set(stamps)) == 1
