"""State survives a rollout: the bounded history each row keeps, its encoding, and the
rebuild of a user's state by a new model version (stream/worker/history.py,
plan.replay_sessions, recommend._rebuild, StreamModel.rebuild)."""

import random
import struct

import numpy as np
import orjson
import pytest
import torch

from hiertcn.checkpoint import export, save_checkpoint
from hiertcn.inference import StreamModel
from hiertcn.model import HierTCN, ModelConfig
from stream.worker import history, rows
from stream.worker.recommend import Incoming, Policy, UserState, process_batch

POLICY = Policy(top_k=5, session_gap_s=1800, max_session_len=4)
GAP = 4000.0  # seconds: more than the session gap


def tiny_model(where, seed: int, item_ids: list[str]) -> StreamModel:
    torch.manual_seed(seed)
    model = HierTCN(ModelConfig(n_items=len(item_ids), item_dim=8, channels=6, kernel_size=3,
                                levels=2, gru_hidden=4, gru_layers=2, dropout=0.0)).eval()
    save_checkpoint(where / "ckpt.pt", model, item_ids, step=1, extra={})
    return StreamModel.load(export(where / "ckpt.pt", where / "export"))


@pytest.fixture(scope="module")
def old(tmp_path_factory) -> StreamModel:
    """The model before the rollout: items i0..i29."""
    return tiny_model(tmp_path_factory.mktemp("old"), 0, [f"i{k}" for k in range(30)])


@pytest.fixture(scope="module")
def new(tmp_path_factory) -> StreamModel:
    """The model after it, trained with another seed on another vocabulary: i5..i34
    (i0..i4 are unknown to it, i30..i34 to the old one), in another order."""
    return tiny_model(tmp_path_factory.mktemp("new"), 1, [f"i{k}" for k in range(34, 4, -1)])


class Store(dict):
    """The table between batches: user -> row bytes, read and written as the agent
    does."""

    def run(self, model, events, policy=POLICY):
        result = process_batch(model, events, self.load, policy)
        assert not result.rejected
        self.update({user: st.to_row() for user, st in result.states.items()})
        return result

    def load(self, user):
        return UserState.from_row(self[user]) if user in self else None

    def state(self, user) -> UserState:
        return UserState.from_row(self[user])


def user_events(user: str, sessions: list[list[str]], t0: float = 0.0,
                offset0: int = 0) -> list[Incoming]:
    """Clicks 10 s apart within a session, sessions GAP apart."""
    out, t, offset = [], t0, offset0
    for s, items in enumerate(sessions):
        t += GAP if s else 0.0
        for item in items:
            out.append(Incoming(user, item, t, "click", f"{user}:{offset}", 0, offset))
            t, offset = t + 10.0, offset + 1
    return out


def in_batches(store, model, events, size=3, policy=POLICY):
    for k in range(0, len(events), size):
        store.run(model, events[k:k + size], policy)


def assert_same_state(a: UserState, b: UserState):
    for x, y in ((a.gru, b.gru), (a.window, b.window)):
        np.testing.assert_allclose(np.frombuffer(x, np.float32), np.frombuffer(y, np.float32),
                                   atol=1e-5)
    assert (a.length, a.clicked, a.model) == (b.length, b.clicked, b.model)


# ---------------------------------------------------------------- the history blob

def test_history_round_trip_is_compact_and_takes_any_id():
    sessions = [["1", "318", "é-ü"], ["x" * 300], ["42"]]
    blob = history.encode(sessions, bound=100)
    assert history.sessions(blob) == sessions and history.count(blob) == 5
    # a click costs its id and one length byte (two for the 300-byte id), a session end
    # one byte, plus the 8-byte head: no JSON, no floats
    ids = sum(len(i.encode()) for s in sessions for i in s)
    assert len(blob) == history.HEAD.size + ids + 5 + 1 + 2
    assert history.sessions(history.close_session(blob)) == sessions + [[]]
    assert history.encode(sessions, bound=0) == b""


def test_history_bound_drops_the_oldest_whole_sessions_first():
    blob = history.encode([["a", "b", "c"], ["d", "e"], ["f"]], bound=4)
    assert history.sessions(blob) == [["d", "e"], ["f"]]
    # an open session alone over the bound loses its oldest clicks
    blob = history.encode([["a"], ["b", "c", "d", "e", "f"]], bound=3)
    assert history.sessions(blob) == [["d", "e", "f"]]


def test_history_bound_matches_a_list_model_on_random_streams():
    rng = random.Random(3)
    for bound in (1, 5, 50):
        kept, blob = [[]], b""
        for _ in range(400):
            if rng.random() < 0.2:
                blob = history.close_session(blob)
                if kept[-1]:
                    kept.append([])
                continue
            item = f"i{rng.randrange(1000)}"
            blob = history.append(blob, item, bound)
            kept[-1].append(item)
            while sum(map(len, kept)) > bound and len(kept) > 1:
                kept.pop(0)
            if len(kept) == 1:
                del kept[0][:max(0, len(kept[0]) - bound)]
            assert history.sessions(blob) == kept
        assert history.count(blob) <= bound


def test_a_broken_history_is_refused_and_replaced_by_the_next_click():
    blob = history.encode([["a", "b"], ["c"]], bound=10)
    for broken in (blob[:-1], blob[:5], struct.pack(">II", 1, 2) + blob[8:]):
        with pytest.raises(history.BadHistory):
            history.sessions(broken)
    assert history.sessions(history.append(blob[:5], "z", 10)) == [["z"]]


# ---------------------------------------------------------------- rows

def test_rows_carry_the_history_and_old_rows_parse_without_one(old):
    store = Store()
    store.run(old, user_events("u", [["i1", "i2"], ["i3"]]))
    st = store.state("u")
    assert history.sessions(st.history) == [["i1", "i2"], ["i3"]]
    assert UserState.from_row(st.to_row()) == st
    meta, gru, window = rows.unpack(st.to_row())
    # a row as the workers before format 3 wrote it: no history length, no history
    v2 = struct.pack(">BII", 2, len(meta), len(gru)) + meta + gru + window
    back = UserState.from_row(v2)
    assert back.history == b"" and (back.gru, back.window, back.clicked) == (st.gru, st.window,
                                                                           st.clicked)


def test_an_old_row_without_history_starts_fresh_on_a_new_model(old, new):
    store = Store()
    store.run(old, user_events("u", [["i6", "i7"]]))
    meta, gru, window = rows.unpack(store["u"])
    store["u"] = struct.pack(">BII", 2, len(meta), len(gru)) + meta + gru + window
    result = store.run(new, user_events("u", [["i8"]], t0=100.0, offset0=2))
    assert (result.counts["model_resets"], result.counts["rebuild_fresh"],
            result.counts["state_rebuilds"]) == (1, 1, 0)
    fresh = Store()
    fresh.run(new, user_events("v", [["i8"]]))
    np.testing.assert_allclose(np.frombuffer(store.state("u").window, np.float32),
                               np.frombuffer(fresh.state("v").window, np.float32), atol=1e-6)
    assert store.state("u").offset == 2  # the meta survives: a redelivery stays skipped


def test_history_events_zero_keeps_no_history(old):
    store = Store()
    store.run(old, user_events("u", [["i1", "i2"]]), Policy(top_k=5, history_events=0))
    assert store.state("u").history == b""


# ---------------------------------------------------------------- rebuild

def test_rebuild_equals_the_step_api_fed_the_same_sessions(new):
    histories = [[[1, 2, 3], [4], [5, 6]], [[7, 8]], [[], [9], []], [[]]]
    got = new.unpack(new.rebuild(histories))
    for b, sessions in enumerate(histories):
        with torch.no_grad():
            state = new.model.initial_state(1)
            for s, items in enumerate(sessions):
                if s:
                    state = new.model.end_session(state)
                for item in items:
                    state = new.model.step(state, torch.tensor([item]))
        want = new.unpack(new.pack(state))
        for x, y in ((got.h[b], want.h[0]), (got.embedding[b], want.embedding[0]),
                     (got.session_sum[b], want.session_sum[0])):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=0)
        for p, q in zip(got.pasts, want.pasts):
            torch.testing.assert_close(p[b], q[0], atol=1e-5, rtol=0)


SESSIONS = [["i5", "i6", "i7"], ["i8", "i1", "i9", "i10", "i11", "i12", "i12"],
            ["i13", "i30", "i14"], ["i15", "i16"]]  # i1 unknown to new, i30 to old


def test_rebuilt_state_equals_the_new_model_having_seen_the_history_live(old, new):
    before, after = user_events("u", SESSIONS), user_events("u", [["i17", "i18"]],
                                                             t0=90000.0, offset0=100)
    rolled, live = Store(), Store()
    in_batches(rolled, old, before)
    in_batches(live, new, before)
    assert rolled.state("u").model != live.state("u").model
    got = rolled.run(new, after)
    want = live.run(new, after)
    assert (got.counts["state_rebuilds"], got.counts["rebuild_fresh"]) == (1, 0)
    np.testing.assert_allclose(np.stack(got.embeddings), np.stack(want.embeddings), atol=1e-5)
    assert [o.items.item_ids for o in got.outputs] == [o.items.item_ids for o in want.outputs]
    assert_same_state(rolled.state("u"), live.state("u"))
    # the history goes on after the rebuild as it would have
    assert history.sessions(rolled.state("u").history) == SESSIONS + [["i17", "i18"]]


def test_rebuild_within_the_bound_equals_live_over_the_kept_sessions(old, new):
    bounded = Policy(top_k=5, session_gap_s=1800, max_session_len=4, history_events=8)
    rolled, live = Store(), Store()
    in_batches(rolled, old, user_events("u", SESSIONS), policy=bounded)
    kept = history.sessions(rolled.state("u").history)
    assert kept == SESSIONS[2:]  # the last two sessions: 5 clicks, 12 with the one before
    in_batches(live, new, user_events("u", kept))
    after = user_events("u", [["i17"]], t0=90000.0, offset0=100)
    got, want = rolled.run(new, after, bounded), live.run(new, after)
    np.testing.assert_allclose(got.embeddings[0], want.embeddings[0], atol=1e-5)


def test_a_history_the_new_model_does_not_know_starts_fresh(old, new):
    store = Store()
    store.run(old, user_events("u", [["i1", "i2"], ["i3"]]))  # all unknown to `new`
    result = store.run(new, user_events("u", [["i20"]], t0=90000.0, offset0=3))
    assert (result.counts["state_rebuilds"], result.counts["rebuild_fresh"]) == (0, 1)
    st = store.state("u")
    assert st.clicked == [new.index_of["i20"]] and st.sessions_rolled == 1
    # the unknown ids stay in the history: the model after this one may know them
    assert history.sessions(st.history) == [["i1", "i2"], ["i3"], ["i20"]]


def test_a_mixed_batch_rebuilds_only_the_stale_users(old, new):
    rolled, live = Store(), Store()
    for user, sessions in (("stale", SESSIONS), ("stale2", [["i9", "i9", "i10"]]),
                           ("nohist", [["i6"]])):
        in_batches(rolled, old, user_events(user, sessions))
        in_batches(live, new, user_events(user, sessions))
    meta = orjson.loads(rows.unpack(rolled["nohist"])[0])
    assert meta["model"] == old.version
    rolled["nohist"] = rows.pack(*rows.unpack(rolled["nohist"]))  # a row without history
    in_batches(rolled, new, user_events("current", [["i11", "i12"]]))
    in_batches(live, new, user_events("current", [["i11", "i12"]]))
    batch = []
    for k, user in enumerate(("stale", "current", "stale2", "newcomer")):
        batch += user_events(user, [["i21", "i22"]], t0=90000.0 + k, offset0=100)
    batch.sort(key=lambda ev: ev.ts)  # users interleaved
    got = rolled.run(new, batch + user_events("nohist", [["i23"]], 90000.0, 100))
    want = live.run(new, batch)
    assert (got.counts["state_rebuilds"], got.counts["rebuild_fresh"],
            got.counts["model_resets"]) == (2, 1, 3)
    by_event = {o.event_id: got.embeddings[o.embedding_row] for o in got.outputs}
    for o in want.outputs:
        np.testing.assert_allclose(by_event[o.event_id], want.embeddings[o.embedding_row],
                                   atol=1e-5)
    for user in ("stale", "current", "stale2", "newcomer"):
        assert_same_state(rolled.state(user), live.state(user))


# ---------------------------------------------------------------- the benchmark's pieces

def test_the_benchmark_scores_each_recommendation_against_the_next_click(new):
    from benchmarks.lifecycle.replay import score
    events = user_events("u", [["i5", "i6", "i7", "i1", "i8"]])
    recs = {"u:0": ["i9", "i6"], "u:1": ["i10"], "u:2": ["i20"], "u:3": ["i8", "i9"]}
    # u:1's next click i7 is missed, u:2's next (i1) is unknown to the model: not scored
    got = score(recs, events, new)
    assert got == {"recall@20": round(2 / 3, 5), "mrr@20": round((1 / 2 + 1) / 3, 5),
                   "scored": 3}
    assert score(recs, events, new, first=2) == {"recall@20": 0.5, "mrr@20": 0.25,
                                                 "scored": 2}


def test_the_benchmark_report_keeps_the_other_parts_figures(tmp_path):
    from benchmarks.lifecycle.report import merge
    path = tmp_path / "lifecycle.json"
    path.write_text(orjson.dumps({"swap": {"lost": 0}, "commands": {"swap": "x"},
                                  "arms": {"old": 1}}).decode())
    data = merge(path, {"users": 3, "arms": {"rebuild": {}}}, "python -m benchmarks.lifecycle")
    assert orjson.loads(path.read_text()) == data
    assert data["swap"] == {"lost": 0} and data["arms"] == {"rebuild": {}}
    assert data["commands"] == {"swap": "x", "rollout": "python -m benchmarks.lifecycle"}
