"""Item-kNN ("item_knn"): score the next item by its item-to-item similarity to the
items clicked so far. Not session-kNN: that one (SKNN, V-SKNN) compares whole
sessions, see `hiertcn.baselines.session_knn`.

The item-kNN baseline of GRU4Rec (Hidasi et al., 2016) and of Ludewig & Jannach's
evaluation of session-based recommenders, extended from "last item only" to a weighted
sum over the session prefix:

    sim(i, j) = cooc(i, j) / ((cnt(i) + reg)^alpha * (cnt(j) + reg)^(1 - alpha))

cooc(i, j) = number of training sessions holding both i and j, cnt(i) = number holding
i; alpha = 0.5, reg = 0 is cosine on binary session vectors (GRU4Rec uses reg = 20).
Only the `neighbors` most similar items of each item are kept.

Storage: the top-k lists are two padded (n_items, k) arrays (item, sim) rather than a
dense n_items^2 matrix: 50k items x k=100 is 40 MB where dense float32 is 10 GB, and
scipy is not a dependency. Padding slots point at the item itself with sim 0; an item
is never its own neighbour, so a padded slot can never overwrite a real one.

Fallbacks, per row, in order: the current session's earlier items; for the first event
of a session, all items of the user's previous session; for the user's first event,
popularity. Popularity also orders the items that kNN scores 0: they get a score below
a lower bound on any positive kNN score, so it breaks ties among them (which the
pessimistic tie policy of hiertcn.metrics would otherwise rank last) and never outranks
an item kNN has an opinion about; positive scores are left untouched.
"""

from __future__ import annotations

import numpy as np

from hiertcn.baselines.popular import item_counts
from hiertcn.data.sessions import Sessions
from hiertcn.errors import ConfigError

WEIGHTINGS = ("linear", "uniform", "last")
_MAX_PAIRS_PER_CHUNK = 4_000_000  # bounds fit memory: ~100 MB of int64 temporaries


def session_item_sets(train: Sessions) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items of each session: (sizes (n_sessions,), items concatenated)."""
    session_of_event = np.repeat(np.arange(train.n_sessions), train.session_lengths())
    keys = np.unique(session_of_event.astype(np.int64) * train.n_items + train.items)
    sizes = np.bincount(keys // train.n_items, minlength=train.n_sessions)
    return sizes, (keys % train.n_items).astype(np.int64)


def pairs_within_sessions(items: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (a, b), a != b, of distinct items that share a session.
    `items` holds the sessions' item sets back to back, `sizes` their lengths."""
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)  # per element: its session's start
    reps = np.repeat(sizes, sizes)  # per element: how many partners (incl. itself)
    left = np.repeat(np.arange(len(items)), reps)
    offset = np.arange(len(left)) - np.repeat(np.cumsum(reps) - reps, reps)
    right = np.repeat(starts, reps) + offset
    keep = left != right
    return items[left[keep]], items[right[keep]]


def cooccurrence(sizes: np.ndarray, items: np.ndarray, n_items: int):
    """(a, b, count) for every ordered item pair that co-occurs in some session.
    Sessions are processed in chunks so the pair arrays (sum of size^2) stay bounded."""
    chunk_of_session = np.cumsum(sizes.astype(np.int64) ** 2) // _MAX_PAIRS_PER_CHUNK
    bounds = np.r_[0, np.cumsum(sizes)]
    keys, counts = [], []
    for c in np.unique(chunk_of_session):
        s = np.flatnonzero(chunk_of_session == c)
        a, b = pairs_within_sessions(items[bounds[s[0]]:bounds[s[-1] + 1]], sizes[s])
        k, n = np.unique(a * n_items + b, return_counts=True)
        keys.append(k)
        counts.append(n)
    if not keys:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    uniq, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    total = np.bincount(inverse, weights=np.concatenate(counts)).astype(np.int64)
    return uniq // n_items, uniq % n_items, total


def top_k_neighbors(a, b, sim, n_items: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded (n_items, width) neighbour items and sims, most similar first; width is
    min(k, largest neighbourhood) so sparse data does not pay for k columns."""
    order = np.lexsort((b, -sim, a))  # by item, then sim descending, then id (deterministic)
    a, b, sim = a[order], b[order], sim[order]
    rank = np.arange(len(a)) - np.searchsorted(a, a, side="left")
    keep = rank < k
    width = int(rank[keep].max()) + 1 if keep.any() else 1
    nbr_items = np.repeat(np.arange(n_items, dtype=np.int32)[:, None], width, axis=1)
    nbr_sims = np.zeros((n_items, width), np.float32)
    nbr_items[a[keep], rank[keep]] = b[keep]
    nbr_sims[a[keep], rank[keep]] = sim[keep]
    return nbr_items, nbr_sims


def cumsum_rows(rows: np.ndarray) -> None:
    """In place rows[k] += rows[k - 1]: a Python loop of whole-row adds, because
    np.cumsum(axis=0) walks a C-order array column-wise and is ~7x slower here."""
    for k in range(1, len(rows)):
        np.add(rows[k - 1], rows[k], out=rows[k])


class ItemKNN:
    """Item-to-item kNN over the session prefix.

    `weighting` of the session's earlier items when scoring the next one:
    "linear" (item at position p of a prefix of length n weighs p/n, later clicks count
    more), "uniform" (plain sum), "last" (only the last click: GRU4Rec's item-kNN)."""

    name = "item_knn"

    def __init__(self, neighbors: int = 100, alpha: float = 0.5, reg: float = 0.0,
                 weighting: str = "linear"):
        if neighbors < 1:
            raise ConfigError(f"neighbors must be >= 1, got {neighbors}")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
        if reg < 0:
            raise ConfigError(f"reg must be >= 0, got {reg}")
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.neighbors, self.alpha, self.reg, self.weighting = neighbors, alpha, reg, weighting
        self.nbr_items: np.ndarray | None = None  # (n_items, width) int32
        self.nbr_sims: np.ndarray | None = None  # (n_items, width) float32
        self.popularity: np.ndarray | None = None  # (n_items,) float32, max 1
        self.min_sim = 1.0  # smallest positive kept similarity, bounds positive scores

    def fit(self, train: Sessions) -> "ItemKNN":
        sizes, items = session_item_sets(train)
        a, b, cooc = cooccurrence(sizes, items, train.n_items)
        cnt = np.bincount(items, minlength=train.n_items).astype(np.float64) + self.reg
        sim = cooc / (cnt[a] ** self.alpha * cnt[b] ** (1.0 - self.alpha))
        self.nbr_items, self.nbr_sims = top_k_neighbors(a, b, sim, train.n_items, self.neighbors)
        kept = self.nbr_sims[self.nbr_sims > 0]
        self.min_sim = float(kept.min()) if kept.size else 1.0
        pop = item_counts(train).astype(np.float32)
        self.popularity = pop / max(pop.max(), 1.0)
        return self

    def prefix_scores(self, items: np.ndarray) -> np.ndarray:
        """(L, n_items): row k scores the item following items[:k + 1]."""
        linear = self.weighting == "linear"
        position = np.arange(1, len(items) + 1, dtype=np.float32)[:, None]  # (L, 1)
        rows = np.zeros((len(items), len(self.nbr_items)), np.float32)
        # one row per click holding its neighbours' sims (a padded slot writes 0 on itself)
        rows[np.arange(len(items))[:, None], self.nbr_items[items]] = (
            self.nbr_sims[items] * position if linear else self.nbr_sims[items])
        if self.weighting == "last":
            return rows
        cumsum_rows(rows)
        if linear:
            rows /= position  # the click at position p of a prefix of length n weighs p / n
        return rows

    def predict_user(self, sessions: Sessions, u: int) -> np.ndarray:
        if self.nbr_items is None:
            raise RuntimeError("ItemKNN.predict_user called before fit")
        if sessions.n_items != len(self.nbr_items):
            raise ValueError(f"sessions have {sessions.n_items} items, "
                             f"fit saw {len(self.nbr_items)}")
        user = sessions.user_sessions(u)
        lo = int(sessions.session_offsets[user.start])
        n_events = int(sessions.session_offsets[user.stop]) - lo
        out = np.empty((n_events, sessions.n_items), np.float32)
        previous = np.zeros(sessions.n_items, np.float32)  # no earlier session: all zero
        for s in user:
            start = int(sessions.session_offsets[s]) - lo
            stop = int(sessions.session_offsets[s + 1]) - lo
            scores = self.prefix_scores(sessions.session(s))
            out[start] = previous  # first click of a session: the previous session's items
            out[start + 1:stop] = scores[:-1]  # row i: the prefix ending at click i - 1
            previous = scores[-1]
        lengths = sessions.session_lengths()[user.start:user.stop]
        self._popularity_for_zeros(out, self.score_floor(lengths))
        return out

    def score_floor(self, lengths: np.ndarray) -> float:
        """A lower bound on every positive score in sessions of these lengths: each is a
        sum of non-negative terms, one at least (smallest sim) x (smallest weight, 1/L for
        linear weighting); float32 rounding can shave an ulp, which the fill's 1/2 absorbs."""
        return self.min_sim / (float(lengths.max()) if self.weighting == "linear" else 1.0)

    def _popularity_for_zeros(self, out: np.ndarray, floor: float) -> None:
        """In place: items scored 0 get popularity scaled to at most half of `floor`, so
        they stay below every item with kNN evidence and in popularity order among
        themselves (rows with no kNN evidence at all rank by popularity)."""
        # a max, not a masked copy (3x slower): positive scores are >= floor, so unchanged
        np.maximum(out, np.float32(0.5 * floor) * self.popularity, out=out)
