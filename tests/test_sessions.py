"""The sessionizing policies of hiertcn/data/sessions.py, on hand-made logs: each
test states the sessions a user would expect to see."""

import pandas as pd
import pytest

from hiertcn.data.sessions import SessionConfig, sessionize
from hiertcn.errors import ConfigError

LOOSE = dict(min_item_count=1, min_sessions_per_user=1)


def frame(rows):
    return pd.DataFrame(rows, columns=["user", "item", "ts"])


def sessions_of(s, u=0) -> list[list[str]]:
    return [[str(s.item_ids[i]) for i in s.session(k)] for k in s.user_sessions(u)]


def test_gap_of_exactly_gap_s_continues_and_longer_starts_a_session():
    log = frame([("u", "a", 0), ("u", "b", 100), ("u", "c", 201)])
    s = sessionize(log, SessionConfig(gap_s=100, **LOOSE))
    assert sessions_of(s) == [["a", "b"], ["c"]]


def test_equal_timestamps_keep_file_order():
    log = frame([("u", "b", 5), ("u", "a", 5), ("u", "c", 5)])
    assert sessions_of(sessionize(log, SessionConfig(**LOOSE))) == [["b", "a", "c"]]


def test_repeats_dropped_only_when_consecutive_in_a_session():
    log = frame([("u", "a", 0), ("u", "a", 1), ("u", "b", 2), ("u", "a", 3), ("u", "a", 9000)])
    assert sessions_of(sessionize(log, SessionConfig(**LOOSE))) == [["a", "b", "a"], ["a"]]
    kept = sessionize(log, SessionConfig(drop_repeats=False, **LOOSE))
    assert sessions_of(kept) == [["a", "a", "b", "a"], ["a"]]


def test_long_sessions_are_cut_at_max_session_len():
    log = frame([("u", f"i{k}", k) for k in range(7)])
    s = sessionize(log, SessionConfig(max_session_len=3, **LOOSE))
    assert [len(x) for x in sessions_of(s)] == [3, 3, 1]


def test_rare_items_then_users_with_too_few_sessions_are_dropped():
    log = frame([("u", "a", 0), ("u", "a", 5000), ("u", "rare", 10000),
                 ("v", "a", 0), ("v", "rare", 9000)])
    s = sessionize(log, SessionConfig(min_item_count=3, min_sessions_per_user=2))
    # "rare" (seen twice, under 3) goes first, which leaves v with one session: v goes too
    assert list(s.user_ids) == ["u"] and sessions_of(s) == [["a"], ["a"]]


def test_bad_policy_names_the_field():
    with pytest.raises(ConfigError, match="max_session_len"):
        SessionConfig(max_session_len=0)
