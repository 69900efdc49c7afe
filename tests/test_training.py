"""HierTCN's training: the queue batcher's balance, truncated backprop across sessions
(`bptt_sessions`), the learning-rate schedule, the authors' preset, and the untied
output layer from training to the stream's export."""

import gc
import itertools
import warnings

import numpy as np
import pytest
import torch

from hiertcn.checkpoint import export, load_checkpoint, save_checkpoint
from hiertcn.cli import build_parser, model_sizes, preset_settings, train_config
from hiertcn.data.batches import Endless, epoch_batches, queue_batches
from hiertcn.data.sessions import Sessions
from hiertcn.errors import ConfigError
from hiertcn.inference import StreamModel
from hiertcn.losses import LossConfig
from hiertcn.model import HierTCN, ModelConfig
from hiertcn.models import build_model
from hiertcn.train import TrainConfig, _SavedTensorMeter, _detach, fit, train_step

torch.set_num_threads(1)
N_ITEMS = 100


def make_sessions(sessions_per_user: list[int], seed: int = 0) -> Sessions:
    """Users with the given numbers of sessions; session s is item s (so tests can
    tell sessions apart) then 0-5 random items."""
    rng = np.random.default_rng(seed)
    n = sum(sessions_per_user)
    lengths = rng.integers(1, 7, size=n)
    items = np.concatenate([[s, *rng.integers(0, N_ITEMS, size=k - 1)]
                            for s, k in enumerate(lengths)]).astype(np.int32)
    return Sessions(items=items, ts=np.arange(len(items)),
                    session_offsets=np.concatenate([[0], np.cumsum(lengths)]),
                    user_offsets=np.concatenate([[0], np.cumsum(sessions_per_user)]),
                    user_ids=np.array([f"u{u}" for u in range(len(sessions_per_user))]),
                    item_ids=np.array([f"i{k}" for k in range(N_ITEMS)]),
                    scored=np.ones(n, bool))


# one heavy user, as MovieLens has (488 of its 3,934 training sessions)
SKEWED = make_sessions([40] + [2, 3, 1, 4, 2, 5, 3, 2, 1, 2])
USER_OF = np.repeat(np.arange(SKEWED.n_users), np.diff(SKEWED.user_offsets))


def small_model(untied=False, high_level=True, seed=0) -> HierTCN:
    torch.manual_seed(seed)
    model = HierTCN(ModelConfig(n_items=N_ITEMS, item_dim=8, channels=6, kernel_size=3,
                                levels=2, gru_hidden=5, gru_layers=2, dropout=0.0,
                                high_level=high_level, untied_output=untied))
    with torch.no_grad():  # zero at init; make them matter
        model.start.normal_()
        if untied:
            model.item_bias.normal_()
    return model


def slots(batch) -> list[list]:
    """Per queue, its slots: (session index, reset) or None where empty."""
    return [[(int(batch.items[b, s, 0]), bool(batch.reset[b, s])) if batch.valid[b, s]
             else None for s in range(batch.items.shape[1])]
            for b in range(batch.items.shape[0])]


def stream(B, S, P=0, n=10, seed=0, sessions=SKEWED):
    return list(itertools.islice(
        queue_batches(sessions, B, S, np.random.default_rng(seed), P), n))


# ---- the queue batcher: balanced, whole users, in passes -------------------------------

def test_every_batch_is_full_width_so_no_epoch_ends_on_one_user():
    B, S = 4, 3
    per_epoch = epoch_batches(SKEWED, B, S)
    assert per_epoch == -(-SKEWED.n_sessions // (B * S))
    batches = stream(B, S, n=3 * per_epoch)
    assert all(bool(b.valid.all()) for b in batches)
    # the heavy user's 40 sessions never have a batch to themselves
    assert all(len({USER_OF[s] for row in slots(b) for s, _ in row}) > 1 for b in batches)


def test_each_queue_walks_whole_users_in_order_and_users_come_in_passes():
    queues = [sum(rows, []) for rows in zip(*(slots(b) for b in stream(3, 2, n=60, seed=1)))]
    joins = np.zeros(SKEWED.n_users, int)
    for queue in queues:
        expected = None
        for s, reset in queue:
            if reset:  # a user starts at its first session, after the previous one ended
                assert s == SKEWED.user_offsets[USER_OF[s]]
                previous_end = None if expected is None else \
                    SKEWED.user_offsets[USER_OF[expected - 1] + 1]
                assert expected == previous_end
                joins[USER_OF[s]] += 1
            else:
                assert s == expected  # the next session of the same user
            expected = s + 1
    # 360 sessions, ~5.6 passes: every user joined, none far ahead of the others
    assert joins.min() >= 1 and joins.max() - joins.min() <= 2


def test_context_slots_are_each_queues_slots_just_before_the_batch():
    P, S = 5, 2
    batches = stream(3, S, P, n=12, seed=2)
    assert not batches[0].context.valid.any()  # nothing came before the first batch
    history = [[None] * P for _ in range(3)]
    for batch in batches:
        assert batch.context.items.shape[:2] == (3, P)
        assert slots(batch.context) == [h[-P:] for h in history]
        for h, row in zip(history, slots(batch)):
            h += row


def test_the_trainer_cuts_the_endless_stream_into_epochs():
    model = small_model()
    batches = model.train_batches(SKEWED, 3, 2, np.random.default_rng(0))
    assert isinstance(batches, Endless) and batches.per_epoch == epoch_batches(SKEWED, 3, 2)
    result = fit(model, SKEWED, SKEWED, TrainConfig(epochs=2, batch_size=3,
                                                    sessions_per_batch=2, patience=5),
                 progress=False)
    assert result.updates == 2 * batches.per_epoch
    assert [c["updates"] for c in result.curve] == [batches.per_epoch, 2 * batches.per_epoch]


# ---- truncated backprop across sessions -------------------------------------------------

@pytest.mark.parametrize("P", [1, 3, 7])
def test_context_changes_the_gradient_path_never_the_loss(P):
    """Same weights, same batch stream: every batch's loss is the one of the old path
    (P = 0, state detached at the batch boundary); the context only re-runs, with
    gradient, what the carried state already holds."""
    model = small_model()
    carry_old = carry_new = None
    with torch.no_grad():
        for old, new in zip(stream(3, 2, 0, seed=4), stream(3, 2, P, seed=4)):
            loss_old, n_old, carry_old = model.loss(old, carry_old, LossConfig())
            loss_new, n_new, carry_new = model.loss(new, carry_new, LossConfig())
            assert n_old == n_new
            torch.testing.assert_close(loss_new, loss_old, atol=1e-6, rtol=0)


def test_the_gradient_reaches_the_context_sessions():
    """One user, 8 sessions, 2 a batch: with P = 2 the third batch's loss has a
    gradient on the projected items of the two sessions before it; P = 0 has no
    context (the carried state is a constant)."""
    one = make_sessions([8], seed=5)
    model = small_model()
    captured = []
    model.project.register_forward_hook(lambda m, i, out: captured.append(out))
    for P in (0, 2):
        carry = None
        for batch in stream(1, 2, P, n=3, sessions=one):
            captured.clear()
            loss, _, carry = model.loss(batch, _detach(carry), LossConfig())
        if P == 0:
            assert len(captured) == 1  # no context: the projection runs once
            continue
        context_x = captured[1]  # (1, P, T', C): the context's projected items
        grad, = torch.autograd.grad(loss, context_x)
        assert [bool(grad[0, j].abs().sum() > 0) for j in range(P)] == [True, True]


def test_train_step_with_p0_is_the_old_training_step():
    """The refactored step (bptt 0) gives the old loop's weights after a few updates."""
    batches = stream(3, 2, 0, n=6, seed=6)
    config = TrainConfig()
    weights = []
    for new in (False, True):
        model = small_model()
        optim = torch.optim.Adam(model.parameters(), lr=1e-2)
        carry = None
        for batch in batches:
            if new:
                _, _, carry = train_step(model, batch, carry, config, optim)
                continue
            loss, _, carry = model.loss(batch, carry, config.loss)  # the old loop's body
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optim.step()
            carry = carry.detach()
        weights.append(model.state_dict())
    for name, w in weights[0].items():
        assert torch.equal(w, weights[1][name]), name


def test_the_activation_meter_keeps_no_tensor_past_its_batch():
    """Training under the saved-tensor meter holds as many live tensors after 30
    updates as after 10: a pack hook that returned the tensor itself kept about 19 a
    batch alive (the full benchmark's OOM kill)."""
    model = small_model()
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    meter, carry, counts = _SavedTensorMeter(), None, []
    for i, batch in enumerate(stream(3, 2, 2, n=30, seed=7), 1):
        with meter.batch():
            _, _, carry = train_step(model, batch, carry, TrainConfig(), optim)
        if i in (10, 30):
            gc.collect()
            with warnings.catch_warnings():  # isinstance on torch's deprecated aliases
                warnings.simplefilter("ignore")
                counts.append(sum(isinstance(o, torch.Tensor) for o in gc.get_objects()))
    assert meter.peak > 0
    assert counts[1] <= counts[0], counts


def test_bptt_needs_a_model_with_a_session_level_state():
    model = build_model("gru4rec", N_ITEMS)
    with pytest.raises(ConfigError, match="bptt_sessions"):
        fit(model, SKEWED, SKEWED, TrainConfig(epochs=1, bptt_sessions=2), progress=False)
    low = small_model(high_level=False)  # no high level: nothing to re-run, no context
    batch = next(iter(low.train_batches(SKEWED, 2, 2, np.random.default_rng(0), 4)))
    assert batch.context is None


# ---- learning-rate schedule, presets -----------------------------------------------------

def test_step_decay_multiplies_the_rate_after_the_given_epochs():
    config = TrainConfig(epochs=4, lr=0.01, lr_decay_epochs=(1, 3), lr_decay=0.5,
                         batch_size=4, sessions_per_batch=4, patience=9)
    result = fit(small_model(), SKEWED, SKEWED, config, progress=False)
    assert [c["lr"] for c in result.curve] == pytest.approx([0.01, 0.005, 0.005, 0.0025])


@pytest.mark.parametrize("bad", [{"lr_decay_epochs": (3, 2)}, {"lr_decay_epochs": (0,)},
                                 {"lr_decay": 0.0}, {"lr_decay": 1.5}, {"bptt_sessions": -1}])
def test_bad_schedule_or_truncation_is_a_config_error(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        TrainConfig(**bad)


def parse_train(*argv):
    return build_parser().parse_args(["train", *argv])


def test_authors_preset_sets_their_training_and_options_still_win():
    args = parse_train("--preset", "authors", "--lr", "0.005", "--bptt-sessions", "4")
    config = train_config(args)
    assert (config.batch_size, config.sessions_per_batch) == (32, 10)
    assert config.lr_decay_epochs == (60, 120) and config.lr_decay == pytest.approx(0.2)
    assert config.lr == 0.005 and config.bptt_sessions == 4  # given on the command line
    sizes = {**preset_settings(args)["model"], **model_sizes(args)}
    assert sizes == {"dropout": 0.0, "untied_output": True}
    args = parse_train("--preset", "authors", "--dropout", "0.3", "--no-untied-output")
    assert {**preset_settings(args)["model"], **model_sizes(args)} == {
        "dropout": 0.3, "untied_output": False}
    assert train_config(parse_train("--lr-decay-epochs", "5", "9")).lr_decay_epochs == (5, 9)


def test_preset_and_untied_output_are_hiertcn_options():
    with pytest.raises(ConfigError, match="--preset"):
        train_config(parse_train("--preset", "authors", "--model", "gru4rec"))
    with pytest.raises(ConfigError, match="--untied-output"):
        model_sizes(parse_train("--untied-output", "--model", "hrnn"))


# ---- the untied output layer -------------------------------------------------------------

def test_untied_output_starts_as_the_tied_model_and_scores_with_the_bias():
    tied, untied = small_model(), small_model(untied=True)
    u = torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(untied.scores(u) - untied.item_bias,  tied.scores(u))
        torch.testing.assert_close(untied.scores(u), u @ untied.item_out.weight.T
                                   + untied.item_bias)


def test_untied_loss_is_the_cross_entropy_of_predict_users_scores():
    model = small_model(untied=True).eval()
    one = make_sessions([4], seed=7)
    scores = torch.from_numpy(model.predict_user(one, 0))  # (E, N)
    want = torch.nn.functional.cross_entropy(scores, torch.from_numpy(one.items.astype(int)))
    batch = stream(1, one.n_sessions, sessions=one, n=1)[0]
    with torch.no_grad():
        loss, n, _ = model.loss(batch, None, LossConfig())
    assert n == one.n_events
    torch.testing.assert_close(loss, want, atol=1e-5, rtol=0)


def test_untied_export_round_trip_ranks_by_the_models_own_scores(tmp_path):
    """Train a little (output vectors and bias move away from the input table), save,
    export: the stream's faiss top-K is the model's own ranking, scores u . v + b."""
    model = small_model(untied=True)
    fit(model, SKEWED, SKEWED, TrainConfig(epochs=1, lr=0.05, batch_size=2,
                                           sessions_per_batch=2), progress=False)
    assert not torch.allclose(model.item_out.weight, model.items.weight)
    ids = [f"i{k}" for k in range(N_ITEMS)]
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", model, ids, step=1, extra={})
    loaded, _ = load_checkpoint(tmp_path / "run")
    assert loaded.config.untied_output
    np.testing.assert_array_equal(loaded.predict_user(SKEWED, 1),
                                  model.eval().predict_user(SKEWED, 1))
    sm = StreamModel.load(export(tmp_path / "run", tmp_path / "export"))
    assert sm.index.d == 9 and np.load(tmp_path / "export" / "item_vectors.npy").shape == (
        N_ITEMS, 9)
    emb = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    with torch.no_grad():
        want = model.scores(torch.from_numpy(emb)).numpy()  # (4, N)
    for row, ranked in enumerate(sm.top_k(emb, 10)):
        best = np.argsort(-want[row], kind="stable")[:10]
        assert [item for item, _ in ranked] == [ids[i] for i in best]
        np.testing.assert_allclose([s for _, s in ranked], want[row, best], rtol=1e-4,
                                   atol=1e-5)
