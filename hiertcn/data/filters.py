"""The rating-count and session filters, fitted on the training part only.

`load_splits` sessionises the whole log without filters, splits it (by user or by
time), and only then filters, so nothing about validation or test users decides what
the model may learn or is scored on:

- items: the catalogue is the items with at least `min_item_count` training events
  (after repeat removal); events of other items are dropped from every part (a test
  user's click on an item no training user clicked cannot be predicted by any model,
  and counting test clicks to admit an item would leak the test log into training);
- repeats: dropping an event can make two clicks on one item adjacent; with
  `drop_repeats` the second goes, as `sessionize` would have done;
- sessions left empty are dropped; then users with fewer than `min_sessions_per_user`
  sessions, part by part: a per-user rule that looks at that user's own sessions only
  (a test user's count is no statistic of other users).

Items keep their training order; every part shares the one catalogue.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hiertcn.data.sessions import SessionConfig, Sessions

# sessionize with these settings keeps every item and every user: the filters run later
UNFILTERED = {"min_item_count": 1, "min_sessions_per_user": 1}


def unfiltered(config: SessionConfig) -> SessionConfig:
    """The same gap, length cut and repeat policy, without the two filters."""
    return replace(config, **UNFILTERED)


def fit_items(train: Sessions, min_count: int) -> np.ndarray:
    """(n_items,) bool: the items with at least `min_count` events in `train`."""
    return np.bincount(train.items, minlength=train.n_items) >= min_count


def filter_parts(parts: dict[str, Sessions], config: SessionConfig) -> dict[str, Sessions]:
    """Every part filtered with the item catalogue fitted on parts["train"]."""
    keep = fit_items(parts["train"], config.min_item_count)
    return {name: apply(part, keep, config) for name, part in parts.items()}


def apply(sessions: Sessions, keep_items: np.ndarray, config: SessionConfig) -> Sessions:
    """Drop events of items not in `keep_items`, then new repeats, empty sessions and
    users with too few sessions; re-index items to the kept catalogue."""
    lengths = sessions.session_lengths()
    ev_session = np.repeat(np.arange(sessions.n_sessions), lengths)  # (E,)
    items = np.asarray(sessions.items)
    keep = keep_items[items]
    if config.drop_repeats:
        keep = _drop_new_repeats(keep, items, ev_session)
    new_len = np.bincount(ev_session[keep], minlength=sessions.n_sessions)  # (n_sessions,)
    live = new_len > 0
    session_user = np.repeat(np.arange(sessions.n_users), np.diff(sessions.user_offsets))
    per_user = np.bincount(session_user[live], minlength=sessions.n_users)
    users = np.flatnonzero(per_user >= config.min_sessions_per_user)
    kept_user = np.isin(session_user, users)
    sess = live & kept_user  # sessions that stay, in order
    ev = keep & sess[ev_session]  # events that stay, in order
    new_index = np.cumsum(keep_items) - 1  # old item -> index in the kept catalogue
    return Sessions(
        items=new_index[items[ev]].astype(np.int32),
        ts=np.ascontiguousarray(np.asarray(sessions.ts)[ev]),
        session_offsets=np.r_[0, np.cumsum(new_len[sess])].astype(np.int64),
        user_offsets=np.r_[0, np.cumsum(per_user[users])].astype(np.int64),
        user_ids=sessions.user_ids[users],
        item_ids=sessions.item_ids[keep_items],
        scored=np.asarray(sessions.scored)[sess],
    )


def _drop_new_repeats(keep: np.ndarray, items: np.ndarray, ev_session: np.ndarray) -> np.ndarray:
    """`keep` less every kept event whose previous kept event in the same session is
    the same item. One pass removes every such run: the comparison is against the
    previous *kept* event, and runs are collapsed to their first click."""
    idx = np.flatnonzero(keep)
    same = np.r_[False, (items[idx][1:] == items[idx][:-1])
                 & (ev_session[idx][1:] == ev_session[idx][:-1])]
    out = keep.copy()
    out[idx[same]] = False
    return out
