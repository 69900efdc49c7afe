"""HierTCN, read top to bottom: CausalConv1d -> TemporalBlock -> SessionTCN ->
SessionGRU -> HierTCN.

`ModelConfig` is in hiertcn/model_config.py; `Batch` (S sessions of B users, and the
context sessions truncated backprop re-runs) comes from the data layer,
hiertcn/data/batches.py; the contract the trainer and evaluator call is
hiertcn/contract.py. Users are scored by inner product with the item table, or with
an untied output table plus a per-item bias (`ModelConfig.untied_output`).

Shapes: B users (queues), S sessions per user in a batch, T events per session,
C TCN channels, D item-embedding size, L GRU layers of H units, N items.

Two ways to run the same weights:
- `HierTCN.encode(batch)`: training and offline evaluation, whole sessions at once;
- `HierTCN.step(state, items)`: the stream, one event per user, using each layer's
  cached past inputs ("fast WaveNet" queues), O(levels x kernel) per event whatever
  the session length; `HierTCN.step_many(state, items, lengths)` feeds each user
  several events of its open session in one call, the same result as `step` after
  `step`. tests/test_model.py proves all give the same embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hiertcn.data.batches import Batch, Endless, epoch_batches, queue_batches, user_batch
from hiertcn.data.sessions import Sessions
from hiertcn.item_table import item_table
from hiertcn.losses import LossConfig, next_item_loss
# the config lives in its own module; the CLI and checkpoints import it from here
from hiertcn.model_config import KNOB_MINIMUM, KNOBS, ModelConfig, knob_problem  # noqa: F401


class CausalConv1d(nn.Conv1d):
    """Conv1d padded on the left only, so output t sees inputs <= t."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int):
        super().__init__(c_in, c_out, kernel_size, dilation=dilation)
        self.left_pad = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, C_in, T)
        return super().forward(F.pad(x, (self.left_pad, 0)))  # (B, C_out, T)

    def step(self, x: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C_in) the new input; past (B, left_pad, C_in) the previous inputs,
        oldest first. Only the k taps the kernel reads are touched."""
        d = self.dilation[0]
        taps = torch.cat([past[:, ::d], x[:, None]], dim=1)  # (B, k, C_in)
        return self._weigh(taps), torch.cat([past[:, 1:], x[:, None]], dim=1)

    def step_many(self, x: torch.Tensor, past: torch.Tensor,
                  lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Several new inputs per user in one call, as `step` one after another would.
        x (N, C_in): B users' new inputs packed user by user, oldest first, `lengths`
        (B,) long of them each (0 allowed); past (B, P = left_pad, C_in). Returns the
        output at each new input (N, C_out) and each user's last P inputs (B, P, C_in).
        User b's sequence is [past_b, x_b]; input t of x_b sits at position P + t and
        reads taps t + i*d, i < k. Only those N x k rows are gathered (no padding)."""
        B, P, C = past.shape
        tap = torch.arange(self.kernel_size[0], device=x.device) * self.dilation[0]  # (k,)
        if bool((lengths == lengths[0]).all()):  # K each, e.g. 1: slices, as `step` does
            K = int(lengths[0])
            seq = torch.cat([past, x.view(B, K, C)], dim=1)  # (B, P + K, C_in)
            taps = seq[:, torch.arange(K, device=x.device)[:, None] + tap]  # (B, K, k, C_in)
            taps = taps.reshape(B * K, len(tap), C)  # (N, k, C_in), user by user
            return self._weigh(taps), seq[:, K:]  # (N, C_out), (B, P, C_in)
        begins = torch.cumsum(lengths, 0) - lengths  # (B,) each user's first row of x
        src = torch.cat([past.reshape(B * P, C), x])  # (B*P + N, C_in): pasts, then x

        def rows(b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            """Position v of user b's sequence -> its row of `src`."""
            return torch.where(v < P, b * P + v, B * P + begins[b] + v - P)

        user = torch.arange(B, device=x.device).repeat_interleave(lengths)[:, None]  # (N, 1)
        t = torch.arange(x.shape[0], device=x.device)[:, None] - begins[user]  # (N, 1) in x_b
        taps = src.index_select(0, rows(user, t + tap).reshape(-1))  # (N*k, C_in)
        last = rows(torch.arange(B, device=x.device)[:, None],
                    lengths[:, None] + torch.arange(P, device=x.device))  # (B, P)
        new_past = src.index_select(0, last.reshape(-1)).view(B, P, C)  # (B, P, C_in)
        taps = taps.view(-1, len(tap), C)  # (N, k, C_in)
        return self._weigh(taps), new_past  # (N, C_out), (B, P, C_in)

    def _weigh(self, taps: torch.Tensor) -> torch.Tensor:
        """The kernel applied to gathered taps (N, k, C_in), oldest first -> (N, C_out)."""
        return torch.einsum("bki,oik->bo", taps, self.weight) + self.bias


class TemporalBlock(nn.Module):
    """Causal dilated conv, ReLU, dropout, plus a residual (1x1 projection where
    widths differ), as in Bai et al.'s TCN with one conv per block (released code)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = CausalConv1d(c_in, c_out, kernel_size, dilation)
        self.dropout = nn.Dropout(dropout)
        self.residual = nn.Linear(c_in, c_out) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, T, C_in)
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T, C_out)
        return F.relu(self.dropout(F.relu(h)) + self.residual(x))

    def step(self, x: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, past = self.conv.step(x, past)  # (B, C_out)
        return F.relu(self.dropout(F.relu(h)) + self.residual(x)), past

    def step_many(self, x: torch.Tensor, past: torch.Tensor, lengths: torch.Tensor):
        h, past = self.conv.step_many(x, past, lengths)  # (N, C_out), packed as x
        return F.relu(self.dropout(F.relu(h)) + self.residual(x)), past


class SessionTCN(nn.Module):
    """The low level: a stack of TemporalBlocks with dilations 1, 2, 4, ..."""

    def __init__(self, c_in: int, channels: int, kernel_size: int, levels: int, dropout: float):
        super().__init__()
        widths = [c_in] + [channels] * levels
        self.blocks = nn.ModuleList(
            TemporalBlock(widths[i], widths[i + 1], kernel_size, 2 ** i, dropout)
            for i in range(levels))

    @property
    def receptive_field(self) -> int:
        return 1 + sum(b.conv.left_pad for b in self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C_in) -> (B, T, C)
        for block in self.blocks:
            x = block(x)
        return x

    def empty_past(self, n: int) -> list[torch.Tensor]:
        """Zeros, as the left padding of `forward` is zeros."""
        return [b.conv.weight.new_zeros(n, b.conv.left_pad, b.conv.in_channels)
                for b in self.blocks]

    def step(self, x: torch.Tensor, pasts: list[torch.Tensor]):
        new_pasts = []
        for block, past in zip(self.blocks, pasts):
            x, past = block.step(x, past)
            new_pasts.append(past)
        return x, new_pasts

    def step_many(self, x: torch.Tensor, pasts: list[torch.Tensor], lengths: torch.Tensor):
        """x (N, C_in): B users' new inputs packed user by user, `lengths` (B,) each;
        -> the outputs (N, C) and the new pasts, as N `step` calls in order would."""
        new_pasts = []
        for block, past in zip(self.blocks, pasts):
            x, past = block.step_many(x, past, lengths)
            new_pasts.append(past)
        return x, new_pasts


class SessionGRU(nn.Module):
    """The high level: stacked GRU cells fed once per finished session. Cells, not
    nn.GRU, because every layer's state is needed (it is tiled into the TCN) and
    the state must reset where a user changes in the middle of a batch."""

    def __init__(self, c_in: int, hidden: int, layers: int):
        super().__init__()
        self.cells = nn.ModuleList(
            nn.GRUCell(c_in if i == 0 else hidden, hidden) for i in range(layers))

    def step(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x (B, C) a session summary, h (B, L, H) -> the new h (B, L, H)."""
        out = []
        for i, cell in enumerate(self.cells):
            x = cell(x, h[:, i])
            out.append(x)
        return torch.stack(out, dim=1)

    def forward(self, x, h, reset, valid):
        """x (B, S, C), h (B, L, H) carried in, reset/valid (B, S) bool.
        Returns the state *before* each session (B, S, L, H) and the last (B, L, H)."""
        before = []
        for s in range(x.shape[1]):
            h = torch.where(reset[:, s, None, None], torch.zeros_like(h), h)
            before.append(h)
            h = torch.where(valid[:, s, None, None], self.step(x[:, s], h), h)
        return torch.stack(before, dim=1), h


@dataclass
class StepState:
    """The stream's per-user state for B users, batched. After `open_session` the
    start token has been fed, so `embedding` always predicts the next click."""

    h: torch.Tensor  # (B, L, H) long-term state
    pasts: list[torch.Tensor]  # per block (B, left_pad, C_in) cached inputs
    session_sum: torch.Tensor  # (B, C) sum of projected items in the session
    session_len: torch.Tensor  # (B,) float, events in the session
    embedding: torch.Tensor  # (B, D) latest user embedding


class HierTCN(nn.Module):
    def __init__(self, config: ModelConfig, item_vectors: torch.Tensor | None = None):
        super().__init__()
        self.config = c = config
        self.items = item_table(c.n_items, c.item_dim, item_vectors, c.freeze_items)
        self.project = nn.Linear(c.item_dim, c.channels, bias=False)
        self.start = nn.Parameter(torch.zeros(c.channels))
        self.gru = SessionGRU(c.channels, c.gru_hidden, c.gru_layers) if c.high_level else None
        self.tcn = SessionTCN(c.channels + c.state_dim, c.channels, c.kernel_size,
                              c.levels, c.dropout)
        self.out = nn.Linear(c.channels, c.item_dim)
        # untied (released code, XING): output vectors starting as a copy of the input
        # table, and a per-item bias; tied: users are scored against `items` itself
        self.item_out = nn.Embedding.from_pretrained(
            self.items.weight.detach().clone(), freeze=False) if c.untied_output else None
        self.item_bias = nn.Parameter(torch.zeros(c.n_items)) if c.untied_output else None

    # ---- batch path: training and evaluation -------------------------------------

    def zero_state(self, n: int) -> torch.Tensor:
        c = self.config
        return self.start.new_zeros(n, c.gru_layers, c.gru_hidden)

    def encode(self, batch: Batch, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """User embeddings (N, D) at the batch's N real events, in `batch.mask` order
        (position t predicts item t from items < t), and the GRU state (B, L, H) to carry
        into the next batch: the state after this one; with `batch.context`, the state
        before the next batch's context."""
        mask = batch.mask
        x = self._projected(batch)  # (B, S, T, C)
        B, S, T, C = x.shape
        start = self.start.expand(B, S, 1, C)
        inp = torch.cat([start, x[:, :, :-1]], dim=2)  # (B, S, T, C) shifted right
        if self.gru is not None:
            before, h = self._high_level(batch, x, h)  # (B, S, L, H)
            tiled = before.reshape(B, S, 1, -1).expand(B, S, T, self.config.state_dim)
            inp = torch.cat([inp, tiled], dim=-1)  # (B, S, T, C + L*H)
        y = self._tcn_by_length(inp.reshape(B * S, T, -1), mask.sum(2).reshape(-1))  # (N, C)
        return self.out(y), h

    def _projected(self, batch: Batch) -> torch.Tensor:
        return self.project(self.items(batch.items.clamp(min=0))) * batch.mask[..., None]

    def _high_level(self, batch: Batch, x: torch.Tensor, h: torch.Tensor):
        """The GRU over the batch's sessions (x (B, S, T, C) projected), after the P
        context slots when the batch has them, from h carried in: the state before each
        of the batch's sessions (B, S, L, H), and the carry (B, L, H)."""
        mean = _session_mean(x, batch.mask)  # (B, S, C)
        ctx = batch.context
        if ctx is None:
            return self.gru(mean, h, batch.reset, batch.valid)
        P, S = ctx.items.shape[1], mean.shape[1]
        mean = torch.cat([_session_mean(self._projected(ctx), ctx.mask), mean], 1)  # (B,P+S,C)
        before, last = self.gru(mean, h, torch.cat([ctx.reset, batch.reset], 1),
                                torch.cat([ctx.valid, batch.valid], 1))  # (B, P+S, L, H)
        # the next batch's context starts S slots on: the state before slot S
        return before[:, P:], torch.cat([before, last[:, None]], 1)[:, S]

    def _tcn_by_length(self, inp: torch.Tensor, lengths: torch.Tensor,
                       group: int = 32) -> torch.Tensor:
        """Run the TCN over sessions sorted by length, `group` at a time, each group
        cut to its longest session: padding drops from ~7x to ~1.2x of the events on
        MovieLens. Outputs come back in (session, position) order. inp (B*S, T, C_in)."""
        order = torch.argsort(lengths, descending=True)
        order = order[lengths[order] > 0]
        # one gather, then splits: a split's backward is one cat, where indexing each
        # chunk out of `inp` would scatter into a zeroed copy of all of `inp` per chunk
        ranked = inp[order]  # (sessions, T, C_in), longest first
        outs, where = [], []
        for chunk, x in zip(order.split(group), ranked.split(group)):
            longest = int(lengths[chunk[0]])
            y = self.tcn(x[:, :longest])  # (n, longest, C)
            keep = torch.arange(longest)[None, :] < lengths[chunk, None]  # (n, longest)
            outs.append(y[keep])
            where.append((chunk[:, None] * inp.shape[1] + torch.arange(longest))[keep])
        where = torch.cat(where)
        return torch.cat(outs)[torch.argsort(where)]

    def output_items(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The vectors (N, D) user embeddings are scored against, and the per-item bias
        (N,), None when the output is tied to the input table."""
        if self.item_out is None:
            return self.items.weight, None
        return self.item_out.weight, self.item_bias

    def scores(self, u: torch.Tensor) -> torch.Tensor:
        """Inner product with every item (plus its bias): (..., D) -> (..., N)."""
        vectors, bias = self.output_items()
        return u @ vectors.T if bias is None else u @ vectors.T + bias

    # ---- the contract of hiertcn/contract.py: trainer and evaluator ---------------

    def train_batches(self, sessions: Sessions, n_queues: int, sessions_per_batch: int,
                      rng: np.random.Generator, context_sessions: int = 0) -> Endless:
        """Full-width queue batches across epochs; with `context_sessions` P, the P
        earlier slots of every queue ride along for the GRU's gradient (truncated BPTT)."""
        context = context_sessions if self.gru is not None else 0
        return Endless(queue_batches(sessions, n_queues, sessions_per_batch, rng, context),
                       epoch_batches(sessions, n_queues, sessions_per_batch))

    def loss(self, batch: Batch, carry, config: LossConfig):
        """Mean next-item loss of a batch, its event count, and the carried GRU state."""
        h = self.zero_state(batch.items.shape[0]) if carry is None else carry
        u, h = self.encode(batch, h)  # (N, D)
        targets = batch.items[batch.mask]  # (N,)
        vectors, bias = self.output_items()
        return next_item_loss(u, targets, vectors, config, bias), len(targets), h

    @torch.no_grad()
    def predict_user(self, sessions: Sessions, u: int) -> np.ndarray:
        """Scores (E_u, N) for each of user u's events, all sessions in one batch."""
        emb, _ = self.encode(user_batch(sessions, u), self.zero_state(1))  # (E_u, D)
        return self.scores(emb).numpy()

    # ---- step path: the stream ---------------------------------------------------

    def initial_state(self, n: int) -> StepState:
        c = self.config
        w = self.start
        state = StepState(h=self.zero_state(n), pasts=self.tcn.empty_past(n),
                          session_sum=w.new_zeros(n, c.channels),
                          session_len=w.new_zeros(n), embedding=w.new_zeros(n, c.item_dim))
        return self.open_session(state)

    def open_session(self, state: StepState) -> StepState:
        """Clear the window and feed the start token: the embedding now predicts the
        session's first item from the long-term state alone."""
        n = state.h.shape[0]
        state.pasts = self.tcn.empty_past(n)
        state.session_sum = torch.zeros_like(state.session_sum)
        state.session_len = torch.zeros_like(state.session_len)
        return self._feed(state, self.start.expand(n, -1))

    def step(self, state: StepState, items: torch.Tensor) -> StepState:
        """Feed one clicked item per user (B,) long; returns the updated state."""
        x = self.project(self.items(items))  # (B, C)
        state.session_sum = state.session_sum + x
        state.session_len = state.session_len + 1
        return self._feed(state, x)

    def step_many(self, state: StepState, items: torch.Tensor,
                  lengths: torch.Tensor) -> tuple[StepState, torch.Tensor]:
        """Feed each user up to K clicked items in order, in one call: what `lengths[b]`
        `step` calls would do to user b. items (B, K) long, any index past a user's
        length (never read); lengths (B,) long, 0 allowed. Returns the state and the
        embedding after each item (B, K, D), zeros at the padding."""
        B, K = items.shape
        mask = torch.arange(K, device=lengths.device) < lengths[:, None]  # (B, K)
        state, emb = self.step_packed(state, items[mask], lengths)  # (N, D)
        out = emb.new_zeros(B, K, emb.shape[-1])  # (B, K, D)
        out[mask] = emb
        return state, out

    def step_packed(self, state: StepState, items: torch.Tensor,
                    lengths: torch.Tensor) -> tuple[StepState, torch.Tensor]:
        """`step_many` with the items packed user by user, oldest first: items (N,)
        long, `lengths` (B,) of them each; the embedding after each item (N, D). The
        items of a call all belong to the open session: h is the same for each."""
        if items.shape[0] == 0:
            return state, state.embedding.new_zeros(0, self.config.item_dim)
        B = lengths.shape[0]
        x = self.project(self.items(items))  # (N, C)
        user = torch.arange(B, device=lengths.device).repeat_interleave(lengths)  # (N,) users
        state.session_sum = state.session_sum.index_add(0, user, x)  # (B, C)
        state.session_len = state.session_len + lengths
        if self.gru is not None:
            x = torch.cat([x, state.h.reshape(B, -1)[user]], dim=-1)  # (N, C + L*H)
        y, state.pasts = self.tcn.step_many(x, state.pasts, lengths)  # (N, C)
        emb = self.out(y)  # (N, D)
        last = (torch.cumsum(lengths, 0) - 1).clamp(min=0)  # (B,) each user's last item
        state.embedding = torch.where((lengths > 0)[:, None], emb[last], state.embedding)
        return state, emb

    def end_session(self, state: StepState) -> StepState:
        """Roll the GRU with the session's mean item, then open a new session."""
        if self.gru is not None:
            mean = state.session_sum / state.session_len.clamp(min=1)[:, None]
            rolled = self.gru.step(mean, state.h)
            had_events = (state.session_len > 0)[:, None, None]
            state.h = torch.where(had_events, rolled, state.h)
        return self.open_session(state)

    def _feed(self, state: StepState, x: torch.Tensor) -> StepState:
        if self.gru is not None:
            x = torch.cat([x, state.h.reshape(x.shape[0], -1)], dim=-1)  # (B, C + L*H)
        y, state.pasts = self.tcn.step(x, state.pasts)
        state.embedding = self.out(y)  # (B, D)
        return state


def _session_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean projected item of each session: x (B, S, T, C), mask (B, S, T) -> (B, S, C)."""
    return x.sum(2) / mask.sum(2, keepdim=True).clamp(min=1)
