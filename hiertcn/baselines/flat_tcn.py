"""Flat TCN (NextItNet-style), read top to bottom: history batches -> FlatTCN.

One causal TCN over each user's WHOLE history, sessions ignored: all of the user's
events concatenated, a learned start token in front, position t predicting event t.
It reuses `hiertcn.model.SessionTCN` (dilations 1, 2, 4, ... and one conv per block;
NextItNet repeats {1, 2, 4, 8} with two convs per block). Same contract as
`hiertcn.model.HierTCN`, so `hiertcn.train.fit` and the evaluator run it.

Training batches: B users per batch, each padded to the longest history in the batch.
That is the point of this baseline: activation memory grows with history length
(HierTCN's queues hold B x S sessions whatever the history). Users are grouped by
history length (sorted once, cut into groups of B, groups shuffled per epoch) so the
padding stays small, but histories are kept whole; `max_len` (default None) cuts them
into consecutive windows of at most `max_len` events instead. Nothing is carried
between batches. `sessions_per_batch` is ignored.

Parameter budget (`count_parameters`, item table excluded), D = item_dim, C = channels,
k = kernel, L = levels: projection DC + start C + L (kC^2 + C) + output CD + D.
Default D=128, C=128, k=5, L=9: 771,456, -0.1% of HierTCN's default 772,480. Nine
levels rather than a wider four: the receptive field, 1 + (k-1)(2^L - 1) = 2,045
events, then spans whole histories, which is what a flat model over them is for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn

from hiertcn.data.sessions import Sessions
from hiertcn.item_table import item_table
from hiertcn.losses import LossConfig, next_item_loss
from hiertcn.model import SessionTCN


@dataclass(frozen=True)
class FlatTCNConfig:
    n_items: int
    item_dim: int = 128  # shared item-embedding size, as HierTCN
    channels: int = 128  # as HierTCN
    kernel_size: int = 5  # as HierTCN
    levels: int = 9  # sized to HierTCN's parameter budget (module docstring)
    dropout: float = 0.1
    max_len: int | None = None  # training only: None keeps whole histories
    freeze_items: bool = False  # True when item vectors are loaded from a file

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class HistoryBatch:
    items: torch.Tensor  # (B, T) long, -1 = padding

    @property
    def mask(self) -> torch.Tensor:
        return self.items >= 0  # (B, T)


def history_rows(sessions: Sessions, max_len: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Event ranges [lo, hi) of every user's history, or of its max_len windows."""
    bounds = np.asarray(sessions.session_offsets)[np.asarray(sessions.user_offsets)]
    lo, hi = bounds[:-1], bounds[1:]
    if max_len is not None:
        starts = [np.arange(a, b, max_len) for a, b in zip(lo, hi)]
        lo = np.concatenate(starts)
        hi = np.minimum(lo + max_len, np.repeat(hi, [len(s) for s in starts]))
    keep = hi > lo
    return lo[keep], hi[keep]


def history_batches(sessions: Sessions, n_users: int, rng: np.random.Generator,
                    max_len: int | None = None) -> Iterator[HistoryBatch]:
    lo, hi = history_rows(sessions, max_len)
    order = np.argsort(hi - lo, kind="stable")  # similar lengths share a batch
    groups = [order[i:i + n_users] for i in range(0, len(order), n_users)]
    items = np.asarray(sessions.items, np.int64)
    for g in rng.permutation(len(groups)):
        rows = groups[g]
        padded = np.full((len(rows), int((hi[rows] - lo[rows]).max())), -1, np.int64)
        for j, r in enumerate(rows):
            padded[j, :hi[r] - lo[r]] = items[lo[r]:hi[r]]
        yield HistoryBatch(items=torch.from_numpy(padded))


class FlatTCN(nn.Module):
    def __init__(self, config: FlatTCNConfig, item_vectors: torch.Tensor | None = None):
        super().__init__()
        self.config = c = config
        self.items = item_table(c.n_items, c.item_dim, item_vectors, c.freeze_items)
        self.project = nn.Linear(c.item_dim, c.channels, bias=False)
        self.start = nn.Parameter(torch.zeros(c.channels))
        self.tcn = SessionTCN(c.channels, c.channels, c.kernel_size, c.levels, c.dropout)
        self.out = nn.Linear(c.channels, c.item_dim)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """items (B, T), -1 = right padding -> user embeddings (B, T, D), position t
        predicting item t from items < t. Right padding cannot reach earlier outputs
        through causal convolutions."""
        mask = items >= 0
        x = self.project(self.items(items.clamp(min=0))) * mask[..., None]  # (B, T, C)
        start = self.start.expand(x.shape[0], 1, -1)  # (B, 1, C)
        inp = torch.cat([start, x[:, :-1]], dim=1)  # (B, T, C) shifted right
        return self.out(self.tcn(inp))

    # ---- the contract of hiertcn/contract.py: trainer and evaluator ---------------

    def train_batches(self, sessions: Sessions, n_queues: int, sessions_per_batch: int, rng):
        return history_batches(sessions, n_queues, rng, self.config.max_len)

    def loss(self, batch: HistoryBatch, carry, config: LossConfig):
        mask = batch.mask
        u = self.encode(batch.items)[mask]  # (N, D)
        targets = batch.items[mask]  # (N,)
        return next_item_loss(u, targets, self.items.weight, config), len(targets), None

    @torch.no_grad()
    def predict_user(self, sessions: Sessions, u: int) -> np.ndarray:
        """Scores (E_u, N): one forward over the user's whole history."""
        ss = sessions.user_sessions(u)
        lo, hi = sessions.session_offsets[ss.start], sessions.session_offsets[ss.stop]
        items = torch.from_numpy(np.asarray(sessions.items[lo:hi], np.int64))[None]  # (1, E_u)
        return (self.encode(items)[0] @ self.items.weight.T).numpy()  # (E_u, N)
