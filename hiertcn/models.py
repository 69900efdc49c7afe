"""The neural models the trainer can build, by name, for the CLI and the benchmarks.
Explicit imports, no registry: this is the one place that maps a name to a class."""

from __future__ import annotations

import torch

from hiertcn.model import HierTCN, ModelConfig

NEURAL_MODELS = ("hiertcn", "hiertcn_low", "gru4rec", "hrnn", "tcn")


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
