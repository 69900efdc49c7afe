"""Train / validation / test splits.

- by user (the paper's protocol): users are shuffled with a seed and cut 80/10/10
  (`val_frac`, `test_frac`), so test users are never seen in training; every session
  of a held-out user is scored, the first from an empty long-term state;
- K-fold by user (`folds` = K > 1, `fold` = k): the shuffled users are cut into K
  near-equal folds and fold k is the test part, so over k = 0..K-1 every user is a
  test user exactly once; validation is `val_frac` of all users, drawn (seeded by
  seed and k) from the other K-1 folds, and the rest trains;
- by time: sessions starting after the last `test_frac` (and, before it, `val_frac`)
  of the time range are held out; held-out users keep their earlier sessions as
  warm-up history, which rolls their long-term state but is not scored.

Validation is for tuning and early stopping; only `hiertcn evaluate` (and the accuracy
benchmark's final scoring) reads test. Splits are drawn over every user of the log,
before any filter: the filters are fitted on the training part afterwards
(hiertcn.data.filters), so the held-out parts hold fewer users than their share.
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
    folds: int = 1  # K > 1: K-fold over users, test = fold `fold` (test_frac unused)
    fold: int = 0  # which fold is the test part, 0..folds-1

    def __post_init__(self):
        if self.kind not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {self.kind!r}")
        if not (0 < self.val_frac < 1 and 0 < self.test_frac < 1
                and self.val_frac + self.test_frac < 1):
            raise ConfigError("val_frac and test_frac must be in (0, 1) and sum below 1")
        if self.folds < 1 or not 0 <= self.fold < self.folds:
            raise ConfigError(f"folds must be >= 1 and fold in 0..folds-1, got fold "
                              f"{self.fold} of {self.folds}")
        if self.folds > 1 and (self.kind != "user" or self.val_frac + 1 / self.folds >= 1):
            raise ConfigError("folds > 1 needs the user split and val_frac + 1/folds below 1")

    def to_dict(self) -> dict:
        return asdict(self)


def split(sessions: Sessions, config: SplitConfig) -> dict[str, Sessions]:
    if config.kind == "user":
        return split_by_user(sessions, config)
    return split_by_time(sessions, config)


def split_by_user(sessions: Sessions, config: SplitConfig) -> dict[str, Sessions]:
    parts = user_parts(sessions.n_users, config)
    return {name: sessions.select_users(users) for name, users in parts.items()}


def user_parts(n_users: int, config: SplitConfig) -> dict[str, np.ndarray]:
    """User indices (sorted) of "train", "val" and "test" under a user split."""
    order = np.random.default_rng(config.seed).permutation(n_users)
    n_val = max(1, round(config.val_frac * n_users))
    if config.folds == 1:
        n_test = max(1, round(config.test_frac * n_users))
        test, rest = order[:n_test], order[n_test:]
    else:
        test = np.array_split(order, config.folds)[config.fold]
        rest = np.setdiff1d(order, test)
        rest = np.random.default_rng([config.seed, config.fold]).permutation(rest)
    parts = {"test": test, "val": rest[:n_val], "train": rest[n_val:]}
    return {name: np.sort(users) for name, users in parts.items()}


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
