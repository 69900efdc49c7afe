"""Most-popular baseline: every event of every user gets the same ranking, by how
often each item was clicked in training. A floor any personalised model must clear."""

from __future__ import annotations

import numpy as np

from hiertcn.data.sessions import Sessions


def item_counts(train: Sessions) -> np.ndarray:
    """(n_items,) number of training events per item; clicks, not sessions, so an item
    clicked twice in a session counts twice, as in GRU4Rec's POP baseline."""
    return np.bincount(train.items, minlength=train.n_items)


def user_n_events(sessions: Sessions, u: int) -> int:
    s = sessions.user_sessions(u)
    return int(sessions.session_offsets[s.stop] - sessions.session_offsets[s.start])


class MostPopular:
    def __init__(self):
        self.scores: np.ndarray | None = None  # (n_items,) float32 training counts

    def fit(self, train: Sessions) -> "MostPopular":
        # float32 holds counts exactly up to 2**24, far above any item's click count here
        self.scores = item_counts(train).astype(np.float32)
        return self

    def predict_user(self, sessions: Sessions, u: int) -> np.ndarray:
        if self.scores is None:
            raise RuntimeError("MostPopular.predict_user called before fit")
        if sessions.n_items != len(self.scores):
            raise ValueError(f"sessions have {sessions.n_items} items, fit saw {len(self.scores)}")
        # a read-only view: no (E_u, n_items) copy of one repeated row
        return np.broadcast_to(self.scores, (user_n_events(sessions, u), len(self.scores)))
