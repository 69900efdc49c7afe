"""The worker's pure step, without Kafka: ordering, sessions, bad items, redelivery,
bad stored states and failures inside a batch."""

import dataclasses
import struct

import numpy as np
import orjson
import pytest
import torch

from hiertcn.inference import BatchState, StreamModel
from stream.worker import rows
from stream.errors import BadState
from stream.worker.recommend import Incoming, Policy, UserState, idle_sessions, is_expired, \
    process_batch
from tests.modelkit import tiny_stream_model


@pytest.fixture(scope="module")
def sm(tmp_path_factory) -> StreamModel:
    return tiny_stream_model(tmp_path_factory.mktemp("export"), n_items=40)


class Store(dict):
    """Stands in for the tables between batches. Read as the agent reads them: through
    the row, a new UserState per read; a value may be raw bytes, a row as stored."""

    def run(self, sm, events, policy=Policy(top_k=5)):
        result = process_batch(sm, events, self.load, policy)
        self.update(result.states)
        for user in result.expired:
            del self[user]
        return result

    def load(self, user):
        value = self.get(user)
        if value is None:
            return None
        return UserState.from_row(value if isinstance(value, bytes) else value.to_row())


def clicks(user, items, t0=0.0, dt=10.0, offset0=0):
    return [Incoming(user, it, t0 + k * dt, "click", f"{user}:{k}", 0, offset0 + k)
            for k, it in enumerate(items)]


def reference_embeddings(sm, sessions):
    """Embedding after each click, from the model's own step-wise API."""
    out, state = [], sm.model.initial_state(1)
    with torch.no_grad():
        for s, sess in enumerate(sessions):
            if s:
                state = sm.model.end_session(state)
            for item in sess:
                state = sm.model.step(state, torch.tensor([item]))
                out.append(state.embedding[0].numpy().copy())
    return np.stack(out)


def test_batch_with_interleaved_users_equals_step_api_per_user(sm):
    a, b = clicks("a", ["i1", "i2", "i3", "i4"]), clicks("b", ["i5", "i6"], offset0=10)
    mixed = [a[0], b[0], a[1], a[2], b[1], a[3]]
    result = Store().run(sm, mixed)
    by_user = {"a": [], "b": []}
    for o in result.outputs:
        by_user[o.user_id].append(result.embeddings[o.embedding_row])
    np.testing.assert_allclose(np.stack(by_user["a"]), reference_embeddings(sm, [[1, 2, 3, 4]]),
                               atol=1e-5)
    np.testing.assert_allclose(np.stack(by_user["b"]), reference_embeddings(sm, [[5, 6]]),
                               atol=1e-5)
    assert [o.event_id for o in result.outputs if o.user_id == "a"] == ["a:0", "a:1", "a:2", "a:3"]


def test_gap_rolls_the_session_and_split_batches_equal_one_batch(sm):
    events = clicks("u", ["i1", "i2"]) + clicks("u", ["i3", "i4"], t0=5000, offset0=2)
    one = Store().run(sm, events)
    store = Store()
    parts = [store.run(sm, events[:3]), store.run(sm, events[3:])]
    split_emb = [p.embeddings[o.embedding_row] for p in parts for o in p.outputs]
    np.testing.assert_allclose(np.stack(split_emb), reference_embeddings(sm, [[1, 2], [3, 4]]),
                               atol=1e-5)
    np.testing.assert_allclose(np.stack(one.embeddings), np.stack(split_emb), atol=1e-6)
    assert one.counts["rolled_gap"] == 1 and one.states["u"].sessions_rolled == 1
    assert [o.session for o in one.outputs] == [1, 1, 2, 2]


def test_unknown_item_is_answered_from_the_current_state_and_counted(sm):
    store = Store()
    first = store.run(sm, clicks("u", ["i1"]))
    before = store["u"].window
    result = store.run(sm, [Incoming("u", "nope", 20.0, "click", "x", 0, 1)])
    assert result.counts["unknown_items"] == 1
    assert store["u"].window == before and store["u"].length == 1
    np.testing.assert_array_equal(result.embeddings[0], first.embeddings[0])
    assert len(result.outputs[0].items) == 5


def test_redelivered_event_is_answered_but_not_applied_twice(sm):
    store = Store()
    events = clicks("u", ["i1", "i2"])
    store.run(sm, events)
    snapshot = (store["u"].window, store["u"].length)
    again = store.run(sm, events[1:])
    assert again.counts["redelivered"] == 1 and len(again.outputs) == 1
    assert (store["u"].window, store["u"].length) == snapshot


def test_model_version_change_without_history_resets_state(sm):
    no_history = Policy(top_k=5, history_events=0)
    store = Store()
    store.run(sm, clicks("u", ["i1", "i2"]), no_history)
    store["u"].model = "an-older-model"
    result = store.run(sm, clicks("u", ["i3"], offset0=5), no_history)
    assert (result.counts["model_resets"], result.counts["rebuild_fresh"]) == (1, 1)
    np.testing.assert_allclose(result.embeddings[0], reference_embeddings(sm, [[3]])[0], atol=1e-5)


def test_model_version_change_rebuilds_state_from_the_history(sm):
    store = Store()
    store.run(sm, clicks("u", ["i1", "i2"]))
    store["u"].model = "an-older-model"
    result = store.run(sm, clicks("u", ["i3"], offset0=5))
    assert (result.counts["model_resets"], result.counts["state_rebuilds"]) == (1, 1)
    np.testing.assert_allclose(result.embeddings[0],
                               reference_embeddings(sm, [[1, 2, 3]])[-1], atol=1e-5)
    assert store["u"].model == sm.version and store["u"].clicked == [1, 2, 3]


def test_late_event_never_moves_time_back_nor_splits_the_session(sm):
    store = Store()
    events = clicks("u", ["i1"], t0=1000) + [Incoming("u", "i2", 10.0, "click", "late", 0, 1)]
    result = store.run(sm, events)
    assert result.counts["late"] == 1 and store["u"].last_ts == 1000
    assert store["u"].length == 2 and result.counts["rolled_gap"] == 0


def test_recommendations_exclude_what_the_session_clicked(sm):
    result = Store().run(sm, clicks("u", ["i1", "i2", "i3"]))
    for k, o in enumerate(result.outputs):
        got = {item for item, _ in o.items}
        assert not got & {f"i{j}" for j in range(1, k + 2)}
        assert len(o.items) == 5


def test_explicit_end_and_sweep_roll_sessions(sm):
    store = Store()
    store.run(sm, clicks("u", ["i1"]) + [Incoming("u", None, 20.0, "session_end", None, 0, 1)])
    assert store["u"].sessions_rolled == 1 and store["u"].length == 0
    store.run(sm, clicks("v", ["i2"], t0=100, offset0=5))
    assert idle_sessions(store, watermark=100 + 1801, gap_s=1800) == ["v"]
    assert idle_sessions(store, watermark=100 + 1800, gap_s=1800) == []


def test_state_row_round_trip_and_bad_rows_refused(sm):
    store = Store()
    store.run(sm, clicks("u", ["i1", "i2"]))
    st = store["u"]
    row = st.to_row()
    assert UserState.from_row(row) == st
    meta, gru, window = rows.unpack(row)
    assert (gru, window) == (st.gru, st.window) and orjson.loads(meta)["length"] == 2
    # the meta is every field but the blobs: a field added to UserState must be in META
    assert set(rows.META) == ({f.name for f in dataclasses.fields(UserState)}
                              - {"gru", "window", "history"})
    # a row of the first format (three stamped tables): a bad state, with its cause
    with pytest.raises(BadState, match="^bad_state:format: format byte 0"):
        UserState.from_row(struct.pack(">iq", 0, 41) + meta)
    with pytest.raises(BadState, match="^bad_state:truncated"):
        UserState.from_row(row[:rows.HEADER.size + 3])
    with pytest.raises(BadState, match="^bad_state:meta"):
        UserState.from_row(rows.pack(orjson.dumps({**orjson.loads(meta), "length": "2"}),
                                     gru, window))


def expire(user, offset, applied_offset=None, ts=0.0):
    return Incoming(user, None, ts, "expire", None, 0, offset, applied_offset=applied_offset)


def test_applied_counts_each_event_once_and_last_seen_survives_the_session(sm):
    store = Store()
    events = clicks("u", ["i1", "nope", "i2"]) + [Incoming("u", None, 30.0, "session_end",
                                                         None, 0, 3)]
    store.run(sm, events)
    store.run(sm, events)  # all redelivered
    assert store["u"].applied == 4 and store["u"].offset == 3
    assert store["u"].last_ts is None and store["u"].last_seen == 30.0
    assert is_expired(store["u"], watermark=30.0 + 101, ttl_s=100)
    assert not is_expired(store["u"], watermark=30.0 + 100, ttl_s=100)


def test_ttl_expire_deletes_the_state_unless_the_user_moved_on(sm):
    store = Store()
    store.run(sm, clicks("u", ["i1", "i2"]))  # offsets 0, 1
    stale = store.run(sm, clicks("u", ["i3"], offset0=2) + [expire("u", 3, applied_offset=1)])
    assert stale.counts["stale_expires"] == 1 and not stale.expired and "u" in store
    gone = store.run(sm, [expire("u", 4, applied_offset=3)])
    assert gone.expired == {"u"} and "u" not in store and gone.outputs == []
    # an expire redelivered after the deletion finds nothing and writes nothing
    again = store.run(sm, [expire("u", 4, applied_offset=3)])
    assert not again.expired and not again.states and "u" not in store


def test_click_after_expire_in_one_batch_starts_fresh(sm):
    store = Store()
    store.run(sm, clicks("u", ["i1", "i2"]))
    result = store.run(sm, [expire("u", 2), *clicks("u", ["i5"], offset0=3)])
    assert not result.expired and store["u"].applied == 1 and store["u"].offset == 3
    np.testing.assert_allclose(result.embeddings[0], reference_embeddings(sm, [[5]])[0],
                               atol=1e-5)


def test_an_offset_of_another_partition_is_no_redelivery(sm):
    store = Store()
    store.run(sm, clicks("u", ["i1", "i2"], offset0=50))  # partition 0, offsets 50, 51
    moved = Incoming("u", "i3", 100.0, "click", "moved", 1, 7)  # re-keyed: partition 1
    result = store.run(sm, [moved])
    assert result.counts["redelivered"] == 0 and store["u"].length == 3
    assert (store["u"].partition, store["u"].offset) == (1, 7)
    again = store.run(sm, [moved])
    assert again.counts["redelivered"] == 1 and store["u"].applied == 3


# ---------------------------------------------------------------- bad states, failures


def test_a_bad_row_costs_its_user_one_event_and_the_user_starts_fresh(sm):
    store = Store()
    store.run(sm, clicks("u", ["i1", "i2"]) + clicks("v", ["i3"], offset0=2))
    good_v = store["v"].to_row()
    store["u"] = store["u"].to_row()[:-3]  # the window cut short: not the model's shape
    u = clicks("u", ["i4", "i5", "i6"], t0=100, offset0=10)
    v = clicks("v", ["i7"], t0=100, offset0=13)
    result = store.run(sm, [u[0], v[0], u[1], u[2]])
    assert result.rejected == [(u[0], "bad_state:shape")]
    assert result.counts["bad_states"] == 1
    # the later events are applied to a fresh state and answered; v is untouched
    assert [o.event_id for o in result.outputs] == ["v:0", "u:1", "u:2"]
    got = [result.embeddings[o.embedding_row] for o in result.outputs if o.user_id == "u"]
    np.testing.assert_allclose(np.stack(got), reference_embeddings(sm, [[5, 6]]), atol=1e-5)
    assert (store["u"].applied, store["u"].offset, store["u"].length) == (2, 12, 2)
    assert UserState.from_row(good_v).applied == store["v"].applied - 1
    # a redelivery of the dead-lettered event is recognised, not applied
    again = store.run(sm, [u[0]])
    assert again.counts["redelivered"] == 1 and store["u"].applied == 2


def test_a_bad_row_met_alone_is_replaced_by_a_state_the_ttl_can_expire(sm):
    store = Store({"u": b"\x01not a row"})
    first = clicks("u", ["i1"], t0=500, offset0=7)
    result = store.run(sm, first)
    assert result.rejected == [(first[0], "bad_state:format")] and result.outputs == []
    st = store["u"]
    assert (st.applied, st.offset, st.partition, st.last_seen) == (0, 7, 0, 500.0)
    assert is_expired(st, watermark=500 + 101, ttl_s=100)
    # an expire that meets a bad row deletes it
    store["w"] = b"\x02\x00"
    gone = store.run(sm, [expire("w", 3)])
    assert gone.rejected == [(expire("w", 3), "bad_state:format")]
    assert gone.expired == {"w"} and "w" not in store


def poison_step(monkeypatch, item: int):
    """Make the model step raise whenever `item` is fed: an unexpected failure."""
    real = BatchState.step_many

    def step_many(self, rows, items):
        if any(item in its for its in items):
            raise RuntimeError(f"poisoned item {item}")
        return real(self, rows, items)
    monkeypatch.setattr(BatchState, "step_many", step_many)


def test_a_failing_step_costs_only_the_failing_users_events(sm, monkeypatch):
    store = Store()
    store.run(sm, clicks("b", ["i1"], offset0=0))
    b_before = store["b"].to_row()
    poison_step(monkeypatch, item=7)
    a = clicks("a", ["i1", "i2"], t0=100, offset0=10)
    b = clicks("b", ["i7", "i3"], t0=100, offset0=20)
    c = clicks("c", ["i4"], t0=100, offset0=30)
    result = store.run(sm, [a[0], b[0], c[0], a[1], b[1]])
    assert result.rejected == [(b[0], "processing_error"), (b[1], "processing_error")]
    assert result.counts["batch_retries"] == 1
    assert store["b"].to_row() == b_before  # nothing of b applied, nothing written
    by_user = {}
    for o in result.outputs:
        by_user.setdefault(o.user_id, []).append(result.embeddings[o.embedding_row])
    assert sorted(by_user) == ["a", "c"]
    np.testing.assert_allclose(np.stack(by_user["a"]), reference_embeddings(sm, [[1, 2]]),
                               atol=1e-5)
    np.testing.assert_allclose(by_user["c"][0], reference_embeddings(sm, [[4]])[0], atol=1e-5)
    assert all(len(o.items) == 5 for o in result.outputs)


def test_a_failing_search_rejects_the_batch_and_never_raises(sm, monkeypatch):
    def broken(*args, **kwargs):
        raise MemoryError("faiss")
    monkeypatch.setattr(sm, "top_k", broken)
    events = clicks("a", ["i1"]) + clicks("b", ["i2"], offset0=5)
    result = Store().run(sm, events)
    assert [(ev.user_id, why) for ev, why in result.rejected] == [("a", "processing_error"),
                                                                ("b", "processing_error")]
    assert result.outputs == [] and result.states == {}


def test_the_happy_path_makes_one_model_state_per_batch(sm, monkeypatch):
    built = []
    real = BatchState.__init__

    def init(self, *args):
        built.append(1)
        real(self, *args)
    monkeypatch.setattr(BatchState, "__init__", init)
    result = Store().run(sm, clicks("a", ["i1", "i2"]) + clicks("b", ["i3"], offset0=5))
    assert len(built) == 1 and len(result.outputs) == 3 and not result.rejected
