"""What the state says, checked: every user's `user_state` row (stream/worker/rows.py),
read back from the table's changelog or from a stopped worker's RocksDB, unpacked into
its three parts (session meta, GRU state, TCN window) and compared with the events sent
and with an uninterrupted worker's rows."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import orjson

from stream.tools.harness import read_topic
from stream.worker import rows

from benchmarks.reliability.lab import Lab, counter, error_lines, log


class UserRow(NamedTuple):
    """One user's `user_state` row, unpacked: the meta JSON (which carries `applied`,
    the events the state has taken), the GRU state h and the TCN window (float32)."""

    meta: bytes
    gru: bytes
    window: bytes


State = dict[str, UserRow]  # user -> its row


def table_state(bootstrap: str, app_id: str) -> State:
    """Every user's row as the compacted changelog says (a tombstone drops the user)."""
    state: dict[str, bytes] = {}
    for key, value in read_topic(bootstrap, f"{app_id}-user_state-changelog", timeout=120):
        user = orjson.loads(key)  # Faust writes table keys as JSON
        if value is None:
            state.pop(user, None)
        else:
            state[user] = value
    return {user: UserRow(*rows.unpack(row)) for user, row in state.items()}


def local_state(datadir: Path) -> State:
    """Every user's row in a stopped worker's own RocksDB files."""
    from rocksdict import AccessType, Options, Rdict
    state: State = {}
    for path in sorted(datadir.rglob("user_state-*.db")):
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            for key, value in db.items():
                if not key.startswith(b"__faust"):
                    state[orjson.loads(key)] = UserRow(*rows.unpack(value))
        finally:
            db.close()
    return state


def mismatches(got: State, want: State) -> list[str]:
    """Users whose rows differ, one line each naming the first part that does: the
    meta exactly, the float32 parts to 1e-5 (batches of other sizes may round
    differently)."""
    bad = []
    for user in sorted(set(got) | set(want)):
        a, b = got.get(user), want.get(user)
        why = _difference(a, b)
        if why:
            bad.append(f"user {user}: {why}")
            if len(bad) <= 3:
                log("  " + bad[-1])
    return bad


def _difference(a: UserRow | None, b: UserRow | None) -> str | None:
    """How two rows of one user differ (None: they do not)."""
    if a is None or b is None:
        return f"row present {a is not None} / {b is not None}"
    x, y = orjson.loads(a.meta), orjson.loads(b.meta)
    if x != y:
        return "meta differs: " + ", ".join(
            f"{k}: {x.get(k)} vs {y.get(k)}" for k in sorted(set(x) | set(y))
            if x.get(k) != y.get(k) and k != "clicked")
    for part in ("gru", "window"):
        x, y = (np.frombuffer(getattr(r, part), np.float32) for r in (a, b))
        if x.shape != y.shape:
            return f"{part} differs: shape {x.shape} vs {y.shape}"
        if not np.allclose(x, y, atol=1e-5):
            return f"{part} differs: max |diff| {np.abs(x - y).max()}"
    return None


def applied(row: UserRow | None) -> int:
    return orjson.loads(row.meta)["applied"] if row else 0


def applied_counts(state: State, events: list[dict]) -> dict:
    """Per user, events the state says it applied against events sent to it."""
    sent = Counter(e["user"] for e in events if e["user"])
    twice = lost = 0
    for user, n in sent.items():
        done = applied(state.get(user))
        twice += max(0, done - n)
        lost += max(0, n - done)
    return {"applied_twice": twice, "state_lost": lost}


def reference_state(lab: Lab, n_events: int, timeout: float) -> State:
    """The rows of an uninterrupted worker (own group, own outputs) over the same
    clicks topic, read once it has taken every event and stopped cleanly."""
    topics = replace(lab.topics, recommendations=lab.topics.recommendations + "-ref",
                     embeddings=lab.topics.embeddings + "-ref", dlq=lab.topics.dlq + "-ref")
    app_id = lab.app_id + "-ref"
    w = lab.worker("reference", app_id=app_id, topics=topics)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and counter(w, "hiertcn_events_in_total") < n_events:
        time.sleep(0.5)
    time.sleep(1.5)  # one commit interval: the last changelog writes are sent
    w.stop()
    return table_state(lab.bootstrap, app_id)


def outcome(lab: Lab, events: list[dict], state: State, reference: State | None) -> dict:
    """The figures every scenario reports."""
    want = {e["event_id"] for e in events if e["event_id"]}
    answered = lab.answers.answered()
    out = {"sent": len(events), "recommended": len(lab.answers.event_ids),
           "lost": len(want - answered),
           "duplicate_outputs": len(lab.answers.event_ids) - len(answered & want),
           **applied_counts(state, events), "users": len(state)}
    if reference is not None:
        differ = mismatches(state, reference)
        out["state_mismatches"] = len(differ)
        if differ:
            out["mismatch_examples"] = differ[:3]
        ref = applied_counts(reference, events)  # a faulty yardstick is no finding
        out["reference_ok"] = ref == {"applied_twice": 0, "state_lost": 0}
    out["peak_rss_mb"] = lab.rss.peak_mb()
    out["worker_errors"] = sum(error_lines(w.log.read_text(errors="replace"))
                               for w in lab.workers if w.log.exists())
    return out
