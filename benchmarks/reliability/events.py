"""What the scenarios send: MovieLens clicks as the replay sends them, and malformed
events of every kind the decoder names."""

from __future__ import annotations

import random

import orjson

from stream.tools.harness import MOVIELENS


def clicks(n: int) -> list[dict]:
    """The first n MovieLens clicks in event-time order, as the replay sends them."""
    from stream.records import encode_click
    from stream.tools.replay import load_events
    events = load_events(MOVIELENS, limit=n)
    return [{"user": str(r.user), "event_id": r.event_id, "key": str(r.user).encode(),
             "value": encode_click(r.user, r.item, int(r.ts), "click", r.event_id)}
            for r in events.itertuples()]


def malformed(n: int, users: list[str], seed: int = 0) -> list[dict]:
    """n bad events of every kind the decoder names, each with the reason it must get."""
    rng = random.Random(seed)
    kinds = {
        "not_json": lambda u: (u, b"{oops"),
        "not_object": lambda u: (u, b"[1, 2]"),
        "missing_field:user_id": lambda u: (None, orjson.dumps({"item_id": "1", "ts": 1})),
        "missing_field:item_id": lambda u: (u, orjson.dumps({"user_id": u, "ts": 1})),
        "missing_field:ts": lambda u: (u, orjson.dumps({"user_id": u, "item_id": "1"})),
        "wrong_type:item_id": lambda u: (u, orjson.dumps({"user_id": u, "item_id": 1.5,
                                                          "ts": 1})),
        "bad_ts": lambda u: (u, orjson.dumps({"user_id": u, "item_id": "1", "ts": -5})),
        "bad_event": lambda u: (u, orjson.dumps({"user_id": u, "item_id": "1", "ts": 1,
                                                 "event": "purchase"})),
        "key_mismatch": lambda u: (u + "x", orjson.dumps({"user_id": u, "item_id": "1",
                                                          "ts": 1})),
        "too_large": lambda u: (u, orjson.dumps({"user_id": u, "item_id": "1", "ts": 1,
                                                 "pad": "x" * 70_000})),
    }
    names = list(kinds)
    out = []
    for k in range(n):
        # too_large is 70 kB each: one in 50, not one in 10, keeps the run lean
        reason = "too_large" if k % 50 == 49 else names[k % (len(names) - 1)]
        user = rng.choice(users)
        key, value = kinds[reason](user)
        out.append({"user": None, "event_id": None, "reason": reason,
                    "key": key.encode() if key is not None else None, "value": value})
    return out
