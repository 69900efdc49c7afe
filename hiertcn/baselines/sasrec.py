"""SASRec (Kang & McAuley, "Self-attentive sequential recommendation", ICDM 2018), read
top to bottom: windows -> window batches -> attention -> block -> SASRec.

Causal self-attention over the user's last `max_len` events, sessions ignored (a flat
sequential model, as the flat TCN): item embeddings (scaled by sqrt(d)) plus learned
positional embeddings, `n_blocks` blocks of multi-head causal attention and a
point-wise feed-forward net, each a residual with layer norm and dropout, then a
final layer norm; position t's output is the user embedding that predicts event t,
scored by inner product against the shared item table (SASRec shares its item
embeddings between input and output too). Same contract as `hiertcn.model.HierTCN`,
so `hiertcn.train.fit`, checkpoints and `hiertcn evaluate` run it.

Differences from the paper, for a fair comparison with the other models here:
- trained on every event of the user's whole history (the paper keeps only the last
  `max_len` events per user), in windows (below);
- the shared loss `next_item_loss` (full softmax by default), not binary cross-entropy
  with one sampled negative;
- a learned start token is the input at position 0, so the user's first event is a
  target too (the paper starts from the second);
- pre-norm blocks (x + f(LN(x))); the paper normalises the attention's queries only.

Windows: a user's targets 0..E-1 are covered by windows of at most `max_len`
positions started every `stride` events; the first window scores all its targets,
every later one only its last `stride` (its first position reads the event just
before it). `predict_user` uses stride max_len // 2, so every target sees at least
half a window of history once the user has that much. Training uses `train_stride`,
by default max_len: windows do not overlap, each event is computed once (half the
cost) and targets are trained with every history length from 0 up, which is also
what a new user's first events have. `train_stride = max_len // 2` makes training
see exactly the contexts `predict_user` scores with.

Parameter budget (`count_parameters`, item table excluded), d = item_dim, F = ffn_dim,
L = n_blocks, n = max_len: L (4d^2 + 4d + 2dF + F + d + 4d) + n d + d (start) + 2d.
Default d=128, F=480, L=4, n=200: 786,176, +1.8% of HierTCN's default 772,480. The
paper's MovieLens-1M model (d=50, 2 blocks, F=d) is far smaller; matching the budget,
the width stays HierTCN's item_dim and the rest goes to depth and the FFN.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hiertcn.data.sessions import Sessions
from hiertcn.errors import ConfigError
from hiertcn.item_table import item_table
from hiertcn.losses import LossConfig, next_item_loss


@dataclass(frozen=True)
class SASRecConfig:
    n_items: int
    item_dim: int = 128  # shared item-embedding size, as HierTCN; also the model width
    max_len: int = 200  # attention span in events (the paper's n; 200 on MovieLens-1M)
    n_blocks: int = 4  # sized to HierTCN's parameter budget (module docstring)
    n_heads: int = 2
    ffn_dim: int = 480  # sized to the budget; the paper's is item_dim
    dropout: float = 0.2  # the paper's on MovieLens-1M
    train_stride: int | None = None  # training windows start every this many events;
    # None: max_len, no overlap (module docstring)
    freeze_items: bool = False  # True when item vectors are loaded from a file

    def __post_init__(self):
        for name, low in (("max_len", 2), ("n_blocks", 1), ("n_heads", 1), ("ffn_dim", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.train_stride is not None and not 1 <= self.train_stride <= self.max_len:
            raise ConfigError(f"train_stride must be in [1, max_len={self.max_len}], got "
                              f"{self.train_stride}")
        if self.item_dim % self.n_heads:
            raise ConfigError(f"item_dim {self.item_dim} must be a multiple of n_heads "
                              f"{self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


# ---- windows over a user's events ----------------------------------------------------

def windows(n_events: int, max_len: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, stop, scored_from) target ranges covering 0..n_events-1 once each."""
    out = [(0, min(max_len, n_events), 0)] if n_events else []
    start = stride
    while start + max_len - stride < n_events:
        out.append((start, min(start + max_len, n_events), start + max_len - stride))
        start += stride
    return out


@dataclass
class WindowBatch:
    inputs: torch.Tensor  # (B, T) long: the previous event's item, -1 = start token
    targets: torch.Tensor  # (B, T) long: the item to predict, -1 = not scored here

    @property
    def scored(self) -> torch.Tensor:
        return self.targets >= 0  # (B, T)


def user_windows(items: np.ndarray, max_len: int) -> WindowBatch:
    """The scoring windows (stride max_len // 2) of one user's events `items` (E,),
    right-padded (padding reads the start token; causal attention keeps it from
    earlier positions)."""
    spans = windows(len(items), max_len, max_len // 2)
    return _pad(items, [(0, lo, hi, first) for lo, hi, first in spans], max_len)


def _pad(items: np.ndarray, rows: list[tuple[int, int, int, int]], max_len: int) -> WindowBatch:
    """rows: (offset of the user's first event in `items`, start, stop, scored_from)."""
    T = max(hi - lo for _, lo, hi, _ in rows)  # <= max_len
    inputs = np.full((len(rows), T), -1, np.int64)
    targets = np.full((len(rows), T), -1, np.int64)
    for r, (base, lo, hi, first) in enumerate(rows):
        if lo > 0:
            inputs[r, 0] = items[base + lo - 1]
        inputs[r, 1:hi - lo] = items[base + lo:base + hi - 1]
        targets[r, first - lo:hi - lo] = items[base + first:base + hi]
    return WindowBatch(inputs=torch.from_numpy(inputs), targets=torch.from_numpy(targets))


def window_batches(sessions: Sessions, n_rows: int, max_len: int, stride: int,
                   rng: np.random.Generator) -> Iterator[WindowBatch]:
    """Every window of every user, `n_rows` per batch; windows of similar length share
    a batch (sorted once, cut into groups, groups shuffled) to keep padding small."""
    bounds = np.asarray(sessions.session_offsets)[np.asarray(sessions.user_offsets)]
    rows = [(int(a), lo, hi, first) for a, b in zip(bounds[:-1], bounds[1:])
            for lo, hi, first in windows(int(b - a), max_len, stride)]
    order = np.argsort([hi - lo for _, lo, hi, _ in rows], kind="stable")
    groups = [order[i:i + n_rows] for i in range(0, len(order), n_rows)]
    items = np.asarray(sessions.items, np.int64)
    for g in rng.permutation(len(groups)):
        yield _pad(items, [rows[r] for r in groups[g]], max_len)


# ---- the model -----------------------------------------------------------------------

class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # (B, T, D) each
        q, k, v = (t.view(B, T, self.heads, D // self.heads).transpose(1, 2)
                   for t in (q, k, v))  # (B, h, T, D/h)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))  # (B, T, D)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.ffn(self.norm2(x)))


class SASRec(nn.Module):
    def __init__(self, config: SASRecConfig, item_vectors: torch.Tensor | None = None):
        super().__init__()
        self.config = c = config
        self.items = item_table(c.n_items, c.item_dim, item_vectors, c.freeze_items)
        self.start = nn.Parameter(torch.zeros(c.item_dim))
        self.positions = nn.Embedding(c.max_len, c.item_dim)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c.item_dim, c.n_heads, c.ffn_dim, c.dropout)
                                    for _ in range(c.n_blocks))
        self.norm = nn.LayerNorm(c.item_dim)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (B, T <= max_len) long, -1 = start token -> user embeddings (B, T, D),
        position t from inputs <= t only."""
        x = self.items(inputs.clamp(min=0)) * math.sqrt(self.config.item_dim)  # (B, T, D)
        x = torch.where((inputs < 0)[..., None], self.start, x)
        x = self.drop(x + self.positions.weight[:inputs.shape[1]])
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    # ---- the contract of hiertcn/contract.py: trainer and evaluator -------------------

    def train_batches(self, sessions: Sessions, n_queues: int, sessions_per_batch: int, rng):
        c = self.config
        return window_batches(sessions, n_queues, c.max_len, c.train_stride or c.max_len, rng)

    def loss(self, batch: WindowBatch, carry, config: LossConfig):
        scored = batch.scored
        u = self.encode(batch.inputs)[scored]  # (N, D)
        targets = batch.targets[scored]  # (N,)
        return next_item_loss(u, targets, self.items.weight, config), len(targets), None

    @torch.no_grad()
    def predict_user(self, sessions: Sessions, u: int) -> np.ndarray:
        """Scores (E_u, N): all the user's windows as one batch; row-major order of the
        scored positions is event order."""
        ss = sessions.user_sessions(u)
        lo, hi = sessions.session_offsets[ss.start], sessions.session_offsets[ss.stop]
        if hi == lo:
            return np.zeros((0, self.config.n_items), np.float32)
        batch = user_windows(np.asarray(sessions.items[lo:hi], np.int64), self.config.max_len)
        emb = self.encode(batch.inputs)[batch.scored]  # (E_u, D)
        return (emb @ self.items.weight.T).numpy()  # (E_u, N)
