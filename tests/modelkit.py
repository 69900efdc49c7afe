"""Model helpers for unit tests of the stream's pure code: a tiny exported model and
the model's own step-wise reference over one user's clicks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hiertcn.checkpoint import export, save_checkpoint
from hiertcn.inference import StreamModel
from hiertcn.model import HierTCN, ModelConfig


def tiny_stream_model(where: Path, n_items: int) -> StreamModel:
    """A tiny random HierTCN over items "i0".."i{n-1}", exported and loaded as the
    worker loads it: for unit tests of the stream's pure code."""
    torch.manual_seed(0)
    model = HierTCN(ModelConfig(n_items=n_items, item_dim=8, channels=6, kernel_size=3,
                                levels=2, gru_hidden=4, gru_layers=2, dropout=0.0)).eval()
    save_checkpoint(where / "ckpt.pt", model, [f"i{k}" for k in range(n_items)], step=1,
                    extra={})
    return StreamModel.load(export(where / "ckpt.pt", where / "export"))

def offline_embeddings(model: StreamModel, events: list[dict], gap_s: float,
                       max_len: int = 100) -> list[np.ndarray]:
    """The model's own step-wise API over one user's clicks, with the session rules of
    training: a new session after a gap > gap_s or max_len events."""
    out, state, last_ts, length = [], model.model.initial_state(1), None, 0
    with torch.no_grad():
        for ev in events:
            item = model.index_of.get(str(ev["item_id"]))
            if item is None:
                out.append(state.embedding[0].numpy().copy())
                continue
            if length and (ev["ts"] - last_ts > gap_s or length >= max_len):
                state, length = model.model.end_session(state), 0
            state = model.model.step(state, torch.tensor([item]))
            last_ts, length = ev["ts"], length + 1
            out.append(state.embedding[0].numpy().copy())
    return out

