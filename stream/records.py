"""The message contract between producers, the worker and consumers (JSON via orjson).

Input, topic `clicks`, key = user id (UTF-8):
    {"user_id": "42", "item_id": "318", "ts": 1260759144, "event": "click", "event_id": "42:17"}
    user_id, item_id: str or int (normalised to str); ts: Unix seconds (int/float) or
    ISO 8601 ("2016-10-16T12:00:00Z"; no zone = UTC); event: "click" (default) or
    "session_end" (item_id not needed); event_id: optional str, echoed in the output.
    A session_end may name the session it closes ("session": int): the worker's idle
    sweep does, so its end is void if the user has opened a new session since.
    "expire" deletes the user's state (item_id not needed): the worker's TTL sweep sends
    it with "applied_offset": int, the last offset applied to the state it saw, so the
    expiry is void if anything was applied since; without it, it forgets the user now
    (e.g. a deletion request).
Outputs carry "v": SCHEMA_VERSION so consumers can tell a contract change apart:
    recommendations {"v","user_id","event_id","ts","session","items":[{"item_id","score"}],
                     "model","latency_ms"?}
    user-embeddings {"v","user_id","event_id","ts","embedding":[float...],"model"}
    "model" is the version (meta.json "version") of the export that computed the
    message: during a canary, consumers tell the candidate's answers from the current
    model's by it (it has always been there, so no consumer changes).
    clicks-dlq      {"v","reason","source":"topic[partition]@offset","topic","partition",
                     "offset","original_b64"}

Control topics, compacted, read whole by every worker (stream/worker/feeds.py):
    models  key "deployment", the latest value wins (`Deployment`):
            {"v", "current": {"version","location"}, "candidate": {...} | null,
             "canary_share": 0..1, "previous": {...} | null}
            location: an export folder every worker can read (a shared volume).
    items   key = item id (UTF-8), value = the item's vector (float32, the model's
            item_dim): a JSON array of numbers, or a JSON string holding the base64 of
            the little-endian float32 bytes; a tombstone (null value) retires the item.

Hot path: plain dataclasses with slots and orjson, no validation framework.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import orjson

from stream.errors import BadEvent

SCHEMA_VERSION = 1
EVENTS = ("click", "session_end", "expire")
# Seconds beyond this (year 5138) are almost surely milliseconds sent by mistake.
MAX_TS = 1e11


@dataclass(frozen=True, slots=True)
class Click:
    user_id: str
    item_id: str | None  # None for session_end
    ts: float  # Unix seconds, UTC
    event: str = "click"
    event_id: str | None = None
    session: int | None = None  # on the worker's own sweep session_end: the session to close
    applied_offset: int | None = None  # on the TTL sweep's expire: the state it expires


# ---------------------------------------------------------------- decoding


def decode_click(key: bytes | None, value: bytes | None, max_bytes: int = 65536) -> Click:
    """Parse one input event or raise BadEvent(reason) for the dead-letter topic."""
    if value is None:  # a tombstone: nothing to parse
        raise BadEvent("not_json")
    if len(value) > max_bytes:  # checked before parsing: a huge payload costs nothing
        raise BadEvent("too_large")
    try:
        obj = orjson.loads(value)  # also rejects non-UTF-8 bytes
    except orjson.JSONDecodeError:
        raise BadEvent("not_json") from None
    if not isinstance(obj, dict):
        raise BadEvent("not_object")
    event = obj.get("event", "click")
    if event not in EVENTS:  # `in` on a tuple of str: an unhashable value is fine too
        raise BadEvent("bad_event")
    user_id = _id(obj, "user_id")
    item_id = _id(obj, "item_id") if event == "click" else None
    ts = _ts(obj)
    event_id = _optional_id(obj, "event_id")
    _check_key(key, user_id)
    session = _optional_count(obj, "session") if event == "session_end" else None
    applied = _optional_count(obj, "applied_offset") if event == "expire" else None
    return Click(user_id, item_id, ts, event, event_id, session, applied)


def _optional_count(obj: dict, name: str) -> int | None:
    value = obj.get(name)
    if value is not None and (type(value) is not int or value < 0):
        raise BadEvent(f"wrong_type:{name}")
    return value


def _id(obj: dict, name: str) -> str:
    value = obj.get(name)
    if value is None or value == "":
        raise BadEvent(f"missing_field:{name}")
    if type(value) is str:
        return value
    if type(value) is int:  # not bool (a subclass of int) and not float: 1.0 is no id
        return str(value)
    raise BadEvent(f"wrong_type:{name}")


def _optional_id(obj: dict, name: str) -> str | None:
    return None if obj.get(name) is None else _id(obj, name)


def _ts(obj: dict) -> float:
    value = obj.get("ts")
    if value is None:
        raise BadEvent("missing_field:ts")
    if type(value) in (int, float):
        ts = float(value)
    elif type(value) is str:
        ts = _iso_seconds(value)
    else:
        raise BadEvent("wrong_type:ts")
    if not 0 <= ts < MAX_TS:  # also false for NaN and inf
        raise BadEvent("bad_ts")
    return ts


def _iso_seconds(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadEvent("bad_ts") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _check_key(key: bytes | None, user_id: str) -> None:
    """The key decides the partition, so it must be the user: else the user's state
    would be split over partitions (and workers)."""
    if key is None:
        return
    if len(key) == 0:
        raise BadEvent("empty_key")
    if key != user_id.encode():
        raise BadEvent("key_mismatch")


def decode_recommendation(value: bytes) -> dict:
    """A recommendation message as a dict (for tail and tests)."""
    return _decode_versioned(value)


def _decode_versioned(value: bytes) -> dict:
    """Any output message: a JSON object of this SCHEMA_VERSION."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise BadEvent("not_json") from None
    if not isinstance(obj, dict):
        raise BadEvent("not_object")
    if obj.get("v") != SCHEMA_VERSION:
        raise BadEvent("bad_version")
    return obj


def decode_dlq(value: bytes) -> dict:
    """A dead-letter message as a dict, with the original bytes under "original"."""
    obj = _decode_versioned(value)
    obj["original"] = base64.b64decode(obj["original_b64"])
    return obj


# ---------------------------------------------------------------- encoding

_NUMPY = orjson.OPT_SERIALIZE_NUMPY  # numpy scalars/arrays without a Python copy


def encode_click(user_id, item_id, ts, event: str = "click", event_id: str | None = None) -> bytes:
    """An input event, as producers (replay, tests) write it."""
    obj = {"user_id": str(user_id), "ts": ts, "event": event}
    if item_id is not None:
        obj["item_id"] = str(item_id)
    if event_id is not None:
        obj["event_id"] = event_id
    return orjson.dumps(obj, option=_NUMPY)


def encode_recommendation(user_id: str, event_id: str | None, ts: float, session,
                          items, model_version: str, latency_ms: float | None = None) -> bytes:
    """`items`: (item_id, score) pairs, best first (a list of pairs or a
    hiertcn.inference.Ranked, which iterates as them); scores float or numpy scalars.
    Each item becomes {"item_id", "score"}: building those dicts is most of the cost
    (~2 µs for 20 items), still less than splicing pre-encoded fragments in Python."""
    obj = {"v": SCHEMA_VERSION, "user_id": user_id, "event_id": event_id, "ts": ts,
           "session": session,
           "items": [{"item_id": item_id, "score": score} for item_id, score in items],
           "model": model_version}
    if latency_ms is not None:
        obj["latency_ms"] = latency_ms
    return orjson.dumps(obj, option=_NUMPY)


def encode_embedding(user_id: str, ts: float, embedding: np.ndarray, model_version: str,
                     event_id: str | None = None) -> bytes:
    """`embedding`: (D,) user state; sent as float32 (shortest round-trip decimals)."""
    vector = np.ascontiguousarray(embedding, dtype=np.float32)  # orjson needs C order
    if vector.ndim != 1:
        raise ValueError(f"embedding must be 1-D (D,), got shape {vector.shape}")
    obj = {"v": SCHEMA_VERSION, "user_id": user_id, "event_id": event_id, "ts": ts,
           "embedding": vector, "model": model_version}
    return orjson.dumps(obj, option=_NUMPY)


# ---------------------------------------------------------------- control topics

DEPLOYMENT_KEY = b"deployment"


@dataclass(frozen=True, slots=True)
class ModelRef:
    version: str  # the export's meta.json "version"
    location: str  # the export folder, as every worker sees it


@dataclass(frozen=True, slots=True)
class Deployment:
    """What the workers serve: `current` for every user, `candidate` (if any) for the
    users whose id hashes below `canary_share` (stream/worker/canary.py); `previous`
    is what `rollback` returns to once nothing is on canary."""
    current: ModelRef
    candidate: ModelRef | None = None
    canary_share: float = 0.0
    previous: ModelRef | None = None


def encode_deployment(d: Deployment) -> bytes:
    return orjson.dumps({"v": SCHEMA_VERSION, "current": _ref_obj(d.current),
                         "candidate": _ref_obj(d.candidate), "canary_share": d.canary_share,
                         "previous": _ref_obj(d.previous)})


def _ref_obj(ref: ModelRef | None) -> dict | None:
    return None if ref is None else {"version": ref.version, "location": ref.location}


def decode_deployment(value: bytes | None) -> Deployment:
    """BadEvent(reason) for a value that is not a deployment of this schema."""
    obj = _decode_versioned(value or b"null")
    share = obj.get("canary_share", 0.0)
    if type(share) not in (int, float) or not 0.0 <= share <= 1.0:
        raise BadEvent("wrong_type:canary_share")
    current = _model_ref(obj, "current")
    if current is None:
        raise BadEvent("missing_field:current")
    return Deployment(current, _model_ref(obj, "candidate"), float(share),
                      _model_ref(obj, "previous"))


def _model_ref(obj: dict, name: str) -> ModelRef | None:
    ref = obj.get(name)
    if ref is None:
        return None
    if not isinstance(ref, dict) or not all(type(ref.get(k)) is str and ref[k]
                                            for k in ("version", "location")):
        raise BadEvent(f"wrong_type:{name}")
    return ModelRef(ref["version"], ref["location"])


def decode_item_vector(key: bytes | None, value: bytes | None) -> tuple[str, np.ndarray | None]:
    """(item id, float32 (D,) vector) of an `items` message, or (item id, None) for a
    tombstone; BadEvent(reason) otherwise."""
    if not key:
        raise BadEvent("empty_key")
    try:
        item_id = key.decode()
    except UnicodeDecodeError:
        raise BadEvent("wrong_type:key") from None
    if value is None:
        return item_id, None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise BadEvent("not_json") from None
    try:
        if type(obj) is str:
            vector = np.frombuffer(base64.b64decode(obj, validate=True), "<f4")
        elif type(obj) is list and all(type(x) in (int, float) for x in obj):
            vector = np.asarray(obj, np.float32)
        else:
            raise ValueError
    except ValueError:  # binascii.Error too; also a byte count not a multiple of 4
        raise BadEvent("wrong_type:vector") from None
    if vector.size == 0 or not np.isfinite(vector).all():
        raise BadEvent("bad_vector")
    return item_id, vector.astype(np.float32)


def encode_item_vector(vector: np.ndarray, base64_form: bool = False) -> bytes:
    """An `items` value, as a JSON array (default) or as base64 float32."""
    v = np.ascontiguousarray(vector, dtype="<f4")
    if base64_form:
        return orjson.dumps(base64.b64encode(v.tobytes()).decode("ascii"))
    return orjson.dumps(v, option=_NUMPY)


def encode_dlq(original: bytes | None, reason: str, topic: str, partition: int,
               offset: int) -> bytes:
    """Base64 keeps any original, even non-UTF-8 or binary, inside JSON."""
    obj = {"v": SCHEMA_VERSION, "reason": reason, "source": f"{topic}[{partition}]@{offset}",
           "topic": topic, "partition": partition, "offset": offset,
           "original_b64": base64.b64encode(original or b"").decode("ascii")}
    return orjson.dumps(obj)
