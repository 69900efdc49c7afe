"""A deterministic (seeded) fuzz corpus for the worker's input contract and its stored
state, shared by tests/test_fuzz.py and the reliability benchmark
(`stream.tools.fuzz_run.run_scenario` feeds it to a real worker).

- `malformed(n, users, item, seed)`: n bad click messages, each with the dead-letter
  reason the decoder (stream/records.py) must give it: bad JSON, non-UTF-8, NaN and
  Infinity literals, 1e400, lone surrogates, nesting deeper than orjson's 1024, wrong
  types, out-of-range times, bad event names, key problems, tombstones, oversized
  payloads, duplicate keys (orjson keeps the last). One defect per message, so the
  reason is known by construction, not by asking the decoder.
- `odd_valid(n, item, seed)`: events that look odd but are valid and must be answered:
  ids with RTL marks, NUL, emoji, combining marks; unknown items; a duplicate key whose
  last value is good; nesting of exactly 1024.
- `corrupt_rows(good_row, n, seed)`: corrupted `user_state` rows, each with its
  "bad_state:<cause>" reason, or None for a row of another model version (reset and
  counted as a model reset, not a bad state).
"""

from __future__ import annotations

import random
import struct
import unicodedata
from dataclasses import dataclass

import orjson

from stream.records import MAX_TS
from stream.worker import rows

BASE_TS = 1_300_000_000  # event times of the corpus, Unix seconds


@dataclass(frozen=True)
class Case:
    kind: str  # what was done to the message
    key: bytes | None
    value: bytes | None  # None: a tombstone
    reason: str | None  # the DLQ reason it must get; None: valid, must be answered
    user: str | None = None  # a valid event's user
    event_id: str | None = None  # a valid event's event_id


@dataclass(frozen=True)
class RowCase:
    kind: str
    row: bytes
    reason: str | None  # "bad_state:<cause>"; None: not bad (another model: a reset)


# ---------------------------------------------------------------- raw JSON


def _obj(pairs) -> bytes:
    """A JSON object from (name, raw JSON value) pairs: literals orjson would never
    write (NaN, 1e400, duplicate names) stay as given."""
    return b"{" + b",".join(orjson.dumps(k) + b":" + v for k, v in pairs) + b"}"


def _click(user: str, item: str, rng: random.Random, **extra) -> list:
    # times within 10 minutes of 2011-03-13T07:06:40Z: a worker's TTL sweep finds no
    # one expired among the valid ones
    pairs = [("user_id", orjson.dumps(user)), ("item_id", orjson.dumps(item)),
             ("ts", str(rng.randrange(BASE_TS, BASE_TS + 600)).encode())]
    return pairs + [(k, v) for k, v in extra.items()]


def _with(pairs, name: str, raw: bytes | None) -> list:
    """`name` set to the raw value (None: dropped); appended if absent."""
    out = [(k, v) for k, v in pairs if k != name]
    return out if raw is None else out + [(name, raw)]


_NESTED = b"[" * 1024 + b"]" * 1024  # inside an object: depth 1025, over orjson's 1024
_NESTED_OK = b"[" * 1023 + b"]" * 1023  # depth 1024: orjson's limit, accepted

_WRONG_ID = [b"true", b"false", b"1.0", b"-1.5", b"[1]", b'{"id":1}', b"[]", b"{}",
             str(2**70).encode()]  # beyond u64: orjson makes it a float
_TS_OUT = [b"-1", b"-0.5", b"-1260759144", repr(MAX_TS).encode(), b"1260759144000",
           str(10**30).encode(), b'""', b'"yesterday"', b'"2016-13-01"',
           b'"2016-10-16T12:00:00+25:00"', b'"0001-01-01T00:00:00"', b'"\\u0000"',
           b'"1260759144"']


def _kinds(item: str, max_bytes: int):
    """(kind, reason, make(rng, user) -> (key, value)); one defect each."""
    def v(f):  # the user's key, a value built from a good click
        return lambda rng, u: (u.encode(), f(rng, u, _click(u, item, rng)))

    def pick(options):
        return lambda rng: rng.choice(options)

    return [
        ("truncated", "not_json", v(lambda r, u, p: _obj(p)[:r.randrange(1, len(_obj(p)))])),
        ("not_utf8", "not_json", v(lambda r, u, p: _obj(_with(p, "item_id", b'"caf\xe9"')))),
        ("not_utf8_bytes", "not_json",
         v(lambda r, u, p: _obj(_with(p, "event_id", b'"' + bytes([r.randrange(0x80, 0x100)])
                                      + b'"')))),
        ("lone_surrogate", "not_json",
         v(lambda r, u, p: _obj(_with(p, r.choice(["user_id", "item_id", "event_id"]),
                                      pick([b'"\\ud800"', b'"\\udfff"', b'"a\\ud83dz"'])(r))))),
        ("nan_literal", "not_json", v(lambda r, u, p: _obj(_with(p, "ts", b"NaN")))),
        ("infinity_literal", "not_json",
         v(lambda r, u, p: _obj(_with(p, "ts", pick([b"Infinity", b"-Infinity"])(r))))),
        ("float_overflow", "not_json",
         v(lambda r, u, p: _obj(_with(p, "ts", pick([b"1e400", b"-1e400"])(r))))),
        ("deep_nesting", "not_json", v(lambda r, u, p: _obj(_with(p, "x", _NESTED)))),
        ("tombstone", "not_json", lambda rng, u: (u.encode(), None)),
        ("empty_value", "not_json", lambda rng, u: (u.encode(), pick([b"", b"   "])(rng))),
        ("bom", "not_json", v(lambda r, u, p: b"\xef\xbb\xbf" + _obj(p))),
        ("trailing_garbage", "not_json", v(lambda r, u, p: _obj(p) + pick([b"x", b"}", b"{}"])(r))),
        ("single_quotes", "not_json", v(lambda r, u, p: _obj(p).replace(b'"', b"'"))),
        ("trailing_comma", "not_json", v(lambda r, u, p: _obj(p)[:-1] + b",}")),
        ("not_object", "not_object",
         v(lambda r, u, p: pick([b"[" + _obj(p) + b"]", b'"click"', b"42", b"null", b"true",
                                 b"[]"])(r))),
        ("no_user", "missing_field:user_id",
         v(lambda r, u, p: _obj(_with(p, "user_id", pick([None, b"null", b'""'])(r))))),
        ("no_item", "missing_field:item_id",
         v(lambda r, u, p: _obj(_with(p, "item_id", pick([None, b"null", b'""'])(r))))),
        ("no_ts", "missing_field:ts",
         v(lambda r, u, p: _obj(_with(p, "ts", pick([None, b"null"])(r))))),
        ("empty_event_id", "missing_field:event_id",
         v(lambda r, u, p: _obj(_with(p, "event_id", b'""')))),
        ("user_type", "wrong_type:user_id",
         v(lambda r, u, p: _obj(_with(p, "user_id", pick(_WRONG_ID)(r))))),
        ("item_type", "wrong_type:item_id",
         v(lambda r, u, p: _obj(_with(p, "item_id", pick(_WRONG_ID)(r))))),
        ("ts_type", "wrong_type:ts",
         v(lambda r, u, p: _obj(_with(p, "ts", pick([b"true", b"false", b"[1]",
                                                     b'{"s":1}'])(r))))),
        ("event_id_type", "wrong_type:event_id",
         v(lambda r, u, p: _obj(_with(p, "event_id", pick([b"true", b"1.5", b"[]",
                                                           b'{"a":"b"}'])(r))))),
        ("session_type", "wrong_type:session",
         v(lambda r, u, p: _obj(_with(_with(p, "event", b'"session_end"'), "session",
                                      pick([b'"1"', b"-1", b"1.5", b"true"])(r))))),
        ("applied_offset_type", "wrong_type:applied_offset",
         v(lambda r, u, p: _obj(_with(_with(p, "event", b'"expire"'), "applied_offset",
                                      pick([b"-1", b'"3"', b"true", b"2.5"])(r))))),
        ("ts_out_of_range", "bad_ts", v(lambda r, u, p: _obj(_with(p, "ts", pick(_TS_OUT)(r))))),
        ("bad_event", "bad_event",
         v(lambda r, u, p: _obj(_with(p, "event", pick([b'"purchase"', b'""', b"null", b"1",
                                                        b'["click"]', b'"CLICK"',
                                                        b'"click\\u0000"'])(r))))),
        ("dup_key_last_bad", "wrong_type:user_id",  # orjson keeps the last of a name
         v(lambda r, u, p: _obj(p + [("user_id", b"1.5")]))),
        ("dup_ts_last_bad", "bad_ts", v(lambda r, u, p: _obj(p + [("ts", b"-5")]))),
        ("empty_key", "empty_key",
         lambda rng, u: (b"", _obj(_click(u, item, rng)))),
        ("key_mismatch", "key_mismatch",
         lambda rng, u: (_mismatched_key(rng, u), _obj(_click(u, item, rng)))),
        ("nfd_key", "key_mismatch",  # the same text, other bytes: no match
         lambda rng, u: (unicodedata.normalize("NFD", u + "\u00e9").encode(),
                         _obj(_click(u + "\u00e9", item, rng)))),
        ("too_large", "too_large",
         v(lambda r, u, p: _obj(_with(p, "pad", orjson.dumps("x" * (max_bytes +
                                                                    r.randrange(1, 5000))))))),
    ]


def _mismatched_key(rng: random.Random, user: str) -> bytes:
    return rng.choice([(user + "x").encode(), user.encode() + b"\xff", (user + " ").encode(),
                       user.upper().encode() + b"-", b"\x00" + user.encode()])


def malformed(n: int, users: list[str], item: str, seed: int = 0,
              max_bytes: int = 65536) -> list[Case]:
    """n bad messages, every kind in turn (the oversized ones, tens of kB each, one in
    50), keyed by users of `users`; `item` is a real item id (a known item keeps each
    message's one defect the only one)."""
    rng = random.Random(seed)
    kinds = _kinds(item, max_bytes)
    small = [k for k in kinds if k[0] != "too_large"]
    large = next(k for k in kinds if k[0] == "too_large")
    out = []
    for k in range(n):
        kind, reason, make = large if k % 50 == 49 else small[k % len(small)]
        key, value = make(rng, rng.choice(users))
        out.append(Case(kind, key, value, reason))
    return out


_ODD = ["\u200f", "\u202e", "\u0000", "\U0001F600", "\u200d", "e\u0301", "\u65e5\u672c",
        "\ufeff", "\U0001F469\u200d\U0001F4BB", " "]


def odd_valid(n: int, item: str, seed: int = 0) -> list[Case]:
    """n valid clicks that look odd; every one must be answered. Users "fz<odd><k>"."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        user, event_id = f"fz{_ODD[k % len(_ODD)]}{k}", f"fz:{k}"
        items = [item, f"unknown{_ODD[k % len(_ODD)]}", str(2**64 - 1), "\u0000"]
        p = _click(user, items[k % len(items)], rng, event_id=orjson.dumps(event_id))
        kind, value = [
            ("odd_ids", _obj(p)),
            ("dup_key_last_good", _obj([("user_id", b"1.5")] + p)),
            ("nesting_1024", _obj(_with(p, "x", _NESTED_OK))),
            ("iso_ts", _obj(_with(p, "ts", b'"2011-03-13T08:06:40+01:00"'))),  # BASE_TS
            ("whitespace", b" \n" + _obj(p) + b"\t "),
            ("extra_fields", _obj(p + [("extra", b'{"a":[1,2,{"b":null}]}')])),
        ][k % 6]
        out.append(Case(kind, user.encode(), value, None, user, event_id))
    return out


# ---------------------------------------------------------------- stored state


def corrupt_rows(good_row: bytes, n: int, seed: int = 0) -> list[RowCase]:
    """n rows made from a good one (of the model under test), every kind in turn."""
    rng = random.Random(seed)
    meta_b, gru, window = rows.unpack(good_row)
    meta = orjson.loads(meta_b)

    def row(m=meta, g=gru, w=window):
        return rows.pack(m if isinstance(m, bytes) else orjson.dumps(m), g, w)

    def change(name, value):
        return {**meta, name: value}

    header = rows.HEADER.size
    full = row()
    window_start = len(full) - len(window)
    kinds = [
        ("empty", "format", lambda: b""),
        ("short_header", "format", lambda: full[:rng.randrange(1, header)]),
        ("format_byte", "format", lambda: bytes([rng.choice([0, 1, 4, 255])]) + full[1:]),
        ("first_format", "format", lambda: struct.pack(">iq", 0, 41) + meta_b),
        ("random_bytes", "format",
         lambda: bytes([rng.choice([0, 1, 4, 0x7b])]) + rng.randbytes(rng.randrange(0, 300))),
        ("cut_in_blobs", "truncated", lambda: full[:rng.randrange(header + 1, window_start)]),
        ("header_lies", "truncated",
         lambda: rows.HEADER.pack(rows.FORMAT, len(meta_b) + 10**6, len(gru)) + full[header:]),
        ("meta_garbage", "meta", lambda: row(b"\x00" + rng.randbytes(rng.randrange(0, 40)))),
        ("meta_not_utf8", "meta", lambda: row(meta_b.replace(b'"model"', b'"mod\xffl"'))),
        ("meta_not_object", "meta", lambda: row(rng.choice([b"[1,2]", b"null", b'"x"', b"7"]))),
        ("meta_missing_key", "meta", lambda: row(_without(meta, rng.choice(sorted(meta))))),
        ("meta_extra_key", "meta", lambda: row({**meta, "tcn_window": 1})),
        ("meta_wrong_type", "meta", lambda: row(rng.choice([
            change("session", "1"), change("offset", 1.5), change("model", 3),
            change("clicked", "abc"), change("clicked", [1, "2"]), change("last_ts", "x"),
            change("applied", None), change("partition", [0])]))),
        ("gru_wrong_length", "shape",
         lambda: row(g=rng.choice([gru[:-4], gru + b"\0" * 4, gru[:-1], b""]))),
        ("window_wrong_length", "shape",
         lambda: row(w=rng.choice([window[:-4], window + b"\0" * 8, window[:-3]]))),
        ("cut_in_window", "shape", lambda: full[:rng.randrange(window_start, len(full))]),
        ("other_model", None, lambda: row(change("model", "another-version"), gru[:4], b"")),
    ]
    out = []
    for k in range(n):
        kind, cause, make = kinds[k % len(kinds)]
        out.append(RowCase(kind, make(), None if cause is None else f"bad_state:{cause}"))
    return out


def _without(meta: dict, name: str) -> dict:
    return {k: v for k, v in meta.items() if k != name}
