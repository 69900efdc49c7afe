"""A user's recent clicks as a compact blob, kept in the user's row so that a new model
version can rebuild the user's state from them (stream/worker/recommend.py) instead of
starting the user afresh.

What is kept: the external item ids (a new model has another vocabulary) of the
clicks applied, every one (an id this model does not know may be known to the next),
in order, with the session boundaries the stream cut. At most `bound` events: the
oldest whole sessions are dropped first; an open session alone over the bound loses
its oldest events.

Layout: events in the blob and events in its open session (uint32 each, big-endian),
then tokens: a click is varint(len(id)) + the id in UTF-8, and a zero byte (an empty
id, which no event has) closes a session. b"" is no history. About len(id) + 1 bytes a
click: 2-7 for MovieLens ids. A click costs one append (no parse); the blob is read
token by token only where the bound drops sessions (the dropped tokens only) and at a
rebuild.
"""

from __future__ import annotations

import struct

HEAD = struct.Struct(">II")  # events, events of the open session
END = b"\x00"


class BadHistory(ValueError):
    """The blob does not parse; the caller drops it (a history is a cache, not state)."""


def append(blob: bytes, item_id: str, bound: int) -> bytes:
    """`blob` with a click on `item_id` added to its open session, within `bound`."""
    if bound <= 0:
        return b""
    raw = item_id.encode()
    token = _varint(len(raw)) + raw
    try:
        events, open_ = _head(blob)
        body = blob[HEAD.size:] + token
        events, open_ = events + 1, open_ + 1
        if events > bound:
            body, events, open_ = _trim(body, events, open_, bound)
    except BadHistory:
        body, events, open_ = token, 1, 1  # a broken blob is replaced, the click kept
    return HEAD.pack(events, open_) + body


def close_session(blob: bytes) -> bytes:
    """`blob` with its open session closed (nothing to close: unchanged)."""
    try:
        events, open_ = _head(blob)
    except BadHistory:
        return b""
    if not open_:
        return blob
    return HEAD.pack(events, 0) + blob[HEAD.size:] + END


def sessions(blob: bytes) -> list[list[str]]:
    """The item ids by session, oldest first; the last is the open session (maybe
    empty). Raises BadHistory for a blob that does not parse."""
    events, open_ = _head(blob)
    raw: list[list[bytes]] = [[]]
    session = raw[-1]
    i, n = HEAD.size, len(blob)
    while i < n:
        length = blob[i]
        if length < 0x80:  # the one-byte length of nearly every id, inline: a rebuild
            i += 1         # reads a whole history per user
        else:
            length, i = _read_varint(blob, i)
        if length == 0:
            session = []
            raw.append(session)
            continue
        if i + length > n:
            raise BadHistory("a click runs past the end")
        session.append(blob[i:i + length])
        i += length
    try:
        out = [[item.decode() for item in ids] for ids in raw]
    except UnicodeDecodeError:
        raise BadHistory("an id is not UTF-8") from None
    if sum(map(len, out)) != events or len(out[-1]) != open_:
        raise BadHistory("the counts in the head do not match the clicks")
    return out


def encode(history: list[list[str]], bound: int) -> bytes:
    """The blob of sessions of ids (the last one open), as appends would build it."""
    blob = b""
    for k, session in enumerate(history):
        if k:
            blob = close_session(blob)
        for item_id in session:
            blob = append(blob, item_id, bound)
    return blob


def count(blob: bytes) -> int:
    """Events in the blob (0 for one that does not parse)."""
    try:
        return _head(blob)[0]
    except BadHistory:
        return 0


def _head(blob: bytes) -> tuple[int, int]:
    if not blob:
        return 0, 0
    if len(blob) < HEAD.size:
        raise BadHistory("shorter than its head")
    events, open_ = HEAD.unpack_from(blob)
    if open_ > events:
        raise BadHistory("more open events than events")
    return events, open_


def _trim(body: bytes, events: int, open_: int, bound: int) -> tuple[bytes, int, int]:
    """Drop the oldest whole closed sessions until at most `bound` events are left,
    then, if the open session alone is over, its oldest events. Reads the dropped
    tokens only."""
    i, dropped, closed = 0, 0, events - open_
    while closed:
        length, i = _read_varint(body, i)
        if length:
            i += length
            dropped += 1
            if dropped > closed:
                raise BadHistory("closed sessions do not match the head")
            continue
        if events - dropped <= bound:  # a closed session ends here: cut after it
            return body[i:], events - dropped, open_
        if dropped == closed:
            break
    while events - dropped > bound:  # the open session alone is over the bound
        length, i = _read_varint(body, i)
        if length == 0 or i + length > len(body):
            raise BadHistory("the open session does not match the head")
        i += length
        dropped += 1
        open_ -= 1
    return body[i:], events - dropped, open_


def _varint(n: int) -> bytes:
    if n < 0x80:  # every id of 127 bytes or fewer: one byte
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(blob: bytes, i: int) -> tuple[int, int]:
    """(value, index after it)."""
    shift = value = 0
    while True:
        if i >= len(blob):
            raise BadHistory("a length runs past the end")
        byte = blob[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
