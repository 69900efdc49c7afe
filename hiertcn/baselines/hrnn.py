"""HRNN (Quadrana et al. 2017, the "init" variant), read top to bottom.

A session-level GRU as in GRU4Rec, plus a user-level GRU fed once per session with
the session GRU's final state; the user state initialises the next session's GRU
state through Linear + tanh. A new user starts from a zero user state. Same contract
as `hiertcn.model.HierTCN`, so `hiertcn.train.fit` and the evaluator run it.

Training batches are user-parallel: B slots, each walking one user's sessions event by
event (GRU4Rec's `parallel_walk` with users as the streams); where a slot changes user
the user state restarts from zero. One batch is one time step of all B slots; the
carry is (session h (B, Hs), user h (B, Hu)). `sessions_per_batch` is ignored. As in
our GRU4Rec, a learned start token is the input at each session's first position so
every event is a target, and the loss is the shared `next_item_loss`.

The user GRU is rolled lazily, at the first event of the next session of the same
user (the session state then still holds the previous session's final state): the
same arithmetic as rolling at the session end, and no look-ahead in the iterator.

Parameter budget (`count_parameters`, item table excluded), D = item_dim, Hs = Hu = H:
session GRU 3(DH + H^2 + 2H), user GRU 3(2H^2 + 2H), init H^2 + H, output HD + D,
start token D. Default D=128, H=256: 790,016, +2.3% of HierTCN's default 772,480.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from hiertcn.baselines.gru4rec import StepBatch, step_batches
from hiertcn.data.sessions import Sessions
from hiertcn.item_table import item_table
from hiertcn.losses import LossConfig, next_item_loss


@dataclass(frozen=True)
class HRNNConfig:
    n_items: int
    item_dim: int = 128  # shared item-embedding size, as HierTCN
    session_hidden: int = 256  # Hs; with Hu sized to HierTCN's budget (docstring)
    user_hidden: int = 256  # Hu
    dropout: float = 0.1  # on the session GRU's output
    freeze_items: bool = False  # True when item vectors are loaded from a file

    def to_dict(self) -> dict:
        return asdict(self)


class HRNN(nn.Module):
    def __init__(self, config: HRNNConfig, item_vectors: torch.Tensor | None = None):
        super().__init__()
        self.config = c = config
        self.items = item_table(c.n_items, c.item_dim, item_vectors, c.freeze_items)
        self.start = nn.Parameter(torch.zeros(c.item_dim))
        # nn.GRU rather than a cell: one step in training, a whole session in predict
        self.session_gru = nn.GRU(c.item_dim, c.session_hidden, batch_first=True)
        self.user_gru = nn.GRUCell(c.session_hidden, c.user_hidden)
        self.init = nn.Linear(c.user_hidden, c.session_hidden)
        self.dropout = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.session_hidden, c.item_dim)

    def zero_state(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        w = self.start
        return w.new_zeros(n, c.session_hidden), w.new_zeros(n, c.user_hidden)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """(...) long, -1 = start token -> (..., D)."""
        x = self.items(inputs.clamp(min=0))
        return torch.where((inputs < 0)[..., None], self.start, x)

    def open_session(self, user: torch.Tensor) -> torch.Tensor:
        """The session GRU's initial state (B, Hs) from the user state (B, Hu)."""
        return torch.tanh(self.init(user))

    def run_session(self, inputs: torch.Tensor, s: torch.Tensor):
        """inputs (B, T), s (B, Hs) -> user embeddings (B, T, D) and the last s (B, Hs)."""
        y, s = self.session_gru(self.embed(inputs), s[None])  # (B, T, Hs), (1, B, Hs)
        return self.out(self.dropout(y)), s[0]

    # ---- the contract of hiertcn/contract.py: trainer and evaluator ---------------

    def train_batches(self, sessions: Sessions, n_queues: int, sessions_per_batch: int, rng):
        user_events = sessions.session_offsets[sessions.user_offsets]  # (n_users + 1,)
        return step_batches(sessions, user_events, n_queues, rng)

    def loss(self, batch: StepBatch, carry, config: LossConfig):
        s, user = self.zero_state(len(batch.inputs)) if carry is None else carry
        user = user.masked_fill(batch.new_stream[:, None], 0.0)  # new user: no history
        roll = batch.new_session & ~batch.new_stream  # s: the previous session's final state
        if roll.any():
            # only rows that finished a session pay for the user GRU; in place is safe,
            # `user` is masked_fill's fresh output
            user[roll] = self.user_gru(s[roll], user[roll])
        s = torch.where(batch.new_session[:, None], self.open_session(user), s)
        u, s = self.run_session(batch.inputs[:, None], s)  # (B, 1, D)
        live = batch.live
        return (next_item_loss(u[:, 0][live], batch.targets[live], self.items.weight, config),
                int(live.sum()), (s, user))

    @torch.no_grad()
    def predict_user(self, sessions: Sessions, u: int) -> np.ndarray:
        """Scores (E_u, N): the user's sessions in order, the user GRU rolling between."""
        _, user = self.zero_state(1)
        embs = []
        for s in sessions.user_sessions(u):
            items = torch.from_numpy(np.asarray(sessions.session(s), np.int64))
            inputs = torch.cat([items.new_full((1,), -1), items[:-1]])[None]  # (1, T)
            emb, last = self.run_session(inputs, self.open_session(user))
            embs.append(emb[0])  # (T, D)
            user = self.user_gru(last, user)
        return (torch.cat(embs) @ self.items.weight.T).numpy()  # (E_u, N)
