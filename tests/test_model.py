"""The model's two invariants: causality, and step-wise inference equals the batch path."""

import pytest
import torch

from hiertcn.data.batches import Batch
from hiertcn.model import HierTCN, ModelConfig


def small_model(high_level=True, seed=0) -> HierTCN:
    torch.manual_seed(seed)
    config = ModelConfig(n_items=50, item_dim=16, channels=12, kernel_size=3, levels=3,
                         gru_hidden=8, gru_layers=2, dropout=0.0, high_level=high_level)
    model = HierTCN(config).eval()
    with torch.no_grad():  # the start token is zero at init; make it matter
        model.start.normal_()
    return model


def one_user_batch(sessions: list[list[int]]) -> Batch:
    T = max(map(len, sessions))
    items = torch.full((1, len(sessions), T), -1, dtype=torch.long)
    for s, sess in enumerate(sessions):
        items[0, s, :len(sess)] = torch.tensor(sess)
    reset = torch.zeros(1, len(sessions), dtype=torch.bool)
    reset[0, 0] = True
    return Batch(items=items, reset=reset, valid=torch.ones(1, len(sessions), dtype=torch.bool))


def encode_padded(model: HierTCN, batch: Batch) -> torch.Tensor:
    """The batch path's embeddings laid out as (B, S, T, D)."""
    flat, _ = model.encode(batch, model.zero_state(batch.items.shape[0]))
    out = flat.new_zeros(*batch.items.shape, flat.shape[-1])
    out[batch.mask] = flat
    return out


def test_causal_conv_ignores_the_future():
    model = small_model()
    batch = one_user_batch([[1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        before = encode_padded(model, batch)
        batch.items[0, 0, 5] = 42  # change step 5: outputs at positions <= 5 must not move
        after = encode_padded(model, batch)
    assert torch.equal(before[0, 0, :6], after[0, 0, :6])
    assert not torch.allclose(before[0, 0, 6:], after[0, 0, 6:])


@pytest.mark.parametrize("high_level", [True, False])
def test_step_equals_batch_on_random_sessions(high_level):
    gen = torch.Generator().manual_seed(1)
    model = small_model(high_level)
    # lengths beyond the receptive field (1 + 2*(1+2+4) = 15) exercise the queues
    sessions = [torch.randint(0, 50, (int(n),), generator=gen).tolist()
                for n in torch.randint(1, 30, (5,), generator=gen)]
    with torch.no_grad():
        batch_out = encode_padded(model, one_user_batch(sessions))
        state = model.initial_state(1)
        for s, sess in enumerate(sessions):
            for t, item in enumerate(sess):
                # the embedding before feeding item t predicts item t
                torch.testing.assert_close(state.embedding[0], batch_out[0, s, t],
                                           atol=1e-5, rtol=0)
                state = model.step(state, torch.tensor([item]))
            state = model.end_session(state)


def test_high_level_state_carries_across_sessions():
    model = small_model()
    with torch.no_grad():
        a = encode_padded(model, one_user_batch([[1, 2, 3], [4, 5]]))
        b = encode_padded(model, one_user_batch([[9, 8, 7], [4, 5]]))
    # same second session, different first: the long-term state must make a difference
    assert not torch.allclose(a[0, 1, :2], b[0, 1, :2])


@pytest.mark.parametrize("high_level", [True, False])
def test_step_many_equals_step_after_step(high_level):
    """One call over each user's next K items (users padded to the longest, some with
    none, or all alike) gives the embeddings and state of K `step` calls, across calls
    and a session end, lengths beyond the receptive field (15)."""
    gen = torch.Generator().manual_seed(2)
    model = small_model(high_level)
    B = 6
    with torch.no_grad():
        many, ref = model.initial_state(B), [model.initial_state(1) for _ in range(B)]
        for call in range(3):
            lengths = torch.randint(0, 25, (B,), generator=gen)
            lengths[call] = 0
            if call == 2:  # every user the same number of items: the sliced path
                lengths[:] = 17
            items = torch.randint(0, 50, (B, int(lengths.max())), generator=gen)
            many, emb = model.step_many(many, items, lengths)
            assert emb.shape == (B, int(lengths.max()), 16)
            for b in range(B):
                for t in range(int(lengths[b])):
                    ref[b] = model.step(ref[b], items[b, t:t + 1])
                    torch.testing.assert_close(emb[b, t], ref[b].embedding[0], atol=1e-5, rtol=0)
                assert not emb[b, int(lengths[b]):].any()  # zeros at the padding
            if call == 1:
                many = model.end_session(many)
                ref = [model.end_session(r) for r in ref]
            for b in range(B):
                got, want = many, ref[b]
                torch.testing.assert_close(got.h[b], want.h[0], atol=1e-5, rtol=0)
                for p, q in zip(got.pasts, want.pasts):
                    torch.testing.assert_close(p[b], q[0], atol=1e-5, rtol=0)
                torch.testing.assert_close(got.session_sum[b], want.session_sum[0], atol=1e-5,
                                           rtol=0)
                assert got.session_len[b] == want.session_len[0]
                torch.testing.assert_close(got.embedding[b], want.embedding[0], atol=1e-5, rtol=0)
