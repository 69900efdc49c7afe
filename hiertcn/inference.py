"""What the stream needs from a model export: batched step-wise inference over
per-user states stored as compact float32 bytes, top-K search with faiss, and the
session policy the model was trained under.

A user's model state is two blobs, which the stream stores in the user's one table
row next to its session meta (stream/worker/rows.py):
- `gru`: the long-term state h, (L*H,) float32, rolled once per session;
- `window`: the current session: every TCN block's cached inputs, the running sum
  and count of projected items (for the session mean fed to the GRU), and the latest
  user embedding (so an event with an unknown item can still be answered).

`StreamModel` loads an export and converts states; `BatchState` applies a
micro-batch's clicks and session ends to unpacked states with the model's step API
(`step_many`: every user's next events of its open session in one call).
"""

from __future__ import annotations

import json
from itertools import chain
from pathlib import Path

import faiss
import numpy as np
import torch

from hiertcn.accel import choose_device, index_on
from hiertcn.checkpoint import EXPORT_MODEL_FILE, SESSION_POLICY, load_hiertcn
from hiertcn.errors import CheckpointError
from hiertcn.model import HierTCN, StepState


def export_session_config(export_dir: str | Path) -> dict:
    """The session policy of an export, {"gap_s": int, "max_session_len": int}: the
    `SessionConfig` fields its training data was cut with, which the stream applies."""
    meta = _meta(Path(export_dir))
    session = meta.get("session") or {}
    if not set(SESSION_POLICY) <= set(session):
        raise CheckpointError(f"{export_dir}/meta.json records no session policy (an old "
                              f"export): export the checkpoint again with `hiertcn export`")
    return {k: session[k] for k in SESSION_POLICY}


def _meta(d: Path) -> dict:
    if not (d / "meta.json").exists():
        raise CheckpointError(f"no model export in {d}: run `hiertcn export` first")
    try:
        return json.loads((d / "meta.json").read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {d / 'meta.json'}: {err}; export again "
                              f"with `hiertcn export`") from None


class StreamModel:
    def __init__(self, model: HierTCN, item_ids: list[str], index: faiss.Index, version: str,
                 session_policy: dict | None = None, device: str = "cpu"):
        # hiertcn/accel.py: the model's tensors and the index search on one device
        self.device = choose_device(device)
        self.model = model.to(self.device).eval()
        self.item_ids = item_ids
        self.index_of = {item: i for i, item in enumerate(item_ids)}
        self._ids = np.empty(len(item_ids), dtype=object)  # for one gather per batch
        self._ids[:] = item_ids
        self.index, self.search_backend = index_on(index, self.device)
        self.version = version
        # {"gap_s", "max_session_len"} recorded in the export; None when built by hand
        self.session_policy = session_policy
        c = model.config
        self._shapes = [(p.shape[1], p.shape[2]) for p in model.tcn.empty_past(1)]
        self._gru_size = c.gru_layers * c.gru_hidden
        self._window_size = (sum(a * b for a, b in self._shapes) + c.channels + 1 + c.item_dim)

    @classmethod
    def load(cls, export_dir: str | Path, device: str = "cpu") -> "StreamModel":
        d = Path(export_dir)
        meta = _meta(d)
        model, _ = load_hiertcn(d / EXPORT_MODEL_FILE)
        index = faiss.read_index(str(d / "items.faiss"))
        return cls(model, json.loads((d / "item_ids.json").read_text()), index, meta["version"],
                   export_session_config(d), device)

    @property
    def receptive_field(self) -> int:
        return self.model.tcn.receptive_field

    # ---- state <-> bytes ---------------------------------------------------------

    def pack(self, state: StepState) -> list[tuple[bytes, bytes]]:
        """Per user (gru blob, window blob)."""
        n = state.h.shape[0]
        gru = state.h.reshape(n, -1).cpu().numpy()
        window = torch.cat([p.reshape(n, -1) for p in state.pasts] + [
            state.session_sum, state.session_len[:, None], state.embedding], dim=1).cpu().numpy()
        return [(gru[i].tobytes(), window[i].tobytes()) for i in range(n)]

    @property
    def blob_sizes(self) -> tuple[int, int]:
        """Bytes of one user's (gru, window) blobs: what `unpack` accepts."""
        return 4 * self._gru_size, 4 * self._window_size  # float32

    def unpack(self, blobs: list[tuple[bytes, bytes]]) -> StepState:
        c = self.model.config
        gru = np.stack([np.frombuffer(g, np.float32) for g, _ in blobs])  # (B, L*H)
        window = torch.from_numpy(np.stack([np.frombuffer(w, np.float32) for _, w in blobs]))
        window = window.to(self.device)  # one copy per batch on a GPU
        if gru.shape[1] != self._gru_size or window.shape[1] != self._window_size:
            raise CheckpointError("stored state does not fit this model's shapes")
        pasts, at = [], 0
        for steps, width in self._shapes:
            pasts.append(window[:, at:at + steps * width].reshape(-1, steps, width))
            at += steps * width
        session_sum = window[:, at:at + c.channels]
        at += c.channels
        h = torch.from_numpy(gru.copy()).to(self.device)
        return StepState(h=h.reshape(-1, c.gru_layers, c.gru_hidden),
                         pasts=pasts, session_sum=session_sum, session_len=window[:, at],
                         embedding=window[:, at + 1:])

    # ---- batched model calls -----------------------------------------------------

    @torch.no_grad()
    def fresh(self, n: int) -> list[tuple[bytes, bytes]]:
        return self.pack(self.model.initial_state(n))

    @torch.no_grad()
    def rebuild(self, histories: list[list[list[int]]]) -> list[tuple[bytes, bytes]]:
        """Per user, the state this model reaches from a fresh one over the user's
        sessions (item indices, oldest first; the last is the open session, maybe
        empty): the GRU rolled once per closed session with its mean projected item,
        then the open session fed to the TCN; as the step API live would, for every
        user of the batch at once. A closed session with no items rolls nothing."""
        m = self.model
        state = m.initial_state(len(histories))
        if m.gru is not None and any(len(h) > 1 for h in histories):
            means, valid = self._session_means([h[:-1] for h in histories])  # (B, S, C)
            _, state.h = m.gru(means, state.h, torch.zeros_like(valid), valid)
            state = m.open_session(state)  # the start token again, now with h
        lengths = torch.tensor([len(h[-1]) for h in histories], device=self.device)
        items = torch.tensor([i for h in histories for i in h[-1]], dtype=torch.long,
                             device=self.device)
        state, _ = m.step_packed(state, items, lengths)
        return self.pack(state)

    def _session_means(self, closed: list[list[list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each closed session's mean projected item (B, S, C), zeros past a user's
        last session, and which are real sessions with items (B, S) bool."""
        B, S = len(closed), max(map(len, closed))
        slot = [b * S + s for b, sessions in enumerate(closed)
                for s, session in enumerate(sessions) for _ in session]
        items = [i for sessions in closed for session in sessions for i in session]
        x = self.model.project(self.model.items(self._long(items)))  # (N, C)
        at = self._long(slot)
        sums = x.new_zeros(B * S, x.shape[1]).index_add(0, at, x)  # (B*S, C)
        counts = x.new_zeros(B * S).index_add(0, at, torch.ones_like(at, dtype=x.dtype))
        means = sums / counts.clamp(min=1)[:, None]
        return means.reshape(B, S, -1), (counts > 0).reshape(B, S)

    def _long(self, values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=self.device)

    def embeddings(self, blobs: list[tuple[bytes, bytes]]) -> np.ndarray:
        """The latest embedding stored in each window blob (B, D), no model call."""
        d = self.model.config.item_dim
        return np.stack([np.frombuffer(w, np.float32)[-d:] for _, w in blobs])

    def top_k(self, embeddings: np.ndarray, k: int,
              exclude: list[set[int]] | None = None) -> list["Ranked"]:
        """One faiss search for the whole batch; asks for k + |exclude| so that
        dropping excluded items still leaves k. Per row a `Ranked` (item ids and float
        scores, best first, faiss's order; at most k, fewer when the index runs out)."""
        extra = max((len(e) for e in exclude), default=0) if exclude else 0
        if self.model.config.untied_output:  # the index rows are [v; b]: search [u; 1]
            embeddings = np.hstack([embeddings, np.ones((len(embeddings), 1), np.float32)])
        scores, idx = self.index.search(np.ascontiguousarray(embeddings, np.float32),
                                        min(k + extra, self.index.ntotal))
        # ids bound by the rows, not by ntotal: a live index (hiertcn/live_items.py)
        # has rows retired from it, so its ids can pass its size
        return ranked_rows(idx, scores, k, exclude, self._ids, len(self._ids))


class Ranked:
    """One row of `StreamModel.top_k`: two parallel lists, `item_ids` (str) and `scores`
    (float), best first. Iterates as (item_id, score) pairs, so it reads as the list of
    pairs it replaces, without a tuple made per item on the hot path."""

    __slots__ = ("item_ids", "scores")

    def __init__(self, item_ids: list[str], scores: list[float]):
        self.item_ids = item_ids
        self.scores = scores

    def __len__(self) -> int:
        return len(self.item_ids)

    def __iter__(self):
        return zip(self.item_ids, self.scores)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Ranked(self.item_ids[i], self.scores[i])
        return self.item_ids[i], self.scores[i]

    def __eq__(self, other) -> bool:
        if isinstance(other, Ranked):
            return self.item_ids == other.item_ids and self.scores == other.scores
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"Ranked({list(self)!r})"


# A dense (rows, ntotal + 1) exclusion mask up to this many cells (16 MB of bools: 200
# rows of a catalogue of 80,000 items); above it, a sorted search over (row, item) keys.
_DENSE_MASK_CELLS = 1 << 24


def ranked_rows(idx: np.ndarray, scores: np.ndarray, k: int, exclude, ids: np.ndarray,
                ntotal: int) -> list[Ranked]:
    """Per row of a faiss answer (`idx`, `scores`: (n, m)), its first k hits in faiss's
    order that are neither -1 (no result) nor in that row's `exclude` set, as a `Ranked`
    (`ids`: the object array of item ids by index). Vectorised: one mask over the
    (n, m) matrix, a cumulative count for the first k kept per row, one gather."""
    keep = idx >= 0
    if exclude:
        keep &= ~_excluded(idx, exclude, ntotal)
    keep &= np.cumsum(keep, axis=1) <= k  # the first k kept of each row
    counts = keep.sum(axis=1).tolist()
    flat_ids = ids[idx[keep]].tolist()
    flat_scores = scores[keep].tolist()  # float32 -> the same values as Python floats
    out, at = [], 0
    for c in counts:
        out.append(Ranked(flat_ids[at:at + c], flat_scores[at:at + c]))
        at += c
    return out


def _excluded(idx: np.ndarray, exclude, ntotal: int) -> np.ndarray:
    """(n, m) bool: idx[r, j] is in exclude[r]."""
    n = len(idx)
    lengths = np.fromiter(map(len, exclude), np.int64, count=n)
    items = np.fromiter(chain.from_iterable(exclude), np.int64, count=int(lengths.sum()))
    rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
    valid = (items >= 0) & (items < ntotal)  # an id the index lacks drops nothing
    rows, items = rows[valid], items[valid]
    if not len(items):
        return np.zeros(idx.shape, bool)
    if n * (ntotal + 1) <= _DENSE_MASK_CELLS:
        mask = np.zeros((n, ntotal + 1), bool)  # -1 results read column ntotal
        mask[rows, items] = True
        return mask[np.arange(n)[:, None], idx]
    # a large catalogue: (row, item) keys, looked up in the sorted excluded keys
    stride = ntotal + 1
    excluded = np.sort(rows * stride + items)
    keys = np.arange(n, dtype=np.int64)[:, None] * stride + idx
    pos = np.minimum(np.searchsorted(excluded, keys), len(excluded) - 1)
    return excluded[pos] == keys


class BatchState:
    """The unpacked states of the users in one micro-batch, one row per user. Each model
    call (`step_many`, `end_sessions`, `reset`) indexes rows of these tensors instead of
    unpacking and packing bytes each time, and bytes are made once at the end.
    """

    def __init__(self, model: StreamModel, blobs: list[tuple[bytes, bytes]]):
        self.model = model
        self.state = model.unpack(blobs)

    @torch.no_grad()
    def step(self, rows: list[int], items: list[int]) -> None:
        idx = self._index(rows)
        sub = self.model.model.step(_rows(self.state, idx), self._index(items))
        _assign(self.state, idx, sub)

    @torch.no_grad()
    def step_many(self, rows: list[int], items: list[list[int]]) -> np.ndarray:
        """Feed each row its items in order (lists of any length, 0 allowed), all rows
        in one model call; the embedding after each item (N, D), row by row."""
        lengths = self._index([len(its) for its in items])  # (B,)
        packed = self._index([i for its in items for i in its])  # (N,)
        idx = self._index(rows)
        sub, emb = self.model.model.step_packed(_rows(self.state, idx), packed, lengths)
        _assign(self.state, idx, sub)
        return emb.cpu().numpy()  # (N, D)

    @torch.no_grad()
    def end_sessions(self, rows: list[int]) -> None:
        idx = self._index(rows)
        _assign(self.state, idx, self.model.model.end_session(_rows(self.state, idx)))

    @torch.no_grad()
    def reset(self, rows: list[int]) -> None:
        """Back to the model's initial state (an expired user starting over)."""
        _assign(self.state, self._index(rows), self.model.model.initial_state(len(rows)))

    def embedding(self, row: int) -> np.ndarray:
        return self.state.embedding[row].cpu().numpy().copy()  # (D,)

    def embeddings(self, rows: list[int]) -> np.ndarray:
        """The current embedding of each row (n, D), a copy."""
        return self.state.embedding[self._index(rows)].cpu().numpy()

    def blobs(self) -> list[tuple[bytes, bytes]]:
        return self.model.pack(self.state)

    def _index(self, values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=self.model.device)


def _rows(state: StepState, idx: torch.Tensor) -> StepState:
    return StepState(h=state.h[idx], pasts=[p[idx] for p in state.pasts],
                     session_sum=state.session_sum[idx], session_len=state.session_len[idx],
                     embedding=state.embedding[idx])


def _assign(state: StepState, idx: torch.Tensor, sub: StepState) -> None:
    state.h[idx] = sub.h
    for past, new in zip(state.pasts, sub.pasts):
        past[idx] = new
    state.session_sum[idx] = sub.session_sum
    state.session_len[idx] = sub.session_len
    state.embedding[idx] = sub.embedding
