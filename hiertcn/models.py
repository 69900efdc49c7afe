"""The neural models the trainer can build, by name, for the CLI and the benchmarks.
Explicit imports, no registry: this is the one place that maps a name to a class."""

from __future__ import annotations

import torch

from hiertcn.model import HierTCN, ModelConfig

NEURAL_MODELS = ("hiertcn", "hiertcn_low", "gru4rec", "hrnn", "tcn")

# Training settings that differ per model, tuned on validation (MovieLens, user split).
# The hierarchical models take whole sessions per batch, ~100x the events of one
# GRU4Rec time step: small queues give them enough updates per epoch on this small
# data set (B=16, S=4 reached val Recall@20 0.03 after 4 epochs; B=4, S=2 0.11).
TRAIN_DEFAULTS = {
    "hiertcn": {"batch_size": 4, "sessions_per_batch": 2},
    "hiertcn_low": {"batch_size": 4, "sessions_per_batch": 2},
}


def build_model(name: str, n_items: int, item_vectors: torch.Tensor | None = None,
                frozen: bool = False):
    """`item_vectors` (n_items, 128) start the item table; `frozen` keeps them fixed."""
    model = _new(name, n_items, frozen)
    if item_vectors is not None:
        model.items.weight.data.copy_(item_vectors)
    model.items.weight.requires_grad_(not frozen)
    return model


def _new(name: str, n_items: int, frozen: bool):
    if name in ("hiertcn", "hiertcn_low"):
        return HierTCN(ModelConfig(n_items=n_items, high_level=name == "hiertcn",
                                   freeze_items=frozen))
    if name == "gru4rec":
        from hiertcn.baselines.gru4rec import GRU4Rec, GRU4RecConfig
        return GRU4Rec(GRU4RecConfig(n_items=n_items))
    if name == "hrnn":
        from hiertcn.baselines.hrnn import HRNN, HRNNConfig
        return HRNN(HRNNConfig(n_items=n_items))
    if name == "tcn":
        from hiertcn.baselines.flat_tcn import FlatTCN, FlatTCNConfig
        return FlatTCN(FlatTCNConfig(n_items=n_items))
    raise ValueError(f"unknown model {name!r}; choose from {NEURAL_MODELS}")
