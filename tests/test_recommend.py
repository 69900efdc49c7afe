"""The worker's pure step, without Kafka: ordering, sessions, bad items, redelivery."""

import struct

import numpy as np
import pytest
import torch

from hiertcn.inference import StreamModel
from stream.worker import rows
from stream.errors import StreamError
from stream.worker.recommend import Incoming, Policy, UserState, idle_sessions, is_expired, \
    process_batch
from tests.modelkit import tiny_stream_model


@pytest.fixture(scope="module")
def sm(tmp_path_factory) -> StreamModel:
    return tiny_stream_model(tmp_path_factory.mktemp("export"), n_items=40)


class Store(dict):
    """Stands in for the tables: plain storage between batches."""

    def run(self, sm, events, policy=Policy(top_k=5)):
        result = process_batch(sm, events, self.get, policy)
        self.update(result.states)
        for user in result.expired:
            del self[user]
        return result


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


def test_model_version_change_resets_state(sm):
    store = Store()
    store.run(sm, clicks("u", ["i1", "i2"]))
    store["u"].model = "an-older-model"
    result = store.run(sm, clicks("u", ["i3"], offset0=5))
    assert result.counts["model_resets"] == 1
    np.testing.assert_allclose(result.embeddings[0], reference_embeddings(sm, [[3]])[0], atol=1e-5)


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
    assert UserState.from_rows(st.gru, st.window, st.meta_bytes()) == st
    row = st.to_row()
    assert UserState.from_row(row) == st
    assert rows.unpack(row) == (st.meta_bytes(), st.gru, st.window)
    # a row of the first format (three stamped tables) says what to do, not a traceback
    with pytest.raises(StreamError, match="--app-id"):
        UserState.from_row(struct.pack(">iq", 0, 41) + st.meta_bytes())
    with pytest.raises(StreamError, match="cut short"):
        UserState.from_row(row[:rows.HEADER.size + 3])


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
