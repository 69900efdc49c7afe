"""The export the stream loads: state bytes round-trip, `BatchState` (what the stream
applies clicks with) equals the model's own step API, top-K comes from faiss over
exactly the scored vectors, and the export carries its session policy."""

import json

import faiss
import numpy as np
import pytest
import torch

from hiertcn.errors import CheckpointError
from hiertcn import inference
from hiertcn.inference import (BatchState, Ranked, StreamModel, export_session_config,
                               ranked_rows)
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


def reference_top_k(index, item_ids, embeddings, k, exclude):
    """The straightforward per-item loop `top_k` ran before it was vectorised."""
    extra = max((len(e) for e in exclude), default=0) if exclude else 0
    scores, idx = index.search(embeddings, min(k + extra, index.ntotal))
    out = []
    for row in range(len(idx)):
        skip = exclude[row] if exclude else ()
        hits = [(item_ids[i], float(s)) for i, s in zip(idx[row], scores[row])
                if i >= 0 and i not in skip]
        out.append(hits[:k])
    return out


def random_excludes(rng, idx, n_items, k):
    """Per row: empty, a few, more than k, the row's own top hits, ids the index lacks."""
    out = []
    for row in range(len(idx)):
        kind = row % 5
        if kind == 0:
            out.append(frozenset())
        elif kind == 1:
            out.append(frozenset(rng.choice(n_items, min(3, n_items), replace=False).tolist()))
        elif kind == 2:  # more than k, many of them the row's best
            top = idx[row][idx[row] >= 0][:k + 5].tolist()
            out.append(frozenset(top) | set(rng.choice(n_items, min(k, n_items)).tolist()))
        elif kind == 3:
            out.append(set(idx[row][:2].tolist()) | {n_items + 7, -3})  # not in the index
        else:
            out.append(set(range(n_items)))  # everything: an empty answer
    return out


@pytest.mark.parametrize("n_items,k", [(500, 20), (40, 20), (25, 30), (1, 5)])
@pytest.mark.parametrize("dense", [True, False])
def test_ranked_rows_equal_the_per_item_loop(n_items, k, dense, monkeypatch):
    """Same items, order, float scores and ties (duplicate vectors score equal) as the
    loop over faiss's answer, with the dense mask and the sorted-key lookup alike;
    (40, 20) and (25, 30): an index smaller than k + extra, so rows come back short."""
    if not dense:
        monkeypatch.setattr(inference, "_DENSE_MASK_CELLS", 0)
    rng = np.random.default_rng(n_items + k)
    vectors = rng.standard_normal((n_items, 16)).astype(np.float32)
    vectors[n_items // 2:n_items // 2 + 4] = vectors[0]  # ties
    vectors[1::7] = np.round(vectors[1::7])  # more ties, on integer grids
    index = faiss.IndexFlatIP(16)
    index.add(vectors)
    item_ids = [f"item-{i}" for i in range(n_items)]
    ids = np.empty(n_items, dtype=object)
    ids[:] = item_ids
    emb = rng.standard_normal((23, 16)).astype(np.float32)
    emb[3] = np.round(emb[3])
    _, ranking = index.search(emb, n_items)
    for exclude in (random_excludes(rng, ranking, n_items, k), None, [set()] * 23):
        want = reference_top_k(index, item_ids, emb, k, exclude)
        extra = max((len(e) for e in exclude), default=0) if exclude else 0
        scores, idx = index.search(emb, min(k + extra, n_items))
        got = ranked_rows(idx, scores, k, exclude, ids, n_items)
        assert [list(r) for r in got] == want
        assert all(type(s) is float for r in got for s in r.scores)
        assert got == want  # a Ranked equals its list of pairs


def test_ranked_rows_skips_faiss_no_result_marks():
    idx = np.array([[2, -1, 0, -1], [-1, -1, -1, -1]])
    scores = np.array([[3, 2, 1, 0], [0, 0, 0, 0]], np.float32)
    ids = np.array(["a", "b", "c"], dtype=object)
    got = ranked_rows(idx, scores, 2, [set(), {0}], ids, 3)
    assert [list(r) for r in got] == [[("c", 3.0), ("a", 1.0)], []]
    assert ranked_rows(idx[:0], scores[:0], 2, [], ids, 3) == []


def test_top_k_equals_the_per_item_loop_on_the_export(tmp_path):
    sm = exported(tmp_path)  # 30 items: k + extra is often more than the index holds
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(40, 8)).astype(np.float32)
    _, ranking = sm.index.search(emb, 30)
    for k in (1, 5, 20):
        exclude = random_excludes(rng, ranking, 30, k)
        got = sm.top_k(emb, k, exclude)
        assert all(isinstance(r, Ranked) for r in got)
        assert [list(r) for r in got] == reference_top_k(sm.index, sm.item_ids, emb, k, exclude)


def test_ranked_reads_as_its_list_of_pairs():
    r = Ranked(["a", "b"], [0.5, 0.25])
    assert list(r) == [("a", 0.5), ("b", 0.25)] and len(r) == 2
    assert r[0] == ("a", 0.5) and r[:1] == [("a", 0.5)] and r == Ranked(["a", "b"], [0.5, 0.25])
    assert r != [("a", 0.5)] and "('a', 0.5)" in repr(r)


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
