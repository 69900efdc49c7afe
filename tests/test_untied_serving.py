"""An export with an untied output layer (`--untied-output`, `--preset authors`) is
served: the worker's export check accepts its index of [output vector; bias] rows, the
stream's top-K is the model's own scores' top-K, and its live catalogue refuses item
vectors (a new item has no learnt output vector nor bias)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from hiertcn.checkpoint import export, save_checkpoint
from hiertcn.inference import StreamModel
from hiertcn.live_items import accepts_item_vectors
from hiertcn.model import HierTCN, ModelConfig
from stream.worker.model_holder import check_export

N_ITEMS = 30


def exported(tmp_path, untied: bool, freeze_items: bool = False) -> StreamModel:
    torch.manual_seed(0)
    model = HierTCN(ModelConfig(n_items=N_ITEMS, item_dim=8, channels=6, kernel_size=3,
                                levels=2, gru_hidden=4, gru_layers=2, dropout=0.0,
                                untied_output=untied, freeze_items=freeze_items)).eval()
    if untied:  # biases far from zero, so a search that ignored them would rank otherwise
        with torch.no_grad():
            model.item_bias.copy_(torch.linspace(-3, 3, N_ITEMS))
    save_checkpoint(tmp_path / "ckpt.pt", model, [f"i{k}" for k in range(N_ITEMS)], step=1,
                    extra={})
    return StreamModel.load(export(tmp_path / "ckpt.pt", tmp_path / "export"))


def test_an_untied_export_passes_the_check_and_ranks_by_the_models_scores(tmp_path):
    served = exported(tmp_path, untied=True)
    check_export(served)  # raised "index of 9 dims, the model's items have 8" before
    assert served.index.d == served.model.config.item_dim + 1
    rng = np.random.default_rng(0)
    users = rng.normal(size=(5, served.model.config.item_dim)).astype(np.float32)
    with torch.no_grad():
        want = served.model.scores(torch.from_numpy(users)).numpy()  # (5, N)
    for row, ranked in zip(want, served.top_k(users, 10)):
        best = [f"i{k}" for k in np.argsort(-row, kind="stable")[:10]]
        assert ranked.item_ids == best
        np.testing.assert_allclose(ranked.scores, np.sort(row)[::-1][:10], rtol=1e-5)


def test_a_tied_export_with_a_widened_index_is_still_refused(tmp_path):
    served = exported(tmp_path, untied=False)
    check_export(served)
    # a model that scores with a bias next to an index built without one
    served.model.config = replace(served.model.config, untied_output=True)
    with pytest.raises(ValueError, match="index of 8 dims"):
        check_export(served)


def test_only_a_tied_frozen_item_table_takes_live_item_vectors(tmp_path):
    assert accepts_item_vectors(exported(tmp_path / "a", untied=False, freeze_items=True))
    assert not accepts_item_vectors(exported(tmp_path / "b", untied=True, freeze_items=True))
    assert not accepts_item_vectors(exported(tmp_path / "c", untied=False))
