"""Cut a user's interaction log into sessions, stored as compact flat arrays.

Policies (stated once, tested in tests/test_sessions.py; `gap_s` and `max_session_len`
are recorded in every checkpoint and export, for the stream to apply the same):
- order: events are sorted by (user, timestamp) with a *stable* sort, so events with
  equal timestamps keep their order in the input file;
- gap: a new session starts when the time since the user's previous event is
  strictly greater than `gap_s`; a gap of exactly `gap_s` continues the session;
- repeats: a click on the same item as the previous click in the same session is
  dropped when `drop_repeats` (a re-click is not a new interest, and it would teach
  the model to recommend what the user is looking at);
- length: a session longer than `max_session_len` events is cut into consecutive
  sessions of at most that length (the stream applies the same rule), which bounds
  training tensors;
- filters, applied in this order, once: items seen fewer than `min_item_count` times
  are dropped (too rare to learn a vector for), then users with fewer than
  `min_sessions_per_user` sessions are dropped (with one session there is no
  long-term signal for the high level to learn from).
  The data cache (`hiertcn.data.cache.load_splits`) sessionises without them and
  applies the same two filters after the split, fitted on the training part only
  (`hiertcn.data.filters`).
"""

from __future__ import annotations

from dataclasses import dataclass, asdict

import numpy as np
import pandas as pd

from hiertcn.errors import ConfigError


@dataclass(frozen=True)
class SessionConfig:
    gap_s: int = 1800  # inactivity gap that ends a session (released code: 30 min)
    max_session_len: int = 100  # longer sessions are cut; bounds tensors in training
    drop_repeats: bool = True  # drop a click on the item clicked just before
    min_item_count: int = 5  # rarer items are dropped (GRU4Rec's preprocessing uses 5)
    min_sessions_per_user: int = 2  # users need >= 2 sessions for a long-term signal

    def __post_init__(self):
        for name, low in (("gap_s", 1), ("max_session_len", 1), ("min_item_count", 1),
                          ("min_sessions_per_user", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be >= {low}, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Sessions:
    """All events of a set of users, flat: user u owns sessions
    `user_offsets[u]:user_offsets[u+1]`, session s owns events
    `session_offsets[s]:session_offsets[s+1]`. `items` are indices into `item_ids`.
    `scored` marks the sessions an evaluation scores (all, except in a time split
    where earlier sessions only warm the user's state up)."""

    items: np.ndarray  # (E,) int32
    ts: np.ndarray  # (E,) int64, Unix seconds
    session_offsets: np.ndarray  # (n_sessions + 1,) int64
    user_offsets: np.ndarray  # (n_users + 1,) int64
    user_ids: np.ndarray  # (n_users,) str
    item_ids: np.ndarray  # (n_items,) str, shared by every split of one data set
    scored: np.ndarray  # (n_sessions,) bool

    @property
    def n_users(self) -> int:
        return len(self.user_offsets) - 1

    @property
    def n_sessions(self) -> int:
        return len(self.session_offsets) - 1

    @property
    def n_events(self) -> int:
        return len(self.items)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def session(self, s: int) -> np.ndarray:
        return self.items[self.session_offsets[s]:self.session_offsets[s + 1]]

    def user_sessions(self, u: int) -> range:
        return range(int(self.user_offsets[u]), int(self.user_offsets[u + 1]))

    def session_lengths(self) -> np.ndarray:
        return np.diff(self.session_offsets)

    def select_users(self, users: np.ndarray, scored: np.ndarray | None = None) -> "Sessions":
        """A new Sessions holding only `users` (indices), in that order."""
        sess = np.concatenate([np.arange(self.user_offsets[u], self.user_offsets[u + 1])
                               for u in users]) if len(users) else np.zeros(0, np.int64)
        lengths = self.session_lengths()[sess]
        ev = np.concatenate([np.arange(self.session_offsets[s], self.session_offsets[s + 1])
                             for s in sess]) if len(sess) else np.zeros(0, np.int64)
        per_user = np.diff(self.user_offsets)[users]
        return Sessions(
            items=np.ascontiguousarray(self.items[ev]),
            ts=np.ascontiguousarray(self.ts[ev]),
            session_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            user_offsets=np.concatenate([[0], np.cumsum(per_user)]).astype(np.int64),
            user_ids=self.user_ids[users],
            item_ids=self.item_ids,
            scored=self.scored[sess] if scored is None else scored,
        )

    def summary(self) -> str:
        lengths = self.session_lengths()
        return (f"{self.n_users} users, {self.n_sessions} sessions, {self.n_events} events, "
                f"{self.n_items} items, session length mean {lengths.mean():.1f} "
                f"max {lengths.max() if len(lengths) else 0}")


def sessionize(frame: pd.DataFrame, config: SessionConfig = SessionConfig()) -> Sessions:
    """`frame` has columns user, item, ts (Unix seconds), as every loader returns."""
    frame = _filter_items(frame, config.min_item_count)
    frame = frame.sort_values(["user", "ts"], kind="stable").reset_index(drop=True)
    users = frame["user"].to_numpy()
    ts = frame["ts"].to_numpy(np.int64)
    items = frame["item"].to_numpy()
    new_user = np.r_[True, users[1:] != users[:-1]]
    new_session = new_user | np.r_[True, (ts[1:] - ts[:-1]) > config.gap_s]
    if config.drop_repeats:
        repeat = ~new_session & np.r_[False, items[1:] == items[:-1]]
        keep = ~repeat
        users, ts, items = users[keep], ts[keep], items[keep]
        new_user, new_session = new_user[keep], new_session[keep]
    new_session = _cut_long_sessions(new_session, config.max_session_len)
    sessions = _to_sessions(users, items, ts, new_user, new_session)
    counts = np.diff(sessions.user_offsets)
    return sessions.select_users(np.flatnonzero(counts >= config.min_sessions_per_user))


def _filter_items(frame: pd.DataFrame, min_count: int) -> pd.DataFrame:
    counts = frame["item"].value_counts()
    return frame[frame["item"].isin(counts.index[counts >= min_count])]


def _cut_long_sessions(new_session: np.ndarray, max_len: int) -> np.ndarray:
    """Mark a session start every `max_len` events inside a long session."""
    start_idx = np.flatnonzero(new_session)
    session_id = np.cumsum(new_session) - 1
    position = np.arange(len(new_session)) - start_idx[session_id]
    return new_session | ((position > 0) & (position % max_len == 0))


def _to_sessions(users, items, ts, new_user, new_session) -> Sessions:
    item_ids, item_idx = np.unique(items.astype(str), return_inverse=True)
    session_starts = np.flatnonzero(new_session)
    session_user = np.cumsum(new_user)[session_starts] - 1
    n_users = int(new_user.sum())
    sessions_per_user = np.bincount(session_user, minlength=n_users)
    return Sessions(
        items=item_idx.astype(np.int32),
        ts=ts.astype(np.int64),
        session_offsets=np.r_[session_starts, len(items)].astype(np.int64),
        user_offsets=np.r_[0, np.cumsum(sessions_per_user)].astype(np.int64),
        user_ids=users[new_user].astype(str),
        item_ids=item_ids,
        scored=np.ones(len(session_starts), bool),
    )
