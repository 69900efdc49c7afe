"""The model contract, written once: what the evaluator and the trainer call.

- `Recommender` (the evaluator, `hiertcn.evaluate.evaluate`): anything with
  `predict_user`, the simple baselines included.
- `NeuralModel` (the trainer `hiertcn.train.fit`, checkpoints, the CLI): an
  `nn.Module` that also brings its own batches and loss, a `config` that can be saved,
  and the shared item table `items` it scores against. HierTCN, GRU4Rec, HRNN and the
  flat TCN each meet it; the batch and carry types are the model's own business, the
  trainer only passes them back.

The stream needs more than this contract (the step-wise API of `hiertcn.model.HierTCN`),
so it runs HierTCN only.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol

import numpy as np
import torch
import torch.nn as nn

from hiertcn.data.sessions import Sessions
from hiertcn.losses import LossConfig


class Recommender(Protocol):
    def predict_user(self, sessions: Sessions, u: int) -> np.ndarray:
        """Scores (E_u, n_items) for each of user u's events; row i uses only the
        user's events before i (the first of a session: the long-term state alone)."""
        ...


class ModelConfigLike(Protocol):
    n_items: int
    item_dim: int

    def to_dict(self) -> dict:
        """Plain values only: saved in checkpoints, and `type(config)(**d)` rebuilds it."""
        ...


class NeuralModel(Recommender, Protocol):
    config: ModelConfigLike
    items: nn.Embedding  # (n_items, item_dim): input embeddings and the scoring table

    def train_batches(self, sessions: Sessions, n_queues: int, sessions_per_batch: int,
                      rng: np.random.Generator) -> Iterable[Any]:
        """One epoch of training batches, or an `Endless` stream the trainer cuts into
        epochs (hiertcn/data/batches.py); `n_queues` is B, the batch width. Models that
        do not group by session ignore `sessions_per_batch`."""
        ...

    def loss(self, batch: Any, carry: Any, config: LossConfig) -> tuple[torch.Tensor, int, Any]:
        """(mean loss, events it averages over, the carry for the next batch: a tensor,
        a tuple of tensors, or None). The first batch of an epoch gets carry None."""
        ...

    # what the trainer uses of nn.Module
    def parameters(self) -> Iterable[nn.Parameter]: ...
    def named_parameters(self) -> Iterable[tuple[str, nn.Parameter]]: ...
    def state_dict(self) -> dict[str, torch.Tensor]: ...
    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> Any: ...
    def train(self, mode: bool = True) -> Any: ...
    def eval(self) -> Any: ...
