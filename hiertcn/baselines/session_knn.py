"""Session-kNN, SKNN and V-SKNN (Jannach & Ludewig, RecSys 2017; Ludewig & Jannach,
"Evaluation of session-based recommendation algorithms", UMUAI 2018): compare the
current session with whole past sessions, not items with items (that is `item_knn`).

For the current session s (its clicks so far):
- sample: the `sample_size` most recent training sessions holding at least one item
  of s (a session's time is its last click's);
- similarity of s with a sampled session n, on their item vectors (n binary; s binary
  in SKNN, position-weighted in V-SKNN, `weighting` below):
  "cosine"  dot(s, n) / (|s|_2 sqrt(|n|))   (SKNN's; binary s: |s & n| / sqrt(|s||n|))
  "dot"     dot(s, n)                        (V-SKNN's)
  "jaccard" dot(s, n) / |s | n|              (binary s: |s & n| / |s | n|);
- neighbours N_s: the k most similar sampled sessions (ties: the more recent first);
- score(i) = sum of sim(s, n) over the n in N_s holding i, times 1 + idf * IDF(i) when
  `idf` > 0 (V-SKNN's option), IDF(i) = log(training sessions / those holding i).

V-SKNN weights the click at position p (1-based) of a session of n clicks so far
(a repeated item: its last position): "linear" p / n (the last click 1, decaying
linearly; session-rec, the authors' code, calls it "div" and defaults to it),
"quadratic" (p / n)^2, "log" 1 / log10(n - p + 1.7), "same" 1 (SKNN).

Our sessions are theirs: a session is a user's clicks without a gap over `gap_s`
(hiertcn.data.sessions); the neighbour pool is every session of every training user,
users ignored (session-based). At test time the query is the test user's current
session up to the event scored. Not in their protocol, which never scores a session's
first click: the first event of a session takes the user's previous session, whole, as
the query, and the user's first event gets popularity. Popularity also orders the
items kNN scores 0, below every item it scores (as in item_knn), because ties rank
pessimistically (hiertcn.metrics).

Defaults, chosen on the shipped MovieLens's validation users (k in {50, 100, 200} x
sample_size in {500, 1000}, and remind): k=50, sample_size=1000, and `remind=False`,
which never recommends the current session's own items. session-rec's V-SKNN keeps
them (`remind=True`); in a rating log an item never comes back, while every neighbour
holds some of them by construction, so keeping them cost 40% of Recall@20 there.

Speed: an inverted index item -> sessions (flat arrays, sessions numbered most recent
first, so "most recent" is "smallest index") and per session of the test user one
pass for all its prefixes: candidates, their first eligible position and their
sessions-holding-click pairs are built once; similarities of every prefix are one
sparse sum over those pairs; item scores are one bincount.
"""

from __future__ import annotations

import numpy as np

from hiertcn.baselines.item_knn import session_item_sets
from hiertcn.baselines.popular import item_counts
from hiertcn.data.sessions import Sessions
from hiertcn.errors import ConfigError

SIMILARITIES = ("cosine", "dot", "jaccard")
WEIGHTINGS = ("same", "linear", "quadratic", "log")


def position_weights(items: np.ndarray, weighting: str) -> tuple[np.ndarray, np.ndarray]:
    """For every prefix t of `items` (L,): which positions j count (a repeated item
    counts at its last position) and their weights, both (L, L), row t = prefix t."""
    L = len(items)
    t = np.arange(L)[:, None]  # (L, 1) prefix end
    j = np.arange(L)[None, :]  # (1, L) position
    later = np.full(L, L)  # next position of the same item, L if none
    for pos in range(L - 1, -1, -1):  # L is one session: at most max_session_len
        same = np.flatnonzero(items[pos + 1:] == items[pos])
        later[pos] = pos + 1 + same[0] if len(same) else L
    counts = (j <= t) & (later[None, :] > t)  # (L, L) bool
    p, n = (j + 1.0), (t + 1.0)  # 1-based position, prefix length
    if weighting == "same":
        w = np.ones((L, L))
    elif weighting == "linear":
        w = p / n
    elif weighting == "quadratic":
        w = (p / n) ** 2
    else:  # "log"
        w = 1.0 / np.log10(np.maximum(n - p, 0.0) + 1.7)
    return counts, np.where(counts, w, 0.0)


def fill_with_popularity(out: np.ndarray, popularity: np.ndarray) -> None:
    """In place: each row's zero scores become popularity (max 1) times half the row's
    smallest positive score, so they rank below every item with kNN evidence and in
    popularity order among themselves; a row without evidence is popularity alone."""
    positive = out > 0
    floor = np.where(positive, out, np.inf).min(axis=1, keepdims=True)  # (E, 1)
    floor[~np.isfinite(floor)] = 1.0
    np.copyto(out, (0.5 * floor * popularity).astype(np.float32), where=~positive)


class SessionKNN:
    """Session-kNN with every option; `SKNN` and `VSKNN` below are its two published
    settings. `fit(train)`, then `predict_user` as hiertcn.contract.Recommender."""

    name = "session_knn"

    def __init__(self, k: int = 50, sample_size: int = 1000, similarity: str = "cosine",
                 weighting: str = "same", idf: float = 0.0, remind: bool = False):
        if k < 1 or sample_size < 1:
            raise ConfigError(f"k and sample_size must be >= 1, got {k} and {sample_size}")
        if similarity not in SIMILARITIES:
            raise ConfigError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if idf < 0:
            raise ConfigError(f"idf must be >= 0, got {idf}")
        self.k, self.sample_size, self.similarity = k, sample_size, similarity
        self.weighting, self.idf, self.remind = weighting, idf, remind
        self.n_items = 0
        # filled by fit; sessions are numbered most recent first
        self.sess_ptr = self.sess_items = self.sess_size = None  # session -> its items
        self.item_ptr = self.item_sess = None  # item -> its sessions, most recent first
        self.item_weight = self.popularity = None  # (n_items,) 1 + idf * IDF, and max-1 pop

    def fit(self, train: Sessions) -> "SessionKNN":
        sizes, items = session_item_sets(train)  # distinct items, sessions in data order
        n_sess, self.n_items = len(sizes), train.n_items
        last_ts = np.asarray(train.ts)[np.asarray(train.session_offsets[1:]) - 1]
        order = np.argsort(-last_ts, kind="stable")  # new number r = old session order[r]
        new_of_item = np.repeat(np.argsort(order), sizes)  # each (session, item): new number
        keys = np.sort(new_of_item.astype(np.int64) * self.n_items + items)
        self.sess_items = keys % self.n_items  # grouped by new session number
        self.sess_size = sizes[order].astype(np.float64)
        self.sess_ptr = np.r_[0, np.cumsum(sizes[order])].astype(np.int64)
        by_item = np.sort(self.sess_items * n_sess + keys // self.n_items)
        self.item_sess = by_item % n_sess  # per item, sessions ascending = most recent first
        df = np.bincount(self.sess_items, minlength=self.n_items)
        self.item_ptr = np.r_[0, np.cumsum(df)].astype(np.int64)
        idf = np.log(n_sess / np.maximum(df, 1)) * (df > 0)
        self.item_weight = 1.0 + self.idf * idf
        pop = item_counts(train).astype(np.float32)
        self.popularity = pop / max(pop.max(), 1.0)
        return self

    def prefix_scores(self, q: np.ndarray) -> np.ndarray:
        """(L, n_items) float64: row t scores the item following the clicks q[:t + 1]."""
        q = np.asarray(q, np.int64)
        L = len(q)
        lo, hi = self.item_ptr[q], self.item_ptr[q + 1]
        pair_sess = np.concatenate([self.item_sess[a:b] for a, b in zip(lo, hi)])
        pair_pos = np.repeat(np.arange(L), hi - lo)  # (P,) the click that found the session
        # candidates, most recent first; pairs run in click order, so the first pair of a
        # candidate is the first prefix it is eligible for
        cand, first_pair, pair_cand = np.unique(pair_sess, return_index=True,
                                                return_inverse=True)
        first = pair_pos[first_pair]  # (C,)
        samples = [np.flatnonzero(first <= t)[:self.sample_size] for t in range(L)]
        used = np.unique(np.concatenate(samples)) if len(cand) else np.zeros(0, np.int64)
        row_of = np.full(len(cand), -1)
        row_of[used] = np.arange(len(used))
        keep = row_of[pair_cand] >= 0  # the pairs (sampled session u holds click j)
        sim = self._similarity(row_of[pair_cand[keep]], pair_pos[keep], q,
                               self.sess_size[cand[used]])  # (U, L)
        rows, neighbours, weights = [], [], []
        for t, sample in enumerate(samples):
            s = sim[row_of[sample], t]
            top = np.argsort(-s, kind="stable")[:self.k]  # stable: ties go to the more recent
            top = top[s[top] > 0]
            rows.append(np.full(len(top), t))
            neighbours.append(cand[sample[top]])
            weights.append(s[top])
        return self._item_scores(np.concatenate(rows), np.concatenate(neighbours),
                                 np.concatenate(weights), q)

    def _similarity(self, u: np.ndarray, j: np.ndarray, q: np.ndarray,
                    size: np.ndarray) -> np.ndarray:
        """(U, L) similarity of each sampled session (`size` distinct items each) with
        each prefix of the query q, from the pairs (u, j): session u holds click j;
        every session 0..U-1 has a pair."""
        L = len(q)
        if len(size) == 0:
            return np.zeros((0, L))
        counts, w = position_weights(q, self.weighting)  # (L, L) each
        order = np.argsort(u, kind="stable")
        j = j[order]
        starts = np.flatnonzero(np.r_[True, u[order][1:] != u[order][:-1]])  # (U,)

        def per_session(m: np.ndarray) -> np.ndarray:
            """(L prefixes, L clicks) -> (U, L): sum over each session's clicks; sparse,
            as a session holds few of the query's clicks (a dense product is U L^2)."""
            return np.add.reduceat(m.T[j], starts, axis=0)

        dot = per_session(w)
        if self.similarity == "dot":
            return dot
        if self.similarity == "cosine":
            return dot / (np.sqrt((w ** 2).sum(1))[None, :] * np.sqrt(size)[:, None])
        union = counts.sum(1)[None, :] + size[:, None] - per_session(counts.astype(float))
        return dot / union  # |s | n|

    def _item_scores(self, rows, neighbours, sims, q) -> np.ndarray:
        """(L, n_items): row t sums sims[r] over each neighbour session r of row t's
        items; (rows, neighbours, sims) are flat triples."""
        L, n = len(q), self.n_items
        lo = self.sess_ptr[neighbours]
        size = self.sess_ptr[neighbours + 1] - lo
        # the item positions of every neighbour session, back to back
        flat = np.repeat(lo - (np.cumsum(size) - size), size) + np.arange(size.sum())
        scores = np.bincount(np.repeat(rows, size) * n + self.sess_items[flat],
                             weights=np.repeat(sims, size), minlength=L * n)
        scores = scores.astype(np.float64, copy=False).reshape(L, n)  # int when no neighbour
        scores *= self.item_weight[None, :]
        if not self.remind:  # drop each prefix's own items
            r, c = np.tril_indices(L)
            scores[r, q[c]] = 0.0
        return scores

    def predict_user(self, sessions: Sessions, u: int) -> np.ndarray:
        if self.item_ptr is None:
            raise RuntimeError(f"{type(self).__name__}.predict_user called before fit")
        if sessions.n_items != self.n_items:
            raise ValueError(f"sessions have {sessions.n_items} items, fit saw {self.n_items}")
        user = sessions.user_sessions(u)
        lo = int(sessions.session_offsets[user.start])
        out = np.empty((int(sessions.session_offsets[user.stop]) - lo, self.n_items), np.float32)
        previous = np.zeros(self.n_items, np.float32)  # no earlier session: popularity alone
        for s in user:
            start = int(sessions.session_offsets[s]) - lo
            stop = int(sessions.session_offsets[s + 1]) - lo
            scores = self.prefix_scores(sessions.session(s))
            out[start] = previous  # a session's first click: the previous session's query
            out[start + 1:stop] = scores[:-1]  # row i: the prefix ending at click i - 1
            previous = scores[-1]
        fill_with_popularity(out, self.popularity)
        return out


class SKNN(SessionKNN):
    """SKNN: binary sessions, cosine (Jannach & Ludewig 2017)."""

    name = "sknn"

    def __init__(self, k: int = 50, sample_size: int = 1000, similarity: str = "cosine",
                 remind: bool = False):
        super().__init__(k, sample_size, similarity, "same", 0.0, remind)


class VSKNN(SessionKNN):
    """V-SKNN: the current session position-weighted, dot product, optional IDF
    (Ludewig & Jannach 2018)."""

    name = "vsknn"

    def __init__(self, k: int = 50, sample_size: int = 1000, weighting: str = "linear",
                 idf: float = 0.0, similarity: str = "dot", remind: bool = False):
        super().__init__(k, sample_size, similarity, weighting, idf, remind)
