"""A micro-batch costs a few model calls whatever its burstiness, and gives what the
model's own step API gives event by event: random batches of many users with bursts
of 1..60 events, session ends of every kind inside the batch, unknown items, repeats,
late events, redeliveries and expiries."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from hiertcn.model import SessionTCN
from stream.worker.recommend import Incoming, Policy, UserState, process_batch
from tests.modelkit import tiny_stream_model

N_ITEMS = 40
POLICY = Policy(top_k=5, session_gap_s=1800, max_session_len=5)


@pytest.fixture(scope="module")
def sm(tmp_path_factory):
    return tiny_stream_model(tmp_path_factory.mktemp("export"), n_items=N_ITEMS)


@dataclass
class Oracle:
    """One user as the rules say, event by event, with the model's `step` and
    `end_session` on a state of one user: the reference the batch must equal."""

    state: object
    session: int = 1
    length: int = 0
    clicked: list = field(default_factory=list)
    last_ts: float | None = None
    offset: int = -1
    partition: int = -1
    applied: int = 0
    expired: bool = False  # deleted at the end of the batch unless an event revives it

    @classmethod
    def new(cls, sm):
        with torch.no_grad():
            return cls(sm.model.initial_state(1))

    def apply(self, sm, ev: Incoming) -> bool:
        """True if `ev` is answered (from `self.state` after it)."""
        if self.partition in (ev.partition, -1) and ev.offset <= self.offset:
            return ev.event != "expire"  # a redelivery: answered, not applied
        if ev.event == "expire":
            self.expire(sm, ev)
            return False
        self.expired = False
        self.offset, self.partition, self.applied = ev.offset, ev.partition, self.applied + 1
        item = sm.index_of.get(ev.item_id) if ev.event == "click" else None
        if ev.event == "click" and item is None:
            return True
        if ev.event == "session_end":
            rolls = ev.session is None or (ev.session == self.session and self.length > 0)
        else:
            rolls = self.length > 0 and (ev.ts - self.last_ts > POLICY.session_gap_s
                                         or self.length >= POLICY.max_session_len)
        with torch.no_grad():
            if rolls:
                self.state = sm.model.end_session(self.state)
                self.session, self.length, self.clicked, self.last_ts = \
                    self.session + 1, 0, [], None
            if item is not None and not (self.clicked and self.clicked[-1] == item):
                self.state = sm.model.step(self.state, torch.tensor([item]))
                self.length += 1
                self.clicked.append(item)
        if item is not None or not rolls:
            self.last_ts = ev.ts if self.last_ts is None else max(self.last_ts, ev.ts)
        return True

    def expire(self, sm, ev):
        if self.applied == 0:
            self.expired = True
        elif ev.applied_offset is not None and ev.applied_offset != self.offset:
            self.offset, self.partition, self.applied = ev.offset, ev.partition, self.applied + 1
        else:
            fresh = Oracle.new(sm)
            fresh.offset, fresh.partition, fresh.expired = ev.offset, ev.partition, True
            self.__dict__.update(fresh.__dict__)


def burst(rng: random.Random, user: str, n: int, clock: dict, sent: list) -> list[Incoming]:
    """n events of one user: clicks (some on unknown items, some repeats), gaps, late
    events, explicit and sweep session ends, expiries and redeliveries."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.06 and sent:
            out.append(rng.choice(sent))  # a redelivery of one of the user's events
            continue
        clock[user] += rng.choice([10.0] * 14 + [5000.0, -30.0])  # a gap, a late event
        clock["offset"] += 1
        ts, off, eid = clock[user], clock["offset"], f"{user}:{clock['offset']}"
        if r < 0.09:
            ev = Incoming(user, None, ts, "session_end", eid, 0, off)
        elif r < 0.11:
            ev = Incoming(user, None, ts, "session_end", eid, 0, off, session=rng.randint(1, 4))
        elif r < 0.13:
            ev = Incoming(user, None, ts, "expire", None, 0, off,
                          applied_offset=rng.choice([None, off - 1, 0]))
        elif r < 0.18:
            ev = Incoming(user, "nope", ts, "click", eid, 0, off)
        elif r < 0.28 and out and out[-1].item_id:
            ev = Incoming(user, out[-1].item_id, ts, "click", eid, 0, off)  # a repeat
        else:
            ev = Incoming(user, f"i{rng.randrange(N_ITEMS)}", ts, "click", eid, 0, off)
        out.append(ev)
        sent.append(ev)
    return out


def interleave(rng: random.Random, bursts: list[list[Incoming]]) -> list[Incoming]:
    """The users' events mixed at random, each user's in order (as a partition holds)."""
    slots = [i for i, b in enumerate(bursts) for _ in b]
    rng.shuffle(slots)
    its = [iter(b) for b in bursts]
    return [next(its[i]) for i in slots]


def floats(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bursty_batches_equal_the_step_api_event_by_event(sm, seed):
    rng = random.Random(seed)
    users = [f"u{k}" for k in range(12)]
    clock = {"offset": 0, **{u: 1000.0 for u in users}}
    sent = {u: [] for u in users}
    oracles = {u: Oracle.new(sm) for u in users}
    table: dict[str, bytes] = {}
    load = lambda u: UserState.from_row(table[u]) if u in table else None  # noqa: E731
    counts = {}
    for _ in range(4):
        active = rng.sample(users, rng.randint(1, len(users)))
        events = interleave(rng, [burst(rng, u, rng.randint(1, 60), clock, sent[u])
                                  for u in active])
        result = process_batch(sm, events, load, POLICY)
        assert not result.rejected and result.counts["batch_retries"] == 0
        want = []  # (event id, session, items excluded, embedding) of each answer
        for ev in events:
            o = oracles[ev.user_id]
            if o.apply(sm, ev):
                want.append((ev.event_id, o.session, frozenset(o.clicked),
                             o.state.embedding[0].numpy().copy()))
        got = [(o.event_id, o.session, o.exclude) for o in result.outputs]
        assert got == [w[:3] for w in want]
        np.testing.assert_allclose(np.stack(result.embeddings), np.stack([w[3] for w in want]),
                                   atol=1e-5)
        for u in active:
            if oracles[u].expired:  # the rows are deleted: the user comes back as a new one
                oracles[u] = Oracle.new(sm)
        for k, v in result.counts.items():
            counts[k] = counts.get(k, 0) + v
        table.update({u: st.to_row() for u, st in result.states.items()})
        for u in result.expired:
            del table[u]
        for u in active:
            assert (u in table) == (oracles[u].applied > 0 or oracles[u].offset >= 0), u
            if u not in table:
                continue
            st, o = UserState.from_row(table[u]), oracles[u]
            assert (st.session, st.length, st.clicked, st.last_ts, st.offset, st.applied) == \
                (o.session, o.length, o.clicked, o.last_ts, o.offset, o.applied), u
            gru, window = sm.pack(o.state)[0]
            np.testing.assert_allclose(floats(st.gru), floats(gru), atol=1e-5)
            np.testing.assert_allclose(floats(st.window), floats(window), atol=1e-5)
    for name in ("rolled_gap", "rolled_max_len", "rolled_explicit", "expired", "redelivered",
                 "repeats", "unknown_items", "late"):
        assert counts.get(name, 0) > 0, (name, counts)


def count_calls(monkeypatch, cls, names) -> list[str]:
    """Wrap `cls`'s methods `names` to record each call's name, in order."""
    calls = []
    for name in names:
        def wrapped(self, *args, _real=getattr(cls, name), _name=name):
            calls.append(_name)
            return _real(self, *args)
        monkeypatch.setattr(cls, name, wrapped)
    return calls


def stored(sm, users) -> dict[str, bytes]:
    """Rows of users who clicked once already (so no fresh state is made in the batch)."""
    result = process_batch(sm, [Incoming(u, "i0", 0.0, "click", None, 0, 0) for u in users],
                           lambda u: None, POLICY)
    return {u: st.to_row() for u, st in result.states.items()}


def test_200_events_of_5_users_without_session_ends_make_one_tcn_call(sm, monkeypatch):
    users = [f"b{k}" for k in range(5)]
    table = stored(sm, users)
    events = [Incoming(u, f"i{1 + (t % 39)}", 10.0 + t, "click", f"{u}:{t}", 0, 1 + t)
              for t in range(40) for u in users]  # 40 each, interleaved, no repeats
    calls = count_calls(monkeypatch, SessionTCN, ("step", "step_many"))
    result = process_batch(sm, events, lambda u: UserState.from_row(table[u]),
                           Policy(top_k=5, exclude_clicked=False))
    assert calls == ["step_many"]
    assert len(result.outputs) == 200 and all(len(o.items) == 5 for o in result.outputs)
    assert {st.length for st in result.states.values()} == {41}


def test_a_batch_costs_one_phase_more_than_the_most_session_ends_of_a_user(sm, monkeypatch):
    from hiertcn.model import HierTCN
    users = ["busy", "a", "b", "c"]
    table = stored(sm, users)
    offsets = iter(range(1, 1000))

    def ev(u, what):
        if what == "end":
            return Incoming(u, None, 50.0, "session_end", None, 0, next(offsets))
        return Incoming(u, what, 50.0, "click", None, 0, next(offsets))
    busy = [ev("busy", w) for w in ("i1", "i2", "end", "i3", "end", "end", "i4", "i5")]
    others = [ev(u, f"i{k}") for k in range(1, 21) for u in users[1:]]
    calls = count_calls(monkeypatch, HierTCN, ("step", "step_packed", "end_session"))
    result = process_batch(sm, busy + others, lambda u: UserState.from_row(table[u]),
                           Policy(top_k=5))
    # phases: [i1 i2 | others' 20] end, [i3] end, [] end, [i4 i5]
    assert calls == ["step_packed", "end_session", "step_packed", "end_session", "end_session",
                     "step_packed"]
    assert result.counts["rolled_explicit"] == 3 and len(result.outputs) == 68
