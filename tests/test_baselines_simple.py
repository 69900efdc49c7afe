"""Most-popular and session item-kNN on hand-built sessions small enough to reason about."""

import numpy as np
import pandas as pd
import pytest

from hiertcn.baselines.popular import MostPopular
from hiertcn.baselines.session_knn import SessionItemKNN
from hiertcn.data.sessions import SessionConfig, Sessions, sessionize
from hiertcn.errors import ConfigError
from hiertcn.evaluate import evaluate


def make_sessions(users: list[list[list[int]]], n_items: int) -> Sessions:
    """users[u][s] is the item list of user u's s-th session."""
    sessions = [s for user in users for s in user]
    lengths = [len(s) for s in sessions]
    return Sessions(
        items=np.array([i for s in sessions for i in s], np.int32),
        ts=np.arange(sum(lengths), dtype=np.int64),
        session_offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        user_offsets=np.r_[0, np.cumsum([len(u) for u in users])].astype(np.int64),
        user_ids=np.array([f"u{u}" for u in range(len(users))]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        scored=np.ones(len(sessions), bool),
    )


# items 0-1 and 2-3 co-occur twice, 0-4 once, 4-5 once. Clicks: 4 x4, 0 and 5 x3, the
# rest x2, 6 never, so popularity and kNN disagree
TRAIN = make_sessions([[[0, 1], [2, 3], [4, 5, 4]], [[0, 1], [2, 3]], [[0, 4], [5], [4], [5]]],
                      n_items=7)


def top(row: np.ndarray, k: int = 1) -> list[int]:
    return [int(i) for i in np.argsort(-row, kind="stable")[:k]]


def test_popular_ranks_most_frequent_first_in_every_row():
    test = make_sessions([[[0, 2], [1]]], n_items=7)
    scores = MostPopular().fit(TRAIN).predict_user(test, 0)
    assert scores.shape == (3, 7) and scores.dtype == np.float32
    assert top(scores[0]) == [4]
    assert scores[0, 0] == scores[0, 5] == 3 and scores[0, 1] == 2
    assert (scores == scores[0]).all()
    assert scores[0, 6] == 0  # never clicked in training


def test_popular_rejects_a_different_catalogue():
    with pytest.raises(ValueError):
        MostPopular().fit(TRAIN).predict_user(make_sessions([[[0]]], n_items=3), 0)


def test_similarity_is_cosine_on_session_sets_and_keeps_top_neighbors():
    knn = SessionItemKNN(neighbors=1).fit(TRAIN)
    # item 0 is in 3 sessions, with 1 in 2 of them (1 is in 2), with 4 in 1 (4 is in 3:
    # the double click in [4, 5, 4] counts once)
    assert knn.nbr_items[0, 0] == 1
    assert knn.nbr_sims[0, 0] == pytest.approx(2 / np.sqrt(3 * 2))
    full = SessionItemKNN(neighbors=10).fit(TRAIN)
    assert dict(zip(full.nbr_items[0], full.nbr_sims[0]))[4] == pytest.approx(1 / np.sqrt(3 * 3))
    assert full.nbr_sims[6].max() == 0  # never seen: no neighbours, only padding


def test_alpha_and_reg_follow_the_formula():
    knn = SessionItemKNN(neighbors=10, alpha=0.8, reg=1.0).fit(TRAIN)
    sims = dict(zip(knn.nbr_items[0], knn.nbr_sims[0]))
    assert sims[4] == pytest.approx(1 / ((3 + 1) ** 0.8 * (3 + 1) ** 0.2))


def test_knn_ranks_cooccurring_items_above_others_and_popularity_breaks_zero_ties():
    test = make_sessions([[[0, 6]]], n_items=7)
    row = SessionItemKNN().fit(TRAIN).predict_user(test, 0)[1]  # after clicking 0
    assert top(row, 2) == [1, 4]  # co-occurs twice, then once
    # the rest (0 itself too) have no similarity to 0: below item 4, by popularity
    assert row[[0, 2, 3, 5]].max() < row[4]
    assert row[0] == row[5] > row[2] == row[3] > row[6] == 0


def test_first_row_of_a_session_uses_the_previous_session():
    test = make_sessions([[[2], [0, 1]]], n_items=7)
    scores = SessionItemKNN().fit(TRAIN).predict_user(test, 0)
    assert scores.shape == (3, 7)
    assert top(scores[1]) == [3]  # first click of session 2: neighbour of session 1's item 2
    assert top(scores[2]) == [1]  # then the current session's own item 0 takes over


def test_users_first_event_is_pure_popularity():
    test = make_sessions([[[0, 1]]], n_items=7)
    knn_row = SessionItemKNN().fit(TRAIN).predict_user(test, 0)[0]
    pop_row = MostPopular().fit(TRAIN).predict_user(test, 0)[0]
    np.testing.assert_array_equal(np.argsort(-knn_row, kind="stable"),
                                  np.argsort(-pop_row, kind="stable"))


def test_weightings():
    test = make_sessions([[[0, 2, 6]]], n_items=7)  # row 2: after clicking 0 then 2
    linear, uniform, last = (SessionItemKNN(weighting=w).fit(TRAIN).predict_user(test, 0)[2]
                             for w in ("linear", "uniform", "last"))
    # sim(2, 3) = 1, sim(0, 1) = 0.82: uniform sums them, linear halves 0's older click
    assert uniform[3] == pytest.approx(1.0) and uniform[1] == pytest.approx(2 / np.sqrt(6))
    assert linear[3] == pytest.approx(1.0) and linear[1] == pytest.approx(1 / np.sqrt(6))
    assert top(last) == [3] and last[1] < last[4]  # item 0 is ignored: 1 is only popular
    with pytest.raises(ConfigError):
        SessionItemKNN(weighting="exp")


@pytest.mark.parametrize("weighting", ["linear", "uniform", "last"])
def test_rows_never_see_the_current_or_later_events(weighting):
    rng = np.random.default_rng(0)
    train = make_sessions([[list(rng.integers(0, 20, 6)) for _ in range(3)] for _ in range(30)],
                          n_items=20)
    knn = SessionItemKNN(neighbors=5, weighting=weighting).fit(train)
    user = [[3, 7, 1, 9], [4, 4, 8], [2, 5]]
    base = knn.predict_user(make_sessions([user], 20), 0)
    flat = [i for s in user for i in s]
    for i in range(len(flat)):
        changed = flat[:i] + [(x + 11) % 20 for x in flat[i:]]
        it = iter(changed)
        other = knn.predict_user(make_sessions([[[next(it) for _ in s] for s in user]], 20), 0)
        np.testing.assert_array_equal(other[:i + 1], base[:i + 1])  # rows 0..i use events < i
        assert not np.array_equal(other[i + 1:], base[i + 1:]) or i + 1 == len(flat)


def test_runs_under_evaluate_on_sessionized_frame():
    rng = np.random.default_rng(1)
    n = 400
    frame = pd.DataFrame({"user": rng.integers(0, 10, n), "item": rng.integers(0, 30, n),
                          "ts": np.sort(rng.integers(0, 10**6, n))})
    sessions = sessionize(frame, SessionConfig(min_item_count=1, min_sessions_per_user=1))
    for model in (MostPopular(), SessionItemKNN(neighbors=10)):
        model.fit(sessions)
        u = 0
        e_u = sum(len(sessions.session(s)) for s in sessions.user_sessions(u))
        assert model.predict_user(sessions, u).shape == (e_u, sessions.n_items)
        result = evaluate(model, sessions, progress=False)
        assert result["events"] == sessions.n_events and 0 <= result["recall@20"] <= 1


@pytest.mark.parametrize("weighting", ["linear", "uniform", "last"])
def test_popularity_fill_never_outranks_knn_evidence(weighting):
    rng = np.random.default_rng(2)
    train = make_sessions([[list(rng.integers(0, 40, rng.integers(2, 30))) for _ in range(3)]
                           for _ in range(40)], n_items=40)
    test = make_sessions([[list(rng.integers(0, 40, 25)), list(rng.integers(0, 40, 3))]], 40)
    knn = SessionItemKNN(neighbors=8, weighting=weighting).fit(train)
    scores = knn.predict_user(test, 0)
    knn.popularity = np.zeros_like(knn.popularity)  # the raw kNN scores, no fill
    raw = knn.predict_user(test, 0)
    np.testing.assert_array_equal(scores[raw > 0], raw[raw > 0])  # evidence untouched
    for row, r in zip(scores[1:], raw[1:]):
        assert row[r > 0].min() > row[r == 0].max()
