"""The pure recommendation step, kept apart from Faust so it is unit-testable.

`process_batch` takes one micro-batch of decoded clicks, the current per-user state
(read through a callable), and returns the new per-user state and the messages to
publish. It makes one model call per *round* (round r holds every user's r-th event in
the batch, so a user's events are applied in order) and one faiss search per batch.

Policies:
- session end: an explicit `session_end` event, an inactivity gap longer than
  `session_gap_s` in event time (seen on the user's next event, or by the sweep,
  whose `session_end` names the session it closes and is void for any other), or
  `max_session_len` events (the same cut as training) roll the GRU and open a new
  session;
- late events (ts before the session's last event) are applied in arrival order, the
  partition order, but never move `last_ts` back and never start or end a session;
- unknown items (not in the model's vocabulary, e.g. filtered as rare in training) are
  ignored by the state, as training drops them before sessionising: the event is
  still answered from the current state, and counted; a click on the item clicked
  just before is answered but not fed (training drops consecutive repeats);
- model version: a state written by another model version is reset, and counted;
- redelivery: every state records the partition and offset of the last event applied
  to it; an event of that partition at or below the offset is answered again from the
  stored state but not re-applied,
  so state is exactly-once and output at-least-once;
- expiry: an `expire` event resets the user to a fresh state and, unless a later event
  of the batch revives it, the caller deletes the user's rows (`BatchResult.expired`).
  The TTL sweep's expire names the offset it saw applied and is void if the state has
  moved on since. An expire publishes nothing;
- bad state: a stored row that does not parse (cut short, another format, meta that is
  not the expected JSON object, GRU or window blobs not of this model's size) costs
  that user one event: the event that met it goes to the dead-letter topic as
  "bad_state:<cause>" (`BatchResult.rejected`) and is not applied; the user starts
  from a fresh state that records that event's partition and offset (a redelivery of
  it is not applied; it is answered from the fresh state, as any redelivery) and its
  time (the TTL sweep can expire it); the user's later events are applied to it.
  Counted as `bad_states`. An `expire` that meets a bad row also deletes it;
- failures: an unexpected exception in the batch's model or faiss work (or in a read
  of the table) never stops the agent: the batch is processed again user by user, and
  only the events of the users that still fail are dead-lettered ("processing_error");
  those users' stored states are left as they were (nothing of them was applied, so a
  redelivery retries them). Counted as `batch_retries`. The happy path makes no
  per-user model call.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np

from hiertcn.inference import BatchState, StreamModel
from stream.errors import BadState
from stream.worker.rows import UserState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    """A decoded click with where it came from."""

    user_id: str
    item_id: str | None  # None for a session_end event
    ts: float  # event time, Unix seconds
    event: str  # "click" | "session_end"
    event_id: str | None
    partition: int
    offset: int
    received: float = 0.0  # wall-clock arrival, for latency
    session: int | None = None  # a sweep's session_end names the session it closes
    applied_offset: int | None = None  # a TTL sweep's expire names the state it expires


@dataclass
class Output:
    user_id: str
    event_id: str | None
    ts: float
    session: int
    model: str
    embedding_row: int  # row of `BatchResult.embeddings`
    recommend: bool  # clicks get recommendations; session_end only an embedding
    received: float
    exclude: frozenset = frozenset()  # items clicked in the session so far
    items: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class BatchResult:
    states: dict[str, UserState]
    outputs: list[Output]
    embeddings: list  # float32 (D,) arrays, indexed by Output.embedding_row
    # unknown_items, model_resets, redelivered, late, expired, bad_states, batch_retries,
    # rolled_<reason>, ...
    counts: Counter
    top_k_s: float = 0.0  # seconds spent in the faiss search, for the metrics
    expired: set = field(default_factory=set)  # users whose stored rows must be deleted
    # events for the dead-letter topic, with their reason: "bad_state:<cause>",
    # "processing_error"; none of them was applied or answered
    rejected: list[tuple[Incoming, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Policy:
    top_k: int = 20
    session_gap_s: float = 1800
    max_session_len: int = 100
    exclude_clicked: bool = True


def process_batch(model: StreamModel, events: list[Incoming],
                  load: Callable[[str], UserState | None], policy: Policy) -> BatchResult:
    """`load(user)`: the user's stored state, a new object on each call (the agent
    parses the row each time), or None; it raises BadState for a row that does not
    parse. Never raises: what fails is in `BatchResult.rejected`."""
    try:
        return _process(model, events, load, policy)
    except Exception:  # anything: one failure must cost its user's events, not the partition
        log.exception("a batch of %d events (first [%d]@%d) failed; processing it again "
                      "user by user", len(events), events[0].partition, events[0].offset)
        return _user_by_user(model, events, load, policy)


def _user_by_user(model, events, load, policy) -> BatchResult:
    """The slow path after a failed batch: one `_process` per user, results merged; the
    events of a user that fails again are rejected, and that user's state not written."""
    by_user: dict[str, list[Incoming]] = {}
    for ev in events:
        by_user.setdefault(ev.user_id, []).append(ev)
    merged = BatchResult({}, [], [], Counter({"batch_retries": 1}))
    for user, user_events in by_user.items():
        try:
            part = _process(model, user_events, load, policy)
        except Exception as exc:
            first = user_events[0]
            log.warning("user %r: %d events failed again, dead-lettered as processing_error "
                        "(first [%d]@%d): %r", user, len(user_events), first.partition,
                        first.offset, exc)
            merged.rejected += [(ev, "processing_error") for ev in user_events]
            continue
        for o in part.outputs:
            o.embedding_row += len(merged.embeddings)
        merged.states.update(part.states)
        merged.outputs += part.outputs
        merged.embeddings += part.embeddings
        merged.counts.update(part.counts)
        merged.top_k_s += part.top_k_s
        merged.expired |= part.expired
        merged.rejected += part.rejected
    return merged


def _process(model, events, load, policy) -> BatchResult:
    counts: Counter = Counter()
    expired: set[str] = set()
    states, stored, rejected = _load_states(model, events, load, counts, expired)
    if rejected:  # an event that met a bad state is not applied, nor answered
        dropped = {id(ev) for ev, _ in rejected}
        events = [ev for ev in events if id(ev) not in dropped]
    row = {user: i for i, user in enumerate(states)}
    batch = BatchState(model, [(st.gru, st.window) for st in states.values()])
    outputs: list[Output] = []
    embeddings: list = []
    for round_events in _rounds(events):
        _apply_round(model, batch, row, round_events, states, policy, counts, expired)
        for ev in round_events:
            if ev.event == "expire":
                continue
            st = states[ev.user_id]
            embeddings.append(batch.embedding(row[ev.user_id]))
            exclude = frozenset(st.clicked) if policy.exclude_clicked else frozenset()
            outputs.append(Output(ev.user_id, ev.event_id, ev.ts, st.session, model.version,
                                  len(embeddings) - 1, ev.event == "click", ev.received,
                                  exclude))
    for st, (gru, window) in zip(states.values(), batch.blobs()):
        st.gru, st.window = gru, window
    for user in expired:
        del states[user]  # deleted if stored; never written if it was not
    t0 = time.perf_counter()
    _attach_top_k(model, outputs, embeddings, policy)
    return BatchResult(states, outputs, embeddings, counts, time.perf_counter() - t0,
                       expired & stored, rejected)


def _load_states(model, events, load, counts, expired):
    """Each user's state, read once per batch at the user's first event: (states by
    user, users with a stored row, rejected events). A bad row is replaced by a fresh
    state and the event that met it rejected."""
    states: dict[str, UserState] = {}
    stored: set[str] = set()
    rejected: list[tuple[Incoming, str]] = []
    for ev in events:
        if ev.user_id in states:
            continue
        try:
            loaded = _load(model, load, ev.user_id)
        except BadState as bad:
            states[ev.user_id] = _after_bad_state(model, ev, bad, counts, expired)
            rejected.append((ev, bad.reason))
            stored.add(ev.user_id)  # the bad row is there: replaced, or deleted if expired
            continue
        if loaded is not None:
            stored.add(ev.user_id)
        states[ev.user_id] = _current(model, loaded, counts)
    return states, stored, rejected


def _load(model: StreamModel, load, user_id: str) -> UserState | None:
    """The stored state, or BadState if its blobs are not of this model's size (those
    of another model version are reset by `_current`, whatever their size)."""
    st = load(user_id)
    if st is not None and st.model == model.version:
        want = _blob_sizes(model)
        if (len(st.gru), len(st.window)) != want:
            raise BadState("shape", f"GRU and window blobs of {len(st.gru)} and "
                                    f"{len(st.window)} bytes, the model's are {want}")
    return st


@lru_cache(maxsize=8)
def _blob_sizes(model: StreamModel) -> tuple[int, int]:
    """Bytes of a (gru, window) state of this model, from a fresh one."""
    gru, window = model.fresh(1)[0]
    return len(gru), len(window)


def _after_bad_state(model, ev: Incoming, bad: BadState, counts: Counter,
                     expired: set[str]) -> UserState:
    """A fresh state in place of a bad row; `ev`, the event that met it, is rejected.
    The fresh state records `ev`'s offset (a redelivery of it is skipped) and time (so
    the TTL sweep can expire a user who never comes back)."""
    log.warning("user %r: stored state unusable (%s) at [%d]@%d; the event is "
                "dead-lettered and the user starts afresh", ev.user_id, bad, ev.partition,
                ev.offset)
    counts["bad_states"] += 1
    fresh = _fresh(model)
    fresh.offset, fresh.partition, fresh.last_seen = ev.offset, ev.partition, ev.ts
    if ev.event == "expire":
        expired.add(ev.user_id)  # deleted, unless a later event of the batch revives it
    return fresh


def _rounds(events: list[Incoming]) -> list[list[Incoming]]:
    """Round r holds each user's r-th event of the batch, keeping per-user order."""
    seen: Counter = Counter()
    rounds: list[list[Incoming]] = []
    for ev in events:
        r = seen[ev.user_id]
        seen[ev.user_id] += 1
        if r == len(rounds):
            rounds.append([])
        rounds[r].append(ev)
    return rounds


def _current(model: StreamModel, state: UserState | None, counts: Counter) -> UserState:
    if state is not None and state.model == model.version:
        return state
    if state is not None:
        counts["model_resets"] += 1
    return _fresh(model)


def _fresh(model: StreamModel) -> UserState:
    gru, window = model.fresh(1)[0]
    return UserState(gru=gru, window=window, model=model.version, session=1)


def _apply_round(model, batch, row, events, states, policy, counts, expired) -> None:
    to_roll, to_step = [], []
    for ev in events:
        st = states[ev.user_id]
        if _seen(st, ev):
            counts["redelivered"] += 1
            continue
        if ev.event == "expire":
            _expire(model, batch, row, states, ev, counts, expired)
            continue
        expired.discard(ev.user_id)  # an event after an expire in the batch revives it
        st.offset, st.partition = ev.offset, ev.partition
        st.applied += 1
        st.last_seen = ev.ts if st.last_seen is None else max(st.last_seen, ev.ts)
        item = model.index_of.get(ev.item_id) if ev.event == "click" else None
        if ev.event == "click" and item is None:
            # as in training, where rare items are filtered out before sessionising:
            # the event neither moves the session clock nor enters the window
            counts["unknown_items"] += 1
            continue
        reason = _session_end_reason(st, ev, policy)
        if reason:
            to_roll.append(ev.user_id)
            counts[f"rolled_{reason}"] += 1
        if item is not None and not reason and st.clicked and st.clicked[-1] == item:
            counts["repeats"] += 1  # training drops consecutive repeats too
        elif item is not None:
            to_step.append((ev.user_id, item))
        if st.last_ts is not None and ev.ts < st.last_ts:
            counts["late"] += 1
        st.last_ts = ev.ts if st.last_ts is None else max(st.last_ts, ev.ts)
    roll_sessions(batch, [row[u] for u in to_roll], [states[u] for u in to_roll])
    _step(batch, [(row[u], item) for u, item in to_step], [states[u] for u, _ in to_step])


def _seen(st: UserState, ev: Incoming) -> bool:
    """Applied already: at or below the recorded offset of the same partition. An offset
    of another partition (the user was re-keyed, or the topic re-partitioned) says
    nothing about this one."""
    return st.partition in (ev.partition, -1) and ev.offset <= st.offset


def _expire(model, batch, row, states, ev, counts, expired) -> None:
    st = states[ev.user_id]
    if st.applied == 0:  # nothing to expire (e.g. an expire redelivered after the
        expired.add(ev.user_id)  # deletion): make sure it is not written either
        return
    if ev.applied_offset is not None and ev.applied_offset != st.offset:
        counts["stale_expires"] += 1  # the user was active after the sweep looked
        st.offset, st.partition = ev.offset, ev.partition
        st.applied += 1
        return
    counts["expired"] += 1
    fresh = _fresh(model)
    # a redelivered event from before the expiry stays skipped
    fresh.offset, fresh.partition = ev.offset, ev.partition
    states[ev.user_id] = fresh
    batch.reset([row[ev.user_id]])
    expired.add(ev.user_id)


def _session_end_reason(st: UserState, ev: Incoming, policy: Policy) -> str | None:
    if ev.event == "session_end" and ev.session is not None:
        # the sweep's end: void if a click has opened a new session since
        return "sweep" if ev.session == st.session and st.length else None
    if ev.event == "session_end":
        return "explicit"
    if st.length == 0:
        return None
    if st.last_ts is not None and ev.ts - st.last_ts > policy.session_gap_s:
        return "gap"
    if st.length >= policy.max_session_len:
        return "max_len"
    return None


def roll_sessions(batch: BatchState, rows: list[int], states: list[UserState]) -> None:
    """One model call rolls the GRU of the given users and opens new sessions."""
    if not rows:
        return
    batch.end_sessions(rows)
    for st in states:
        if st.length:
            st.sessions_rolled += 1
        st.session += 1
        st.length, st.clicked, st.last_ts = 0, [], None


def _step(batch: BatchState, pairs: list[tuple[int, int]], states: list[UserState]) -> None:
    if not pairs:
        return
    batch.step([r for r, _ in pairs], [i for _, i in pairs])
    for st, (_, item) in zip(states, pairs):
        st.length += 1
        st.clicked.append(item)


def _attach_top_k(model, outputs, embeddings, policy) -> None:
    wanted = [o for o in outputs if o.recommend]
    if not wanted:
        return
    emb = np.stack([embeddings[o.embedding_row] for o in wanted])  # (n, D)
    for o, items in zip(wanted, model.top_k(emb, policy.top_k, [o.exclude for o in wanted])):
        o.items = items


def is_idle(st: UserState, watermark: float, gap_s: float) -> bool:
    """The user's open session has been idle longer than the gap, in event time
    (the watermark is the latest event time the worker has seen)."""
    return bool(st.length) and st.last_ts is not None and watermark - st.last_ts > gap_s


def is_expired(st: UserState, watermark: float, ttl_s: float) -> bool:
    """No event from the user for longer than the TTL, in event time."""
    seen = st.last_seen if st.last_seen is not None else st.last_ts
    return seen is not None and watermark - seen > ttl_s


def idle_sessions(states: dict[str, UserState], watermark: float,
                  gap_s: float) -> list[str]:
    return [u for u, st in states.items() if is_idle(st, watermark, gap_s)]

