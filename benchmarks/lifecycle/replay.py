"""The accuracy arms of a rollout, Kafka-free through the worker's own code path
(`stream.worker.recommend.process_batch`, each user's state stored as its
`user_state` row bytes between batches, as the agent does).

The test users' clicks (the user split's held-out users, never seen in training) in
event-time order, cut into the worker's 200-event micro-batches. Each user's clicks
are cut in half: phase 1 replays every first half, then the rollout, then phase 2
replays every second half with model B. Scored: the recommendation the stream
published after each phase-2 click, against that user's next click (when model B
knows the item): Recall@20 and MRR@20.

Arms: `ARMS`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

from hiertcn.inference import StreamModel, export_session_config
from stream.worker.recommend import Incoming, Policy, UserState, process_batch

BATCH = 200  # events per micro-batch (StreamConfig.batch_size)
K = 20
FIRST = 10  # the first scored clicks of each user after the rollout: where state matters
# what serves phase 1, and what happens at the rollout
ARMS = {
    "no_rollout": "model B throughout: the state phase 2 starts from was built by the "
                  "new model from the user's first click (what a rollout at best keeps)",
    "reset": "model A, then B with no history kept (history_events 0): every user starts "
             "phase 2 from a fresh state, as the worker did before histories",
    "rebuild": "model A keeping history_events of history, then B rebuilds each user's "
               "state from it at the user's first phase-2 click"}


@dataclass
class Replay:
    """The two halves of every test user's clicks, each in event-time order."""

    first: list[Incoming]
    second: list[Incoming]
    users: int


def halves(events, user_ids: set[str]) -> Replay:
    """`events`: a DataFrame of clicks (user, item, ts, event_id) in event-time order;
    each of `user_ids`' clicks split into its first and second half."""
    clicks = events[events["user"].isin(user_ids) & (events["event"] == "click")]
    rank = clicks.groupby("user").cumcount().to_numpy()
    size = clicks.groupby("user")["user"].transform("size").to_numpy()
    first, second = [], []
    for k, row in enumerate(clicks.itertuples(index=False)):
        ev = Incoming(str(row.user), str(row.item), float(row.ts), "click", row.event_id, 0, k)
        (first if rank[k] < size[k] // 2 else second).append(ev)
    return Replay(first, second, len(set(clicks["user"])))


def policy_of(export_dir, history_events: int) -> Policy:
    session = export_session_config(export_dir)
    return Policy(top_k=K, session_gap_s=float(session["gap_s"]),
                  max_session_len=int(session["max_session_len"]),
                  history_events=history_events)


def run(model: StreamModel, events: list[Incoming], table: dict[str, bytes],
        policy: Policy, on_batch: Callable | None = None) -> None:
    """Replay `events` in micro-batches through process_batch over `table`'s rows."""
    def load(user):
        return UserState.from_row(table[user]) if user in table else None
    for k in range(0, len(events), BATCH):
        result = process_batch(model, events[k:k + BATCH], load, policy)
        if result.rejected:
            raise RuntimeError(f"{len(result.rejected)} events rejected in the replay")
        table.update({user: st.to_row() for user, st in result.states.items()})
        if on_batch is not None:
            on_batch(result)


def arm(model_a: StreamModel, model_b: StreamModel, replay: Replay, policy_a: Policy,
        policy_b: Policy) -> tuple[dict, dict[str, bytes], dict]:
    """Phase 1 with model A, phase 2 with B; (scores, the rows after phase 1, the
    outcome counts of phase 2)."""
    table: dict[str, bytes] = {}
    run(model_a, replay.first, table, policy_a)
    after_phase_1 = dict(table)
    recs: dict[str, list] = {}  # event id -> recommended item ids
    counts: dict[str, int] = {}

    def keep(result):
        for o in result.outputs:
            if o.recommend:
                recs[o.event_id] = o.items.item_ids
        for name, n in result.counts.items():
            counts[name] = counts.get(name, 0) + n
    run(model_b, replay.second, table, policy_b, keep)
    scores = score(recs, replay.second, model_b)
    scores[f"first_{FIRST}_clicks"] = score(recs, replay.second, model_b, FIRST)
    return scores, after_phase_1, counts


def score(recs: dict[str, list], events: list[Incoming], model: StreamModel,
          first: int | None = None) -> dict:
    """Recall@K and MRR@K of each click's recommendation against the user's next
    click, when the model knows that item; only each user's `first` such if given."""
    hits, rr, n = 0, 0.0, 0
    last: dict[str, Incoming] = {}
    per_user: dict[str, int] = {}
    for ev in events:
        before = last.get(ev.user_id)
        last[ev.user_id] = ev
        if before is None or ev.item_id not in model.index_of:
            continue
        if first is not None and per_user.get(ev.user_id, 0) >= first:
            continue
        per_user[ev.user_id] = per_user.get(ev.user_id, 0) + 1
        items = recs[before.event_id]
        n += 1
        if ev.item_id in items:
            hits += 1
            rr += 1.0 / (items.index(ev.item_id) + 1)
    return {f"recall@{K}": round(hits / n, 5), f"mrr@{K}": round(rr / n, 5), "scored": n}


def rebuild_ms_per_user(model_b: StreamModel, stale: dict[str, bytes],
                        current: dict[str, bytes], replay: Replay, policy: Policy,
                        reps: int = 3) -> float:
    """What a rebuild adds to a batch, per user: one click per user (its first phase-2
    click), BATCH users a batch, applied to the rows model A left (rebuilt first) and
    to the rows model B left (the same work without the rebuild); the difference of
    the best of `reps` timings, summed over batches, per user."""
    first: dict[str, Incoming] = {}
    for ev in replay.second:
        first.setdefault(ev.user_id, ev)
    users = sorted(u for u in first if u in stale and u in current)
    extra = 0.0
    for k in range(0, len(users), BATCH):
        events = [first[u] for u in users[k:k + BATCH]]
        times = {}
        for name, table in (("stale", stale), ("current", current)):
            def load(user, table=table):
                return UserState.from_row(table[user])
            best = float("inf")
            for _ in range(reps):
                t0 = time.perf_counter()
                result = process_batch(model_b, events, load, policy)
                best = min(best, time.perf_counter() - t0)
            times[name] = best
            if name == "stale" and result.counts["state_rebuilds"] != len(events):
                raise RuntimeError("a stale row was not rebuilt: is model B model A?")
        extra += times["stale"] - times["current"]
    return round(extra / len(users) * 1000, 3)


def no_history(policy: Policy) -> Policy:
    return replace(policy, history_events=0)
