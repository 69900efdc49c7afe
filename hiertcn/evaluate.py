"""Next-item evaluation: every scored event of every user, ranked against all items.

A recommender is anything with `predict_user(sessions, u) -> (E_u, n_items)` scores
(`hiertcn.contract.Recommender`), where row i predicts the user's i-th event from the
events before it only (the first event of a session from the long-term state alone). Rows of unscored sessions (the
warm-up history of a time split) are computed but not counted.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from hiertcn.contract import Recommender
from hiertcn.data.sessions import Sessions
from hiertcn.metrics import metrics_from_ranks, ranks


def user_events(sessions: Sessions, u: int) -> tuple[np.ndarray, np.ndarray]:
    """The user's event items (E_u,) and whether each one is scored (E_u,)."""
    s = sessions.user_sessions(u)
    lo, hi = sessions.session_offsets[s.start], sessions.session_offsets[s.stop]
    lengths = sessions.session_lengths()[s.start:s.stop]
    return sessions.items[lo:hi], np.repeat(sessions.scored[s.start:s.stop], lengths)


def evaluate(model: Recommender, sessions: Sessions, progress: bool = True,
             desc: str = "evaluate") -> dict[str, float]:
    all_ranks = user_ranks(model, sessions, progress, desc)
    result = metrics_from_ranks(np.concatenate(all_ranks))
    result["events"] = int(sum(len(r) for r in all_ranks))
    return result


def user_ranks(model: Recommender, sessions: Sessions, progress: bool = False,
               desc: str = "evaluate", max_seconds: float | None = None) -> list[np.ndarray]:
    """Ranks of each user's scored events, one array per user with any, in user
    order (the same users for every model: which events are scored is the data's).
    `max_seconds`: stop after the user that passes it (a timing probe)."""
    out, t0 = [], time.perf_counter()
    for u in tqdm(range(sessions.n_users), desc=desc, disable=not progress, leave=False):
        targets, scored = user_events(sessions, u)
        if not scored.any():
            continue
        scores = model.predict_user(sessions, u)  # (E_u, n_items)
        out.append(ranks(np.asarray(scores)[scored], targets[scored]))
        if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
            break
    return out
