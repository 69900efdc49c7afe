"""The export the stream loads: state bytes round-trip, `BatchState` (what the stream
applies clicks with) equals the model's own step API, top-K comes from faiss over
exactly the scored vectors, and the export carries its session policy."""

import json

import numpy as np
import pytest
import torch

from hiertcn.errors import CheckpointError
from hiertcn.inference import BatchState, StreamModel, export_session_config
from tests.modelkit import tiny_stream_model


def exported(tmp_path) -> StreamModel:
    return tiny_stream_model(tmp_path, n_items=30)


def step_one(sm, state, item):
    with torch.no_grad():
        return sm.model.step(state, torch.tensor([item]))


def test_batch_state_equals_the_step_api_per_user_and_round_trips_as_bytes(tmp_path):
    sm = exported(tmp_path)
    batch = BatchState(sm, sm.fresh(3))
    with torch.no_grad():
        ref = [sm.model.initial_state(1) for _ in range(3)]  # one user each
    for items in ([3, 4], [5, 6], [7, 8]):  # users 0 and 2 click; user 1 does not
        batch.step([0, 2], items)
        ref[0], ref[2] = step_one(sm, ref[0], items[0]), step_one(sm, ref[2], items[1])
    batch.end_sessions([2])
    with torch.no_grad():
        ref[2] = sm.model.end_session(ref[2])
    batch.step([2], [9])
    ref[2] = step_one(sm, ref[2], 9)
    for row in range(3):
        np.testing.assert_allclose(batch.embedding(row), ref[row].embedding[0].numpy(),
                                   atol=1e-6)
    blobs = batch.blobs()
    assert all(len(g) == 4 * 8 and isinstance(w, bytes) for g, w in blobs)  # L*H float32
    np.testing.assert_allclose(sm.embeddings(blobs), np.stack(
        [r.embedding[0].numpy() for r in ref]), atol=1e-6)
    again = BatchState(sm, blobs)  # bytes -> state -> bytes is lossless
    assert again.blobs() == blobs


def test_reset_returns_a_user_to_the_fresh_state(tmp_path):
    sm = exported(tmp_path)
    fresh = sm.fresh(1)[0]
    batch = BatchState(sm, sm.fresh(2))
    batch.step([0, 1], [3, 4])
    batch.reset([1])
    assert batch.blobs()[1] == fresh and batch.blobs()[0] != fresh


def test_top_k_is_the_exact_inner_product_ranking_minus_exclusions(tmp_path):
    sm = exported(tmp_path)
    emb = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    scores = emb @ sm.model.items.weight.detach().numpy().T  # (3, 30)
    best = np.argsort(-scores, axis=1)
    exclude = [set(), {int(best[1, 0])}, set(best[2, :3].tolist())]
    got = sm.top_k(emb, 5, exclude)
    for row in range(3):
        want = [f"i{i}" for i in best[row] if i not in exclude[row]][:5]
        assert [item for item, _ in got[row]] == want
        np.testing.assert_allclose([s for _, s in got[row]],
                                   [scores[row, int(i[1:])] for i in want], rtol=1e-5)


def test_export_carries_the_session_policy(tmp_path):
    sm = exported(tmp_path)  # saved without a session config: SessionConfig's defaults
    policy = export_session_config(tmp_path / "export")
    assert policy == {"gap_s": 1800, "max_session_len": 100}
    assert sm.session_policy == policy


def test_an_old_export_without_session_policy_is_a_one_line_error(tmp_path):
    exported(tmp_path)
    meta_path = tmp_path / "export" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["session"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="hiertcn export") as err:
        StreamModel.load(tmp_path / "export")
    assert "\n" not in str(err.value)


def test_step_many_equals_step_per_item_for_rows_of_any_length(tmp_path):
    sm = exported(tmp_path)
    many, single = BatchState(sm, sm.fresh(4)), BatchState(sm, sm.fresh(4))
    single.end_sessions([3])
    many.end_sessions([3])
    items = [[3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [], [7]]
    got = many.step_many([2, 0, 3], items)
    want = []
    for row, its in zip([2, 0, 3], items):
        for item in its:
            single.step([row], [item])
            want.append(single.embedding(row))
    assert got.shape == (12, 8)
    np.testing.assert_allclose(got, np.stack(want), atol=1e-5)
    np.testing.assert_allclose(many.embeddings([0, 1, 2, 3]), single.embeddings([0, 1, 2, 3]),
                               atol=1e-5)
    for (g1, w1), (g2, w2) in zip(many.blobs(), single.blobs()):
        np.testing.assert_allclose(np.frombuffer(g1, np.float32), np.frombuffer(g2, np.float32),
                                   atol=1e-5)
        np.testing.assert_allclose(np.frombuffer(w1, np.float32), np.frombuffer(w2, np.float32),
                                   atol=1e-5)
