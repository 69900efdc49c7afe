"""The pure recommendation step, kept apart from Faust so it is unit-testable.

`process_batch` takes one micro-batch of decoded clicks, the current per-user state
(read through a callable), and returns the new per-user state and the messages to
publish. First the per-user rules (stream/worker/plan.py: which events apply, which
are skipped, where sessions roll or users reset) make a plan without the model; then
the plan runs in *phases*: phase p holds every user's p-th segment (the events between
two session ends) and costs one multi-step TCN call (`BatchState.step_many`, all of
each user's items of the segment at once), then one GRU roll for the users whose
segment ends a session (and one reset for those an expire ends). A batch costs
1 + (the most session ends of one user in it) phases, whatever its burstiness, and
one faiss search. Every event gets its own embedding and top-K; outputs come in the
batch's order.

Policies: the session, late, unknown-item, repeat, history, redelivery and expiry
rules are in stream/worker/plan.py. Here:
- model version: the states of another model version met in a batch are rebuilt
  from their histories by this model, in one batched call (`StreamModel.rebuild`:
  the GRU rolled over the past sessions, the TCN fed the open one) before the batch's
  events are applied; the user's meta (session count, clocks, offsets, history) is
  kept. A user whose history holds nothing this model knows (or none: rows written
  before histories were kept, or with `history_events` 0) starts from a fresh state.
  Counted as `model_resets` (every state of another version met), of which
  `state_rebuilds` were rebuilt and `rebuild_fresh` started fresh;
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

from hiertcn.inference import BatchState, Ranked, StreamModel
from stream.errors import BadState
from stream.worker import history
from stream.worker.failures import describe
from stream.worker.plan import (RESET, ROLL, Answer, Incoming, Policy, Segment, idle_sessions,
                                is_expired, is_idle, plan_batch, replay_sessions)
from stream.worker.rows import UserState

# the names other modules import from here
__all__ = ["BatchResult", "Incoming", "Output", "Policy", "UserState", "idle_sessions",
           "is_expired", "is_idle", "process_batch"]

log = logging.getLogger(__name__)


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
    items: Ranked | list = field(default_factory=list)  # top-K, best first; [] if none


@dataclass
class BatchResult:
    states: dict[str, UserState]
    outputs: list[Output]
    embeddings: list  # float32 (D,) arrays, indexed by Output.embedding_row
    # unknown_items, model_resets, state_rebuilds, rebuild_fresh, redelivered, late,
    # expired, bad_states, batch_retries, rolled_<reason>, ...
    counts: Counter
    top_k_s: float = 0.0  # seconds spent in the faiss search, for the metrics
    expired: set = field(default_factory=set)  # users whose stored rows must be deleted
    # events for the dead-letter topic, with their reason: "bad_state:<cause>",
    # "processing_error"; none of them was applied or answered
    rejected: list[tuple[Incoming, str]] = field(default_factory=list)


def process_batch(model: StreamModel, events: list[Incoming],
                  load: Callable[[str], UserState | None], policy: Policy) -> BatchResult:
    """`load(user)`: the user's stored state, a new object on each call (the agent
    parses the row each time), or None; it raises BadState for a row that does not
    parse. Never raises: what fails is in `BatchResult.rejected`."""
    try:
        return _process(model, events, load, policy)
    except Exception as exc:  # anything: one failure must cost its user's events, not the partition
        log.error("a batch of %d events (first [%d]@%d) failed; processing it again "
                  "user by user: %s", len(events), events[0].partition, events[0].offset,
                  describe(exc))
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
            # named by partition and offset, never by user id: logs carry no user data
            log.warning("%d events of one user failed again, dead-lettered as "
                        "processing_error (first [%d]@%d): %s", len(user_events),
                        first.partition, first.offset, describe(exc))
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
    states, stored, rejected = _load_states(model, events, load, policy, counts, expired)
    if rejected:  # an event that met a bad state is not applied, nor answered
        dropped = {id(ev) for ev, _ in rejected}
        events = [ev for ev in events if id(ev) not in dropped]
    row = {user: i for i, user in enumerate(states)}
    batch = BatchState(model, [(st.gru, st.window) for st in states.values()])
    plans, answers = plan_batch(events, states, model.index_of, policy, counts, expired,
                                lambda: _fresh(model))
    embeddings = list(_execute(batch, row, plans, answers))  # (D,) each
    outputs = [Output(a.event.user_id, a.event.event_id, a.event.ts, a.session, model.version,
                      i, a.event.event == "click", a.event.received, a.exclude)
               for i, a in enumerate(answers)]
    for st, (gru, window) in zip(states.values(), batch.blobs()):
        st.gru, st.window = gru, window
    for user in expired:
        del states[user]  # deleted if stored; never written if it was not
    t0 = time.perf_counter()
    _attach_top_k(model, outputs, embeddings, policy)
    return BatchResult(states, outputs, embeddings, counts, time.perf_counter() - t0,
                       expired & stored, rejected)


def _load_states(model, events, load, policy, counts, expired):
    """Each user's state, read once per batch at the user's first event: (states by
    user, users with a stored row, rejected events). A bad row is replaced by a fresh
    state and the event that met it rejected; those of another model version are
    rebuilt."""
    states: dict[str, UserState] = {}
    stale: dict[str, UserState] = {}  # of another model version
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
        if loaded is not None and loaded.model != model.version:
            stale[ev.user_id] = loaded
        states[ev.user_id] = loaded if loaded is not None else _fresh(model)
    if stale:
        _rebuild(model, stale, policy, counts)  # in place: `states` holds them
    return states, stored, rejected


def _load(model: StreamModel, load, user_id: str) -> UserState | None:
    """The stored state, or BadState if its blobs are not of this model's size (those
    of another model version are rebuilt by `_rebuild`, whatever their size)."""
    st = load(user_id)
    if st is not None and st.model == model.version:
        want = model.blob_sizes  # checked here, per user: unpack would fail the batch
        if (len(st.gru), len(st.window)) != want:
            raise BadState("shape", f"GRU and window blobs of {len(st.gru)} and "
                                    f"{len(st.window)} bytes, the model's are {want}")
    return st


@lru_cache(maxsize=8)
def _fresh_blobs(model: StreamModel) -> tuple[bytes, bytes]:
    """A fresh state of this model, made once: a new user costs no model call."""
    return model.fresh(1)[0]


def _after_bad_state(model, ev: Incoming, bad: BadState, counts: Counter,
                     expired: set[str]) -> UserState:
    """A fresh state in place of a bad row; `ev`, the event that met it, is rejected.
    The fresh state records `ev`'s offset (a redelivery of it is skipped) and time (so
    the TTL sweep can expire a user who never comes back)."""
    log.warning("stored state unusable (%s) at [%d]@%d; the event is dead-lettered and "
                "its user starts afresh", bad, ev.partition, ev.offset)
    counts["bad_states"] += 1
    fresh = _fresh(model)
    fresh.offset, fresh.partition, fresh.last_seen = ev.offset, ev.partition, ev.ts
    if ev.event == "expire":
        expired.add(ev.user_id)  # deleted, unless a later event of the batch revives it
    return fresh


def _rebuild(model: StreamModel, stale: dict[str, UserState], policy: Policy,
             counts: Counter) -> None:
    """Give states of another model version this model's blobs, in place: rebuilt
    from their histories in one batched model call, or fresh where this model knows
    nothing of the history. Meta and history are kept; `length` and `clicked` become
    the rebuilt open session's, in this model's indices."""
    replays: dict[str, list[list[int]]] = {}
    for user, st in stale.items():
        try:
            ids = history.sessions(st.history)
        except history.BadHistory:  # a cache of clicks: dropped, never a bad state
            ids, st.history = [], b""
        sessions = replay_sessions(ids, model.index_of, policy) if ids else []
        if any(sessions):
            replays[user] = sessions
    rebuilt = dict(zip(replays, model.rebuild(list(replays.values())) if replays else []))
    for user, st in stale.items():
        if user in rebuilt:
            (st.gru, st.window), open_session = rebuilt[user], replays[user][-1]
        else:
            (st.gru, st.window), open_session = _fresh_blobs(model), []
        st.model, st.length, st.clicked = model.version, len(open_session), list(open_session)
    counts["model_resets"] += len(stale)
    counts["state_rebuilds"] += len(rebuilt)
    counts["rebuild_fresh"] += len(stale) - len(rebuilt)


def _fresh(model: StreamModel) -> UserState:
    gru, window = _fresh_blobs(model)
    return UserState(gru=gru, window=window, model=model.version, session=1)


def _execute(batch: BatchState, row: dict[str, int], plans: dict[str, list[Segment]],
             answers: list[Answer]) -> np.ndarray:
    """Run the plans phase by phase (phase p: every user's p-th segment): one
    `step_many` for the items, then one roll and one reset for the segments that end
    so. Returns the embedding answering each answer (n, D)."""
    pool: list[np.ndarray] = []  # blocks of embeddings, rows counted by `size`
    start_at: dict[tuple[str, int], int] = {}  # (user, segment) -> row of its start state
    fed_at: dict[tuple[str, int], int] = {}  # (user, segment) -> row after its first item
    size = 0
    for p in range(max(map(len, plans.values()), default=0)):
        users = [u for u, segs in plans.items() if len(segs) > p]
        pool.append(batch.embeddings([row[u] for u in users]))  # (n_users, D)
        start_at.update({(u, p): size + i for i, u in enumerate(users)})
        size += len(users)
        fed = [u for u in users if plans[u][p].items]
        if fed:
            pool.append(batch.step_many([row[u] for u in fed], [plans[u][p].items for u in fed]))
            for u in fed:
                fed_at[(u, p)] = size
                size += len(plans[u][p].items)
        for end, call in ((ROLL, batch.end_sessions), (RESET, batch.reset)):
            ending = [row[u] for u in users if plans[u][p].end == end]
            if ending:
                call(ending)
    if not answers:
        return np.zeros((0, 0), np.float32)
    at = [start_at[(a.event.user_id, a.segment)] if a.fed == 0 else
          fed_at[(a.event.user_id, a.segment)] + a.fed - 1 for a in answers]
    return np.concatenate(pool)[at]  # (n, D)


def _attach_top_k(model, outputs, embeddings, policy) -> None:
    wanted = [o for o in outputs if o.recommend]
    if not wanted:
        return
    emb = np.stack([embeddings[o.embedding_row] for o in wanted])  # (n, D)
    for o, items in zip(wanted, model.top_k(emb, policy.top_k, [o.exclude for o in wanted])):
        o.items = items
