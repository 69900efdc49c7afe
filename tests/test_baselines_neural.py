"""GRU4Rec, HRNN, the flat TCN and SASRec on the HierTCN contract: shapes, causality, a
short fit that learns, the slot walker, SASRec's windows, the shared parameter budget,
and SASRec trained on the shipped MovieLens through checkpoint and `hiertcn evaluate`."""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hiertcn.baselines.flat_tcn import FlatTCN, FlatTCNConfig, history_batches
from hiertcn.baselines.gru4rec import GRU4Rec, GRU4RecConfig, parallel_walk, step_batches
from hiertcn.baselines.hrnn import HRNN, HRNNConfig
from hiertcn.baselines.sasrec import SASRec, SASRecConfig, window_batches, windows
from hiertcn.checkpoint import load_checkpoint, save_checkpoint
from hiertcn.cli import main
from hiertcn.data.cache import load_splits
from hiertcn.data.sessions import SessionConfig, Sessions, sessionize
from hiertcn.errors import ConfigError
from hiertcn.model import HierTCN, ModelConfig
from hiertcn.train import TrainConfig, count_parameters, fit

torch.set_num_threads(1)


def build(sessions_per_user: list[list[list[str]]]) -> Sessions:
    """sessions_per_user[u][s]: the items of user u's s-th session; sessions are an
    hour apart (gap 30 min), clicks a second apart."""
    rows = [(f"u{u}", item, 3600 * s + t)
            for u, user in enumerate(sessions_per_user)
            for s, sess in enumerate(user) for t, item in enumerate(sess)]
    frame = pd.DataFrame(rows, columns=["user", "item", "ts"])
    return sessionize(frame, SessionConfig(min_item_count=1, min_sessions_per_user=1))


TINY = build([[list("abcd"), list("efa")], [list("bcde")], [list("fab"), list("cd"), list("ef")]])
# a repeated pattern any sequence model learns in a few epochs: a b c d e, then f g h
PATTERN = build([[list("abcde"), list("fgh")] * 3 for _ in range(6)])

SMALL = {
    "gru4rec": lambda n: GRU4Rec(GRU4RecConfig(n_items=n, item_dim=16, hidden=24, dropout=0.0)),
    "hrnn": lambda n: HRNN(HRNNConfig(n_items=n, item_dim=16, session_hidden=24,
                                      user_hidden=20, dropout=0.0)),
    "flat_tcn": lambda n: FlatTCN(FlatTCNConfig(n_items=n, item_dim=16, channels=12,
                                                kernel_size=3, levels=3, dropout=0.0)),
    # max_len 4: user 0's 7 events take three windows, so the window logic is exercised
    "sasrec": lambda n: SASRec(SASRecConfig(n_items=n, item_dim=16, max_len=4, n_blocks=2,
                                            n_heads=2, ffn_dim=24, dropout=0.0,
                                            train_stride=2)),
}


def small(name: str, n_items: int, seed: int = 0):
    torch.manual_seed(seed)
    model = SMALL[name](n_items).eval()
    with torch.no_grad():  # the start token is zero at init; make it matter
        model.start.normal_()
    return model


def with_item(sessions: Sessions, event: int, item: int) -> Sessions:
    items = np.array(sessions.items)
    items[event] = item
    return dataclasses.replace(sessions, items=items)


@pytest.mark.parametrize("name", SMALL)
def test_predict_user_shape(name):
    model = small(name, TINY.n_items)
    per_user = np.diff(TINY.session_offsets[TINY.user_offsets])  # (n_users,) events
    for u, n_events in enumerate(per_user):
        scores = model.predict_user(TINY, u)
        assert scores.shape == (n_events, TINY.n_items) and np.isfinite(scores).all()


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("event", [1, 4])  # inside the first session, and the second's 1st
def test_causal(name, event):
    """User 0 has events a b c d | e f a; changing event k leaves rows <= k alone (row
    k predicts event k from the events before it)."""
    model = small(name, TINY.n_items)
    before = model.predict_user(TINY, 0)
    after = model.predict_user(with_item(TINY, event, (TINY.items[event] + 1) % TINY.n_items), 0)
    np.testing.assert_array_equal(before[:event + 1], after[:event + 1])
    assert not np.allclose(before[event + 1], after[event + 1])


@pytest.mark.parametrize("name, crosses", [("gru4rec", False), ("hrnn", True),
                                           ("flat_tcn", True), ("sasrec", True)])
def test_memory_across_sessions(name, crosses):
    """Changing user 0's first session moves the second session's scores only for
    models with cross-session memory."""
    model = small(name, TINY.n_items)
    before = model.predict_user(TINY, 0)
    after = model.predict_user(with_item(TINY, 2, 0), 0)
    assert np.allclose(before[4:], after[4:]) != crosses


@pytest.mark.parametrize("name", SMALL)
def test_short_fit_lowers_the_loss(name):
    model = small(name, PATTERN.n_items)
    # one slot / one user per batch: enough optimizer steps in three tiny epochs
    config = TrainConfig(epochs=3, lr=1e-2, batch_size=1, seed=0)
    result = fit(model, PATTERN, PATTERN, config, name=name, progress=False)
    assert result.curve[-1]["loss"] < 0.7 * result.curve[0]["loss"]
    assert result.events_per_s > 0


def test_parallel_walk_visits_every_event_once_in_order():
    offsets = np.array([0, 3, 3, 4, 9, 11])  # stream 1 is empty
    seen, firsts = [], []
    for event, fresh in parallel_walk(offsets, 2, np.random.default_rng(0)):
        assert len(event) == 2
        seen += event[event >= 0].tolist()
        firsts += event[fresh].tolist()
    assert sorted(seen) == list(range(11))
    assert sorted(firsts) == [0, 3, 4, 9]  # a fresh stream takes a slot at its 1st event
    per_stream = [[e for e in seen if lo <= e < hi] for lo, hi in zip(offsets, offsets[1:])]
    assert all(s == sorted(s) for s in per_stream)  # each stream walked forwards


@pytest.mark.parametrize("users_as_streams", [False, True])
def test_step_batches_mark_session_starts_with_the_start_token(users_as_streams):
    offsets = (TINY.session_offsets[TINY.user_offsets] if users_as_streams
               else TINY.session_offsets)
    n_targets = 0
    for b in step_batches(TINY, offsets, 2, np.random.default_rng(1)):
        assert torch.equal(b.inputs < 0, b.new_session | ~b.live)  # start token exactly there
        assert not (b.new_stream & ~b.new_session).any()  # a new stream opens a session
        n_targets += int(b.live.sum())
    assert n_targets == TINY.n_events  # every event is a target


def test_history_batches_keep_whole_histories_unless_max_len():
    lengths = sorted(int(n) for n in np.diff(TINY.session_offsets[TINY.user_offsets]))
    rows = [int(r) for b in history_batches(TINY, 2, np.random.default_rng(0))
            for r in b.mask.sum(1)]
    assert sorted(rows) == lengths
    windows = [int(r) for b in history_batches(TINY, 2, np.random.default_rng(0), max_len=3)
               for r in b.mask.sum(1)]
    assert max(windows) == 3 and sum(windows) == TINY.n_events


@pytest.mark.parametrize("model", [
    lambda: GRU4Rec(GRU4RecConfig(n_items=1000)),
    lambda: HRNN(HRNNConfig(n_items=1000)),
    lambda: FlatTCN(FlatTCNConfig(n_items=1000)),
    lambda: SASRec(SASRecConfig(n_items=1000)),
], ids=["gru4rec", "hrnn", "flat_tcn", "sasrec"])
def test_default_sizes_match_hiertcn_budget(model):
    budget = count_parameters(HierTCN(ModelConfig(n_items=1000)))
    assert abs(count_parameters(model()) - budget) <= 0.1 * budget


@pytest.mark.parametrize("name", ["gru4rec", "hrnn"])
def test_training_steps_match_predict_user(name):
    """One slot walking user 2 (3 sessions) step by step, carrying the state as the
    trainer does, gives each event the same loss as predict_user's scores. GRU4Rec
    walks the sessions in shuffled order, so compare the sorted losses."""
    model = small(name, TINY.n_items)
    one = TINY.select_users(np.array([2]))
    scores = torch.from_numpy(model.predict_user(one, 0))  # (E_u, N)
    expected = torch.nn.functional.cross_entropy(scores, torch.from_numpy(
        one.items.astype(np.int64)), reduction="none")
    carry, losses = None, []
    with torch.no_grad():
        for batch in model.train_batches(one, 1, 1, np.random.default_rng(0)):
            loss, _, carry = model.loss(batch, carry, TrainConfig().loss)
            losses.append(loss)
    losses = torch.stack(losses)
    if name == "gru4rec":
        losses, expected = losses.sort().values, expected.sort().values
    torch.testing.assert_close(losses, expected, atol=1e-5, rtol=0)


# ---- SASRec ----------------------------------------------------------------------------

def test_sasrec_attention_is_causal_at_every_position():
    """encode: changing input t leaves outputs < t bit-identical, and moves output t."""
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=30, item_dim=16, max_len=12, n_blocks=3, n_heads=4,
                                ffn_dim=32, dropout=0.3)).eval()
    inputs = torch.randint(0, 30, (2, 12))
    inputs[:, 0] = -1  # the start token
    base = model.encode(inputs)
    for t in range(1, 12):
        changed = inputs.clone()
        changed[:, t] = (changed[:, t] + 7) % 30
        out = model.encode(changed)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=0)
        assert not torch.allclose(out[:, t], base[:, t])


def test_sasrec_training_loss_is_predict_users_loss():
    """User 2's 7 events in windows of 4, all in one training batch: with the scoring
    stride (train_stride 2) the batch loss is the mean cross-entropy of predict_user's
    scores over the user's events."""
    model = small("sasrec", TINY.n_items)
    one = TINY.select_users(np.array([2]))
    scores = torch.from_numpy(model.predict_user(one, 0))  # (E_u, N)
    expected = torch.nn.functional.cross_entropy(scores, torch.from_numpy(
        one.items.astype(np.int64)))
    (batch,) = model.train_batches(one, 8, 1, np.random.default_rng(0))
    assert batch.inputs.shape[0] == len(windows(one.n_events, 4, 2)) == 3
    with torch.no_grad():
        loss, n_events, carry = model.loss(batch, None, TrainConfig().loss)
    assert n_events == one.n_events and carry is None
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("n_events, max_len, stride", [
    (1, 4, 2), (4, 4, 2), (7, 4, 2), (7, 5, 2), (500, 200, 100), (7, 4, 4), (500, 200, 200)])
def test_windows_score_every_event_once_with_enough_context(n_events, max_len, stride):
    spans = windows(n_events, max_len, stride)
    scored = [i for _, hi, first in spans for i in range(first, hi)]
    assert scored == list(range(n_events))
    assert all(hi - lo <= max_len for lo, hi, _ in spans)
    # after the first window every scored event sees at least max_len - stride events
    assert all(first - lo == max_len - stride for lo, _, first in spans[1:])


def test_window_batches_hold_each_event_once_as_a_target_after_its_predecessor():
    seen = []
    for b in window_batches(TINY, 2, 4, 3, np.random.default_rng(0)):
        assert b.inputs.shape == b.targets.shape and b.inputs.shape[1] <= 4
        prev = torch.cat([b.inputs[:, :1], b.targets[:, :-1]], dim=1)  # what precedes t
        inner = b.scored[:, 1:] & b.scored[:, :-1]
        # the input at t is the item scored at t - 1 wherever both are scored
        assert torch.equal(b.inputs[:, 1:][inner], prev[:, 1:][inner])
        seen += b.targets[b.scored].tolist()
    assert sorted(seen) == sorted(TINY.items.tolist())


def test_sasrec_default_trains_on_shipped_movielens_and_evaluates_from_its_checkpoint(
        tmp_path, capsys):
    """A few steps of the default-sized SASRec on 24 users of the shipped MovieLens; the
    checkpoint comes back as the same model, and `hiertcn evaluate` scores its run."""
    data = Path(__file__).resolve().parents[1] / "data" / "movielens.csv.gz"
    parts = load_splits(data, cache_dir=tmp_path / "cache")
    train = parts["train"].select_users(np.arange(24))
    val = parts["val"].select_users(np.arange(3))
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=train.n_items))
    result = fit(model, train, val, TrainConfig(epochs=2, batch_size=8, seed=0),
                 name="sasrec", progress=False)
    assert result.curve[-1]["loss"] < result.curve[0]["loss"] < np.log(train.n_items) + 1
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoint.pt", model, train.item_ids, step=result.best_epoch,
                    extra={"model": "sasrec"})
    loaded, ckpt = load_checkpoint(run)
    assert type(loaded) is SASRec and ckpt["kind"] == "sasrec"
    np.testing.assert_array_equal(loaded.predict_user(val, 0), model.eval().predict_user(val, 0))
    code = main(["evaluate", "--data", str(data), "--cache-dir", str(tmp_path / "cache"),
                 "--checkpoint", str(run)])
    out, err = capsys.readouterr()
    assert code == 0, err
    events = int(out.rsplit("(", 1)[1].split()[0])
    assert out.startswith("test recall@5 ") and events == parts["test"].n_events


@pytest.mark.parametrize("bad, message", [
    (dict(train_stride=0), "train_stride"), (dict(max_len=10, train_stride=11), "train_stride"),
    (dict(item_dim=10, n_heads=4), "n_heads"), (dict(max_len=1), "max_len"),
    (dict(dropout=1.0), "dropout")])
def test_sasrec_config_errors_name_the_setting(bad, message):
    with pytest.raises(ConfigError, match=message):
        SASRecConfig(n_items=5, **bad)
