"""Train / validation / test splits.

- by user (the paper's protocol): users are shuffled with a seed and cut 80/10/10,
  so test users are never seen in training; every session of a held-out user is
  scored, the first from an empty long-term state.
- by time: sessions starting after the last `test_frac` (and, before it, `val_frac`)
  of the time range are held out; held-out users keep their earlier sessions as
  warm-up history, which rolls their long-term state but is not scored.

Validation is for tuning and early stopping; only `hiertcn evaluate` reads test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hiertcn.data.sessions import Sessions
from hiertcn.errors import ConfigError

SPLITS = ("user", "time")


@dataclass(frozen=True)
class SplitConfig:
    kind: str = "user"  # "user" (paper) or "time"
    val_frac: float = 0.1
    test_frac: float = 0.1
    seed: int = 0  # fixes which users land where (user split)

    def __post_init__(self):
        if self.kind not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {self.kind!r}")
        if not (0 < self.val_frac < 1 and 0 < self.test_frac < 1
                and self.val_frac + self.test_frac < 1):
            raise ConfigError("val_frac and test_frac must be in (0, 1) and sum below 1")

    def to_dict(self) -> dict:
        return asdict(self)


def split(sessions: Sessions, config: SplitConfig) -> dict[str, Sessions]:
    if config.kind == "user":
        return split_by_user(sessions, config)
    return split_by_time(sessions, config)


def split_by_user(sessions: Sessions, config: SplitConfig) -> dict[str, Sessions]:
    order = np.random.default_rng(config.seed).permutation(sessions.n_users)
    n_test = max(1, round(config.test_frac * sessions.n_users))
    n_val = max(1, round(config.val_frac * sessions.n_users))
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
             "train": order[n_test + n_val:]}
    return {name: sessions.select_users(np.sort(users)) for name, users in parts.items()}


def split_by_time(sessions: Sessions, config: SplitConfig) -> dict[str, Sessions]:
    starts = sessions.ts[sessions.session_offsets[:-1]]  # (n_sessions,) start times
    t_val, t_test = np.quantile(starts, [1 - config.val_frac - config.test_frac,
                                         1 - config.test_frac])
    session_user = np.repeat(np.arange(sessions.n_users), np.diff(sessions.user_offsets))
    out = {}
    for name, lo, hi in (("train", -np.inf, t_val), ("val", t_val, t_test),
                         ("test", t_test, np.inf)):
        in_part = (starts >= lo) & (starts < hi)
        if name == "train":
            # train keeps only what happened before t_val
            out[name] = _select_sessions(sessions, starts < hi, starts < hi)
            continue
        users = np.unique(session_user[in_part])
        # history before the part warms the state up; sessions after it are dropped
        keep = np.isin(session_user, users) & (starts < hi)
        out[name] = _select_sessions(sessions, keep, in_part)
    return out


def _select_sessions(sessions: Sessions, keep: np.ndarray, scored: np.ndarray) -> Sessions:
    """Keep some sessions (bool per session), marking which of them are scored."""
    session_user = np.repeat(np.arange(sessions.n_users), np.diff(sessions.user_offsets))
    users = np.unique(session_user[keep])
    full = sessions.select_users(users)
    kept_user = np.repeat(np.arange(len(users)), np.diff(full.user_offsets))
    mask = keep[np.isin(session_user, users)]
    per_user = np.bincount(kept_user[mask], minlength=len(users))
    lengths = full.session_lengths()[mask]
    ev = np.repeat(mask, full.session_lengths())
    return type(sessions)(
        items=full.items[ev], ts=full.ts[ev],
        session_offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        user_offsets=np.r_[0, np.cumsum(per_user)].astype(np.int64),
        user_ids=full.user_ids, item_ids=full.item_ids,
        scored=scored[np.isin(session_user, users)][mask])
