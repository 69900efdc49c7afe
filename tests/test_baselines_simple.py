"""Most-popular, item-kNN and session-kNN (SKNN, V-SKNN) on hand-built sessions small
enough to reason about."""

import numpy as np
import pandas as pd
import pytest

from hiertcn.baselines.popular import MostPopular
from hiertcn.baselines.session_knn import SKNN, VSKNN, SessionKNN, position_weights
from hiertcn.baselines.item_knn import ItemKNN
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
    knn = ItemKNN(neighbors=1).fit(TRAIN)
    # item 0 is in 3 sessions, with 1 in 2 of them (1 is in 2), with 4 in 1 (4 is in 3:
    # the double click in [4, 5, 4] counts once)
    assert knn.nbr_items[0, 0] == 1
    assert knn.nbr_sims[0, 0] == pytest.approx(2 / np.sqrt(3 * 2))
    full = ItemKNN(neighbors=10).fit(TRAIN)
    assert dict(zip(full.nbr_items[0], full.nbr_sims[0]))[4] == pytest.approx(1 / np.sqrt(3 * 3))
    assert full.nbr_sims[6].max() == 0  # never seen: no neighbours, only padding


def test_alpha_and_reg_follow_the_formula():
    knn = ItemKNN(neighbors=10, alpha=0.8, reg=1.0).fit(TRAIN)
    sims = dict(zip(knn.nbr_items[0], knn.nbr_sims[0]))
    assert sims[4] == pytest.approx(1 / ((3 + 1) ** 0.8 * (3 + 1) ** 0.2))


def test_knn_ranks_cooccurring_items_above_others_and_popularity_breaks_zero_ties():
    test = make_sessions([[[0, 6]]], n_items=7)
    row = ItemKNN().fit(TRAIN).predict_user(test, 0)[1]  # after clicking 0
    assert top(row, 2) == [1, 4]  # co-occurs twice, then once
    # the rest (0 itself too) have no similarity to 0: below item 4, by popularity
    assert row[[0, 2, 3, 5]].max() < row[4]
    assert row[0] == row[5] > row[2] == row[3] > row[6] == 0


def test_first_row_of_a_session_uses_the_previous_session():
    test = make_sessions([[[2], [0, 1]]], n_items=7)
    scores = ItemKNN().fit(TRAIN).predict_user(test, 0)
    assert scores.shape == (3, 7)
    assert top(scores[1]) == [3]  # first click of session 2: neighbour of session 1's item 2
    assert top(scores[2]) == [1]  # then the current session's own item 0 takes over


def test_users_first_event_is_pure_popularity():
    test = make_sessions([[[0, 1]]], n_items=7)
    knn_row = ItemKNN().fit(TRAIN).predict_user(test, 0)[0]
    pop_row = MostPopular().fit(TRAIN).predict_user(test, 0)[0]
    np.testing.assert_array_equal(np.argsort(-knn_row, kind="stable"),
                                  np.argsort(-pop_row, kind="stable"))


def test_weightings():
    test = make_sessions([[[0, 2, 6]]], n_items=7)  # row 2: after clicking 0 then 2
    linear, uniform, last = (ItemKNN(weighting=w).fit(TRAIN).predict_user(test, 0)[2]
                             for w in ("linear", "uniform", "last"))
    # sim(2, 3) = 1, sim(0, 1) = 0.82: uniform sums them, linear halves 0's older click
    assert uniform[3] == pytest.approx(1.0) and uniform[1] == pytest.approx(2 / np.sqrt(6))
    assert linear[3] == pytest.approx(1.0) and linear[1] == pytest.approx(1 / np.sqrt(6))
    assert top(last) == [3] and last[1] < last[4]  # item 0 is ignored: 1 is only popular
    with pytest.raises(ConfigError):
        ItemKNN(weighting="exp")


@pytest.mark.parametrize("weighting", ["linear", "uniform", "last"])
def test_rows_never_see_the_current_or_later_events(weighting):
    rng = np.random.default_rng(0)
    train = make_sessions([[list(rng.integers(0, 20, 6)) for _ in range(3)] for _ in range(30)],
                          n_items=20)
    knn = ItemKNN(neighbors=5, weighting=weighting).fit(train)
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
    for model in (MostPopular(), ItemKNN(neighbors=10), SKNN(k=5, sample_size=20),
                  VSKNN(k=5, sample_size=20, idf=1.0)):
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
    knn = ItemKNN(neighbors=8, weighting=weighting).fit(train)
    scores = knn.predict_user(test, 0)
    knn.popularity = np.zeros_like(knn.popularity)  # the raw kNN scores, no fill
    raw = knn.predict_user(test, 0)
    np.testing.assert_array_equal(scores[raw > 0], raw[raw > 0])  # evidence untouched
    for row, r in zip(scores[1:], raw[1:]):
        assert row[r > 0].min() > row[r == 0].max()


# ---- session-kNN ---------------------------------------------------------------------
# TRAIN's sessions, most recent last click first: {5} {4} {5} {0,4} {2,3} {0,1} {4,5}
# {2,3} {0,1}. Sessions holding 0: {0,4} {0,1} {0,1}; holding 0 or 4, the three most
# recent: {4} {0,4} {0,1}.


def test_sknn_is_cosine_over_the_most_recent_sessions_and_sums_neighbour_sims():
    knn = SKNN(k=2, sample_size=3, remind=True).fit(TRAIN)
    after_0, after_0_4 = knn.prefix_scores(np.array([0, 4]))
    # [0]: all three sessions have cosine 1/sqrt(1*2); tied, the two most recent win
    np.testing.assert_allclose(after_0, [np.sqrt(2), 1 / np.sqrt(2), 0, 0, 1 / np.sqrt(2), 0, 0])
    # [0, 4]: {4} 1/sqrt(2*1), {0,4} 2/sqrt(2*2), {0,1} 1/sqrt(2*2): k=2 keeps the first two
    np.testing.assert_allclose(after_0_4, [1, 0, 0, 0, 1 + 1 / np.sqrt(2), 0, 0])


def test_sample_size_keeps_only_the_most_recent_sessions():
    row = SKNN(k=10, sample_size=1, remind=True).fit(TRAIN).prefix_scores(np.array([0]))[0]
    np.testing.assert_allclose(row, [1 / np.sqrt(2), 0, 0, 0, 1 / np.sqrt(2), 0, 0])  # {0,4}


def test_vsknn_weights_later_clicks_more_and_takes_the_dot_product():
    knn = VSKNN(k=2, sample_size=3, remind=True).fit(TRAIN)
    # [0, 4]: 0 weighs 1/2, 4 weighs 1: {4} 1, {0,4} 3/2, {0,1} 1/2
    np.testing.assert_allclose(knn.prefix_scores(np.array([0, 4]))[1],
                               [1.5, 0, 0, 0, 2.5, 0, 0])


def test_vsknn_idf_scales_each_item_by_one_plus_its_idf():
    knn = VSKNN(k=3, sample_size=3, idf=2.0, remind=True).fit(TRAIN)
    row = knn.prefix_scores(np.array([0]))[0]  # neighbours {0,4} {0,1} {0,1}, sim 1 each
    idf = np.log(9 / np.array([3, 2, 3]))  # sessions holding 0, 1, 4 out of 9
    np.testing.assert_allclose(row[[0, 1, 4]], np.array([3, 2, 1]) * (1 + 2.0 * idf))


def test_jaccard_and_remind():
    jaccard = SKNN(k=2, sample_size=3, similarity="jaccard", remind=True).fit(TRAIN)
    row = jaccard.prefix_scores(np.array([0, 4]))[1]
    # {4} 1/2, {0,4} 2/2, {0,1} 1/3: the first two
    np.testing.assert_allclose(row, [1, 0, 0, 0, 1.5, 0, 0])
    # remind=False, the default: the session's own items are never recommended
    forget = SKNN(k=2, sample_size=3).fit(TRAIN).prefix_scores(np.array([0, 4]))
    np.testing.assert_allclose(forget[0], [0, 1 / np.sqrt(2), 0, 0, 1 / np.sqrt(2), 0, 0])
    assert not forget[1].any()  # both neighbours hold only the session's own items


def test_position_weights_count_a_repeated_item_at_its_last_click():
    counts, w = position_weights(np.array([4, 0, 4]), "linear")
    np.testing.assert_array_equal(counts, [[1, 0, 0], [1, 1, 0], [0, 1, 1]])
    np.testing.assert_allclose(w[2], [0, 2 / 3, 1])
    np.testing.assert_allclose(position_weights(np.array([4, 0, 4]), "quadratic")[1][1],
                               [1 / 4, 1, 0])


def reference_scores(train: Sessions, query: list[int], k: int, m: int, weighting: str,
                     similarity: str) -> np.ndarray:
    """The definition, one session at a time with Python sets."""
    sessions = [set(train.session(s).tolist()) for s in range(train.n_sessions)]
    last = [int(train.ts[train.session_offsets[s + 1] - 1]) for s in range(train.n_sessions)]
    n = len(query)
    weight = {i: ((p + 1) / n if weighting == "linear" else 1.0) for p, i in enumerate(query)}
    holding = [s for s in range(len(sessions)) if sessions[s] & set(query)]
    sample = sorted(holding, key=lambda s: -last[s])[:m]
    sims = []
    for s in sample:
        dot = sum(weight[i] for i in sessions[s] & set(query))
        norm = np.sqrt(sum(w * w for w in weight.values()) * len(sessions[s]))
        sims.append((dot / norm if similarity == "cosine" else dot, s))
    top = sorted(sims, key=lambda x: -x[0])[:k]  # stable: ties keep recency order
    scores = np.zeros(train.n_items)
    for sim, s in top:
        scores[list(sessions[s])] += sim
    return scores


@pytest.mark.parametrize("model", [SKNN(k=4, sample_size=9, remind=True),
                                   VSKNN(k=3, sample_size=7, remind=True),
                                   SessionKNN(k=5, sample_size=6, weighting="linear",
                                              remind=True)],
                         ids=["sknn", "vsknn", "vsknn-cosine"])
def test_vectorised_scores_equal_the_definition_on_random_data(model):
    rng = np.random.default_rng(3)
    train = make_sessions([[list(rng.integers(0, 15, rng.integers(1, 6))) for _ in range(3)]
                           for _ in range(12)], n_items=15)
    model.fit(train)
    query = [3, 7, 1, 9, 5]
    got = model.prefix_scores(np.array(query))
    for t in range(len(query)):
        want = reference_scores(train, query[:t + 1], model.k, model.sample_size,
                                model.weighting, model.similarity)
        np.testing.assert_allclose(got[t], want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("model", [SKNN(k=5, sample_size=10), VSKNN(k=5, sample_size=10)])
def test_session_knn_rows_never_see_the_current_or_later_events(model):
    rng = np.random.default_rng(0)
    train = make_sessions([[list(rng.integers(0, 20, 6)) for _ in range(3)] for _ in range(30)],
                          n_items=20)
    model.fit(train)
    user = [[3, 7, 1, 9], [4, 6, 8], [2, 5]]
    base = model.predict_user(make_sessions([user], 20), 0)
    flat = [i for s in user for i in s]
    for i in range(len(flat)):
        it = iter(flat[:i] + [(x + 11) % 20 for x in flat[i:]])
        other = model.predict_user(make_sessions([[[next(it) for _ in s] for s in user]], 20), 0)
        np.testing.assert_array_equal(other[:i + 1], base[:i + 1])  # rows 0..i use events < i
        assert not np.array_equal(other[i + 1:], base[i + 1:]) or i + 1 == len(flat)


def test_session_knn_rows_first_click_and_popularity_fill():
    test = make_sessions([[[0, 4], [6]]], n_items=7)
    knn = SKNN(k=2, sample_size=3, remind=True).fit(TRAIN)
    scores = knn.predict_user(test, 0)
    pop_row = MostPopular().fit(TRAIN).predict_user(test, 0)[0]
    assert scores.shape == (3, 7) and scores.dtype == np.float32
    np.testing.assert_array_equal(np.argsort(-scores[0], kind="stable"),
                                  np.argsort(-pop_row, kind="stable"))  # user's 1st: pop
    raw = knn.prefix_scores(np.array([0, 4]))
    # row 1 (after 0) and row 2 (a new session: the whole previous one) keep the kNN
    # scores; the items kNN scores 0 follow below the smallest, by popularity
    for row, r in zip(scores[1:], raw):
        np.testing.assert_allclose(row[r > 0], r[r > 0], rtol=1e-6)
        assert row[r == 0].max() < row[r > 0].min()
    assert scores[2, 5] > scores[2, 2] > scores[2, 6] == 0  # 5 clicked 3x, 2 twice, 6 never


def test_session_knn_rejects_bad_settings_and_use_before_fit():
    for bad in (dict(k=0), dict(sample_size=0), dict(similarity="euclid"),
                dict(weighting="exp"), dict(idf=-1.0)):
        with pytest.raises(ConfigError):
            SessionKNN(**bad)
    with pytest.raises(RuntimeError):
        SKNN().predict_user(TRAIN, 0)
