"""The export the stream loads: state bytes round-trip, step-wise equals the model,
top-K comes from faiss over exactly the scored vectors."""

import numpy as np
import torch

from hiertcn.inference import StreamModel
from tests.modelkit import tiny_stream_model


def exported(tmp_path) -> StreamModel:
    return tiny_stream_model(tmp_path, n_items=30)


def test_state_bytes_round_trip_and_match_the_model(tmp_path):
    sm = exported(tmp_path)
    blobs = sm.fresh(2)
    reference = sm.model.initial_state(2)
    for items in ([3, 4], [5, 6], [7, 8]):
        blobs, emb = sm.step(blobs, items)
        with torch.no_grad():
            reference = sm.model.step(reference, torch.tensor(items))
        np.testing.assert_allclose(emb, reference.embedding.numpy(), atol=1e-6)
    blobs = sm.end_sessions(blobs)
    with torch.no_grad():
        reference = sm.model.end_session(reference)
    np.testing.assert_allclose(sm.embeddings(blobs), reference.embedding.numpy(), atol=1e-6)
    assert all(len(g) == 4 * 8 and isinstance(w, bytes) for g, w in blobs)


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
