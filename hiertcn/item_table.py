"""The item table every neural model scores against: one `nn.Embedding` (N, D),
built the same way for HierTCN and every baseline so that comparisons stay fair."""

from __future__ import annotations

import torch
import torch.nn as nn

from hiertcn.errors import ConfigError


def item_table(n_items: int, dim: int, vectors: torch.Tensor | None = None,
               frozen: bool = False) -> nn.Embedding:
    """Random normal rows of std dim^-0.5 (inner products of O(1) at init), or a copy
    of `vectors` (n_items, dim); `frozen` keeps the rows fixed in training."""
    table = nn.Embedding(n_items, dim)
    nn.init.normal_(table.weight, std=dim ** -0.5)
    if vectors is not None:
        if tuple(vectors.shape) != (n_items, dim):
            raise ConfigError(f"item vectors are {tuple(vectors.shape)}, the model's item "
                              f"table is ({n_items}, {dim}): give vectors of --item-dim {dim}")
        with torch.no_grad():
            table.weight.copy_(vectors)
    table.weight.requires_grad_(not frozen)
    return table
