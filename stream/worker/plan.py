"""The per-user ordering rules of a micro-batch, without the model: which events are
applied, skipped, answered, where a session rolls and where a user is reset. A pure
walk over the events that updates each user's meta (`UserState`) and returns a plan:
per user, the *segments* of model work (items fed in order to the open session, then
a roll or a reset) and, per answered event, the point of that work that answers it.
stream/worker/recommend.py executes the plan with the model, phase by phase.

Policies:
- session end: an explicit `session_end` event, an inactivity gap longer than
  `session_gap_s` in event time (seen on the user's next event, or by the sweep,
  whose `session_end` names the session it closes and is void for any other), or
  `max_session_len` events (the same cut as training) roll the GRU and open a new
  session; a click that ends the session by its gap or the length is the first of the
  new one (its time is the new session's `last_ts`);
- late events (ts before the session's last event) are applied in arrival order, the
  partition order, but never move `last_ts` back and never start or end a session;
- unknown items (not in the model's vocabulary, e.g. filtered as rare in training) are
  ignored by the state, as training drops them before sessionising: the event is
  still answered from the current state, and counted; a click on the item clicked
  just before is answered but not fed (training drops consecutive repeats);
- history: every applied click's item id (known to the model or not) is appended to
  the user's history, and a roll closes the history's session, within
  `history_events` events (stream/worker/history.py; 0 keeps none); not a roll at
  `max_session_len`, which counts this model's items: a rebuild cuts by its own;
- model version: a state written by another model version is rebuilt from the
  history, with the rules below (`replay_sessions`), or reset when nothing of it is
  known to the new model (stream/worker/recommend.py, when states are loaded);
- redelivery: every state records the partition and offset of the last event applied
  to it; an event of that partition at or below the offset is answered again from the
  current state but not re-applied, so state is exactly-once and output at-least-once;
- expiry: an `expire` event resets the user to a fresh state and, unless a later event
  of the batch revives it, the caller deletes the user's rows (`BatchResult.expired`).
  The TTL sweep's expire names the offset it saw applied and is void if the state has
  moved on since. An expire publishes nothing;
- bad state: see stream/worker/recommend.py (the event that met it is not planned).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from stream.worker import history
from stream.worker.rows import UserState

ROLL, RESET = "roll", "reset"  # how a segment ends: end_session, or the initial state


@dataclass(frozen=True)
class Incoming:
    """A decoded click with where it came from."""

    user_id: str
    item_id: str | None  # None for a session_end event
    ts: float  # event time, Unix seconds
    event: str  # "click" | "session_end" | "expire"
    event_id: str | None
    partition: int
    offset: int
    received: float = 0.0  # wall-clock arrival, for latency
    session: int | None = None  # a sweep's session_end names the session it closes
    applied_offset: int | None = None  # a TTL sweep's expire names the state it expires


@dataclass(frozen=True)
class Policy:
    top_k: int = 20
    session_gap_s: float = 1800
    max_session_len: int = 100
    exclude_clicked: bool = True
    history_events: int = 500  # item ids kept per user to rebuild its state; 0: none


@dataclass
class Segment:
    """One user's model work between two state changes: `items` fed in order to the
    open session (one multi-step call), then `end`: ROLL, RESET or None (the last)."""

    items: list[int] = field(default_factory=list)
    end: str | None = None


@dataclass(frozen=True)
class Answer:
    """An event to answer, and the state that answers it: the user's segment `segment`
    after `fed` of its items (0: the state the segment starts from)."""

    event: Incoming
    session: int
    exclude: frozenset  # items clicked in the session so far
    segment: int
    fed: int


def plan_batch(events: list[Incoming], states: dict[str, UserState],
               index_of: dict[str, int], policy: Policy, counts: Counter,
               expired: set[str], fresh: Callable[[], UserState],
               ) -> tuple[dict[str, list[Segment]], list[Answer]]:
    """Walk `events` in arrival order (each user's in partition order), updating
    `states` (an expire replaces the user's state by `fresh()`), `counts` and
    `expired`. Returns each user's segments and the answers, in arrival order."""
    segments = {user: [Segment()] for user in states}
    answers: list[Answer] = []
    for ev in events:
        segs = segments[ev.user_id]
        if _apply(ev, states, segs, index_of, policy, counts, expired, fresh):
            st = states[ev.user_id]
            exclude = frozenset(st.clicked) if policy.exclude_clicked else frozenset()
            answers.append(Answer(ev, st.session, exclude, len(segs) - 1,
                                  len(segs[-1].items)))
    return segments, answers


def _apply(ev, states, segs, index_of, policy, counts, expired, fresh) -> bool:
    """One event's effect on its user's meta and segments; True if it is answered."""
    st = states[ev.user_id]
    if _seen(st, ev):
        counts["redelivered"] += 1
        return ev.event != "expire"
    if ev.event == "expire":
        _expire(ev, states, segs, counts, expired, fresh)
        return False
    expired.discard(ev.user_id)  # an event after an expire in the batch revives it
    st.offset, st.partition = ev.offset, ev.partition
    st.applied += 1
    st.last_seen = ev.ts if st.last_seen is None else max(st.last_seen, ev.ts)
    item = index_of.get(ev.item_id) if ev.event == "click" else None
    if ev.event == "click" and item is None:
        # as in training, where rare items are filtered out before sessionising:
        # the event neither moves the session clock nor enters the window
        counts["unknown_items"] += 1
        st.history = history.append(st.history, ev.item_id, policy.history_events)
        return True
    if st.last_ts is not None and ev.ts < st.last_ts:
        counts["late"] += 1
    reason = _session_end_reason(st, ev, policy)
    if _history_session_ends(st, ev, reason, policy):
        st.history = history.close_session(st.history)
    if reason:
        counts[f"rolled_{reason}"] += 1
        _roll(st, segs)
    if item is not None:  # after the roll: the click is the first of the new session
        st.history = history.append(st.history, ev.item_id, policy.history_events)
    if item is not None and st.clicked and st.clicked[-1] == item:
        counts["repeats"] += 1  # training drops consecutive repeats too
    elif item is not None:
        segs[-1].items.append(item)
        st.length += 1
        st.clicked.append(item)
    if not reason or item is not None:  # a session_end leaves an empty session
        st.last_ts = ev.ts if st.last_ts is None else max(st.last_ts, ev.ts)
    return True


def _history_session_ends(st: UserState, ev: Incoming, reason: str | None,
                          policy: Policy) -> bool:
    """Where the history's session ends: where the stream's does, but at
    `max_session_len` (which counts this model's items: a rebuild cuts by its own),
    and where the gap passed over a session this model fed nothing of (a state
    reset by a rollout: no roll, but the session did end)."""
    if reason in ("gap", "explicit", "sweep"):
        return True
    return (ev.event == "click" and reason is None and st.length == 0
            and st.last_ts is not None and ev.ts - st.last_ts > policy.session_gap_s)


def replay_sessions(ids: list[list[str]], index_of: dict[str, int],
                    policy: Policy) -> list[list[int]]:
    """A history's sessions (item ids, the last one open) as this model's stream would
    have fed them: unknown ids dropped, a click on the item fed just before dropped, a
    session cut after `max_session_len` items (the rules of `_apply`; the gap and the
    explicit ends were applied when the history was written). Closed sessions left
    empty are dropped (an empty session never rolls the GRU); the last, open one is
    kept, maybe empty."""
    out: list[list[int]] = []
    for k, session in enumerate(ids):
        fed: list[int] = []
        for item in (i for i in map(index_of.get, session) if i is not None):
            if len(fed) >= policy.max_session_len:
                out.append(fed)
                fed = []
            if not fed or fed[-1] != item:
                fed.append(item)
        if fed or k == len(ids) - 1:
            out.append(fed)
    return out


def _seen(st: UserState, ev: Incoming) -> bool:
    """Applied already: at or below the recorded offset of the same partition. An offset
    of another partition (the user was re-keyed, or the topic re-partitioned) says
    nothing about this one."""
    return st.partition in (ev.partition, -1) and ev.offset <= st.offset


def _expire(ev, states, segs, counts, expired, fresh) -> None:
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
    new = fresh()
    # a redelivered event from before the expiry stays skipped
    new.offset, new.partition = ev.offset, ev.partition
    states[ev.user_id] = new
    _end_segment(segs, RESET)
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


def _roll(st: UserState, segs: list[Segment]) -> None:
    """The session ends here: the model rolls the GRU and opens a new session."""
    _end_segment(segs, ROLL)
    if st.length:
        st.sessions_rolled += 1
    st.session += 1
    st.length, st.clicked, st.last_ts = 0, [], None


def _end_segment(segs: list[Segment], how: str) -> None:
    segs[-1].end = how
    segs.append(Segment())



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
