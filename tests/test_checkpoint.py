"""Checkpoints: every model kind comes back as itself from its recorded kind and config;
run folders are accepted; bad files are one-line errors naming the file; the export
is HierTCN only and carries the session policy."""

import json

import numpy as np
import pytest
import torch

from hiertcn.checkpoint import export, load_checkpoint, save_checkpoint
from hiertcn.data.sessions import SessionConfig, Sessions
from hiertcn.errors import CheckpointError, ConfigError
from hiertcn.inference import BatchState, StreamModel
from hiertcn.model import HierTCN, ModelConfig
from hiertcn.models import NEURAL_MODELS, build_model, model_kind

N_ITEMS = 12
ITEM_IDS = [f"i{k}" for k in range(N_ITEMS)]
SMALL = dict(item_dim=8, channels=6, kernel_size=3, levels=2, gru_hidden=4, gru_layers=1)


def one_user() -> Sessions:
    """One user, sessions [1 2 3] and [4 5]."""
    return Sessions(items=np.array([1, 2, 3, 4, 5], np.int32), ts=np.arange(5),
                    session_offsets=np.array([0, 3, 5]), user_offsets=np.array([0, 2]),
                    user_ids=np.array(["u"]), item_ids=np.array(ITEM_IDS),
                    scored=np.ones(2, bool))


def model(kind: str):
    torch.manual_seed(0)
    sizes = SMALL if kind.startswith("hiertcn") else {}
    return build_model(kind, N_ITEMS, **sizes).eval()


def one_line_error(call) -> str:
    with pytest.raises(CheckpointError) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("kind", NEURAL_MODELS)
def test_every_kind_comes_back_as_itself_from_its_run_folder(tmp_path, kind):
    m = model(kind)
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", m, ITEM_IDS, step=3, extra={})
    loaded, ckpt = load_checkpoint(tmp_path / "run")  # the folder `train --out` names
    assert type(loaded) is type(m) and model_kind(loaded) == kind and ckpt["kind"] == kind
    np.testing.assert_array_equal(loaded.predict_user(one_user(), 0),
                                  m.predict_user(one_user(), 0))


def test_old_checkpoint_without_kind_loads_by_its_train_name_or_hiertcn_config(tmp_path):
    for kind in ("gru4rec", "hiertcn_low"):
        path = tmp_path / f"{kind}.pt"
        save_checkpoint(path, model(kind), ITEM_IDS, step=1, extra={"model": kind})
        ckpt = torch.load(path, weights_only=True)
        del ckpt["kind"]
        if kind == "hiertcn_low":
            del ckpt["model"]  # written by hand: only its config says what it is
        torch.save(ckpt, path)
        loaded, _ = load_checkpoint(path)
        assert model_kind(loaded) == kind


def test_unknown_kind_and_foreign_configs_are_one_line_errors(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model("gru4rec"), ITEM_IDS, step=1, extra={})
    ckpt = torch.load(path, weights_only=True)
    torch.save({**ckpt, "kind": "transformer"}, path)
    assert "transformer" in one_line_error(lambda: load_checkpoint(path))
    del ckpt["kind"]  # no kind, and not a HierTCN config (it has `hidden`)
    torch.save(ckpt, path)
    assert "no model kind" in one_line_error(lambda: load_checkpoint(path))
    torch.save({**ckpt, "kind": "hiertcn"}, path)  # recorded kind and config disagree
    assert str(path) in one_line_error(lambda: load_checkpoint(path))


def test_missing_empty_and_corrupt_are_one_line_errors_naming_the_file(tmp_path):
    assert "hiertcn train" in one_line_error(lambda: load_checkpoint(tmp_path / "none.pt"))
    (tmp_path / "empty").mkdir()
    message = one_line_error(lambda: load_checkpoint(tmp_path / "empty"))
    assert str(tmp_path / "empty") in message and "--out" in message
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert str(tmp_path / "bad.pt") in one_line_error(lambda: load_checkpoint(tmp_path / "bad.pt"))


def test_export_refuses_models_the_stream_cannot_run(tmp_path):
    save_checkpoint(tmp_path / "checkpoint.pt", model("gru4rec"), ITEM_IDS, step=1, extra={})
    message = one_line_error(lambda: export(tmp_path, tmp_path / "export"))
    assert "gru4rec" in message and "HierTCN only" in message
    assert not (tmp_path / "export").exists()


def test_hiertcn_low_exports_and_streams_like_the_model(tmp_path):
    m = model("hiertcn_low")
    save_checkpoint(tmp_path / "checkpoint.pt", m, ITEM_IDS, step=1, extra={},
                    session=SessionConfig(gap_s=600, max_session_len=20))
    sm = StreamModel.load(export(tmp_path, tmp_path / "export"))
    assert isinstance(sm.model, HierTCN) and not sm.model.config.high_level
    meta = json.loads((tmp_path / "export" / "meta.json").read_text())
    assert meta["session"] == sm.session_policy == {"gap_s": 600, "max_session_len": 20}
    batch = BatchState(sm, sm.fresh(1))
    batch.step([0], [3])
    with torch.no_grad():
        want = m.step(m.initial_state(1), torch.tensor([3])).embedding[0].numpy()
    np.testing.assert_allclose(batch.embedding(0), want, atol=1e-6)


@pytest.mark.parametrize("kind", NEURAL_MODELS)
def test_item_vectors_start_every_model_and_can_be_frozen(kind):
    sizes = SMALL if kind.startswith("hiertcn") else {}
    dim = 8 if sizes else 128
    vectors = torch.randn(N_ITEMS, dim)
    m = build_model(kind, N_ITEMS, vectors, frozen=True, **sizes)
    assert torch.equal(m.items.weight, vectors) and not m.items.weight.requires_grad
    assert build_model(kind, N_ITEMS, vectors, **sizes).items.weight.requires_grad
    with pytest.raises(ConfigError, match="item vectors"):
        build_model(kind, N_ITEMS, torch.randn(N_ITEMS, dim + 1), **sizes)


def test_bad_model_size_names_the_field():
    with pytest.raises(ConfigError, match="kernel_size: expected an integer >= 2, got 1"):
        ModelConfig(n_items=5, kernel_size=1)
