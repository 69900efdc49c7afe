"""GRU4Rec (Hidasi et al. 2016), read top to bottom: the parallel-slot walker ->
StepBatch -> GRU4Rec.

A GRU over the items of one session; no memory across sessions, so every session
starts from a zero state. Same contract as `hiertcn.model.HierTCN` (train_batches,
loss, predict_user), so `hiertcn.train.fit` and `hiertcn.evaluate.evaluate` run it.

Training batches are session-parallel, as in the official GRU4Rec: B slots, each
walking through one session an event at a time; when a slot's session ends the next
session (in a per-epoch shuffled order) takes that slot and the slot's hidden state
is reset. One batch is one time step of all B slots, and the hidden state is carried
from batch to batch (truncated backprop of one step). `sessions_per_batch` is ignored.

Differences from the official code, for a fair comparison with HierTCN:
- a learned start token is the input at each session's first position, so every
  event is a target (HierTCN predicts a session's first item too); the official code
  predicts from the second event on;
- the loss is the shared `next_item_loss` (full softmax by default), not
  BPR/TOP1 over in-batch negatives;
- output: Linear(hidden -> item_dim), then scores are inner products with the shared
  item table `items`, which is also the input embedding;
- at the end of an epoch slots run dry one by one and are masked out (the official
  code stops at the first slot it cannot refill, dropping the tail).

Parameter budget (`count_parameters`, item table excluded), D = item_dim, H = hidden:
GRU 3(DH + H^2 + 2H) + output HD + D + start token D. Default D=128, H=432, 1 layer:
783,904, +1.5% of HierTCN's default 772,480.
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


@dataclass(frozen=True)
class GRU4RecConfig:
    n_items: int
    item_dim: int = 128  # shared item-embedding size, as HierTCN
    hidden: int = 432  # sized to HierTCN's parameter budget (module docstring)
    layers: int = 1
    dropout: float = 0.1  # on the GRU output (and between layers when layers > 1)
    freeze_items: bool = False  # True when item vectors are loaded from a file

    def to_dict(self) -> dict:
        return asdict(self)


# ---- the parallel-slot walker (HRNN reuses it with users as streams) ---------------

def parallel_walk(offsets: np.ndarray, n_slots: int,
                  rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Walk streams (stream k owns flat events offsets[k]:offsets[k+1]) in shuffled
    order on parallel slots, one event per slot per step. Yields per step the event
    index of each slot (B,) int64, -1 where the slot ran dry, and (B,) bool: a new
    stream took the slot at this step, so its state must restart."""
    offsets = np.asarray(offsets, np.int64)
    order = rng.permutation(len(offsets) - 1)
    order = order[np.diff(offsets)[order] > 0]  # an empty stream would never advance
    B = min(n_slots, len(order))
    pos, end = offsets[order[:B]].copy(), offsets[order[:B] + 1].copy()
    alive, fresh, taken = np.ones(B, bool), np.ones(B, bool), B
    while alive.any():
        yield np.where(alive, pos, -1), fresh & alive
        pos += 1
        fresh = alive & (pos == end)
        for b in np.flatnonzero(fresh):  # refill finished slots with the next streams
            if taken < len(order):
                pos[b], end[b] = offsets[order[taken]], offsets[order[taken] + 1]
                taken += 1
            else:
                alive[b] = False


@dataclass
class StepBatch:
    """One time step of B parallel slots."""

    inputs: torch.Tensor  # (B,) long: the previous item, -1 = start token (session's 1st)
    targets: torch.Tensor  # (B,) long: the item to predict, -1 = the slot ran dry
    new_session: torch.Tensor  # (B,) bool: a session starts here
    new_stream: torch.Tensor  # (B,) bool: a new stream (session, or HRNN's user) took the slot

    @property
    def live(self) -> torch.Tensor:
        return self.targets >= 0


def step_batches(sessions: Sessions, offsets: np.ndarray, n_slots: int,
                 rng: np.random.Generator) -> Iterator[StepBatch]:
    """StepBatches of the streams `offsets` (event offsets) over `sessions`' events."""
    items = np.asarray(sessions.items, np.int64)
    first = np.zeros(sessions.n_events + 1, bool)  # +1: index -1 of a dry slot reads False
    first[sessions.session_offsets[:-1]] = True
    for event, fresh in parallel_walk(offsets, n_slots, rng):
        live = event >= 0
        new_session = live & first[event]
        inputs = np.where(live & ~new_session, items[event - 1], -1)  # start token at 1st
        yield StepBatch(inputs=torch.from_numpy(inputs),
                        targets=torch.from_numpy(np.where(live, items[event], -1)),
                        new_session=torch.from_numpy(new_session),
                        new_stream=torch.from_numpy(fresh))


def shifted_sessions(sessions: Sessions, ss: range) -> tuple[torch.Tensor, torch.Tensor]:
    """Sessions `ss` as right-padded inputs (S, T), start token (-1) then each item but
    the last, and the mask (S, T) of real positions; position t predicts item t."""
    lengths = sessions.session_lengths()[ss.start:ss.stop]
    T = int(lengths.max())
    inputs = np.full((len(ss), T), -1, np.int64)  # padding reads the start token: ignored
    for j, s in enumerate(ss):
        inputs[j, 1:lengths[j]] = sessions.session(s)[:-1]
    mask = np.arange(T)[None, :] < lengths[:, None]  # (S, T)
    return torch.from_numpy(inputs), torch.from_numpy(mask)


# ---- the model ---------------------------------------------------------------------

class GRU4Rec(nn.Module):
    def __init__(self, config: GRU4RecConfig, item_vectors: torch.Tensor | None = None):
        super().__init__()
        self.config = c = config
        self.items = item_table(c.n_items, c.item_dim, item_vectors, c.freeze_items)
        self.start = nn.Parameter(torch.zeros(c.item_dim))
        self.gru = nn.GRU(c.item_dim, c.hidden, c.layers, batch_first=True,
                          dropout=c.dropout if c.layers > 1 else 0.0)
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.hidden, c.item_dim)

    def zero_state(self, n: int) -> torch.Tensor:
        return self.start.new_zeros(self.config.layers, n, self.config.hidden)  # (L, B, H)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """(...) long, -1 = start token -> (..., D)."""
        x = self.items(inputs.clamp(min=0))
        return torch.where((inputs < 0)[..., None], self.start, x)

    def forward(self, inputs: torch.Tensor, h: torch.Tensor):
        """inputs (B, T), h (L, B, H) -> user embeddings (B, T, D) and the last h."""
        y, h = self.gru(self.embed(inputs), h)  # (B, T, H)
        return self.out(self.dropout(y)), h

    # ---- the contract of hiertcn/contract.py: trainer and evaluator ---------------

    def train_batches(self, sessions: Sessions, n_queues: int, sessions_per_batch: int, rng):
        return step_batches(sessions, sessions.session_offsets, n_queues, rng)

    def loss(self, batch: StepBatch, carry, config: LossConfig):
        h = self.zero_state(len(batch.inputs)) if carry is None else carry
        h = h.masked_fill(batch.new_session[None, :, None], 0.0)  # new session: no memory
        u, h = self(batch.inputs[:, None], h)  # (B, 1, D)
        live = batch.live
        return (next_item_loss(u[:, 0][live], batch.targets[live], self.items.weight, config),
                int(live.sum()), h)

    @torch.no_grad()
    def predict_user(self, sessions: Sessions, u: int) -> np.ndarray:
        """Scores (E_u, N); every session runs from a zero state (no cross-session
        memory), all of them at once as a padded batch."""
        ss = sessions.user_sessions(u)
        inputs, mask = shifted_sessions(sessions, ss)
        emb, _ = self(inputs, self.zero_state(len(ss)))  # (S, T, D)
        return (emb[mask] @ self.items.weight.T).numpy()  # (E_u, N), session order
