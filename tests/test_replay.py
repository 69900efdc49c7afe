"""Replay: the shipped log goes to Kafka in event-time order, keyed by user, as valid
click JSON; an unreachable broker fails in seconds with one line; tail's line format."""

import time
from collections import defaultdict
from pathlib import Path

import pytest

from stream.config import StreamConfig
from stream.errors import BrokerError
from stream.admin import create_topics, delete_topics
from stream.records import decode_click, encode_recommendation, decode_recommendation
from stream.tools.replay import load_events, replay
from stream.tools.tail import format_line, load_titles

DATA = Path(__file__).resolve().parents[1] / "data"
MOVIELENS = DATA / "movielens.csv.gz"


def test_events_are_in_event_time_order_with_stable_ids():
    events = load_events(MOVIELENS, limit=2000)
    assert len(events) == 2000 and events["ts"].is_monotonic_increasing
    assert set(events["event"]) == {"click"}
    assert events["event_id"].is_unique
    again = load_events(MOVIELENS, limit=2000)
    assert events["event_id"].tolist() == again["event_id"].tolist()  # reruns send same ids


def test_users_keeps_the_first_users_in_file_order():
    events = load_events(MOVIELENS, users=3)
    assert set(events["user"]) == {"1", "2", "3"}  # the shipped file starts with users 1, 2, 3


def test_session_ends_close_each_session_before_the_next_click():
    events = load_events(DATA / "yoochoose-sample.csv", session_gap_s=1800)
    assert events["ts"].is_monotonic_increasing
    for user, rows in events.groupby("user", sort=False):
        kinds = rows["event"].tolist()
        assert kinds[-1] == "session_end", user  # every session is closed
        # an end closes a session of clicks: two ends in a row would close an empty one
        assert all(not (a == b == "session_end") for a, b in zip(kinds, kinds[1:])), user
    ends = events[events["event"] == "session_end"]
    assert ends["item"].isna().all()
    # yoochoose users are sessions: about one end per user, never more ends than clicks
    assert events["user"].nunique() <= len(ends) < (events["event"] == "click").sum()


def test_unreachable_broker_fails_fast_with_one_line():
    config = StreamConfig(bootstrap_servers="127.0.0.1:1")  # nothing listens on port 1
    start = time.monotonic()
    with pytest.raises(BrokerError, match="cannot reach Kafka at 127.0.0.1:1") as info:
        replay(config, MOVIELENS, limit=10, timeout=3)
    assert time.monotonic() - start < 15
    assert "\n" not in str(info.value)


def test_tail_line_shows_titles_and_latency():
    titles = load_titles(MOVIELENS)
    rec = decode_recommendation(encode_recommendation(
        "42", "42:17", 1476619201, 3, [("1", 0.9), ("2", 0.8), ("999999", 0.1)], "m", 4.25))
    line = format_line(rec, titles)
    assert line.startswith("2016-10-16 12:00:01  user=42  session=3  event=42:17")
    assert "Toy Story" in line and "Jumanji" in line and "999999" in line
    assert line.endswith("4.2ms") and "\n" not in line


@pytest.mark.integration
def test_replay_500_movielens_events_round_trip(kafka_bootstrap, unique_name):
    from confluent_kafka import Consumer

    topic = unique_name("clicks")
    create_topics(kafka_bootstrap, {topic: 4})
    config = StreamConfig(bootstrap_servers=kafka_bootstrap, clicks_topic=topic)
    assert replay(config, MOVIELENS, limit=500) == 500

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": unique_name("g"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got, deadline = [], time.monotonic() + 60
    try:
        while len(got) < 500 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                got.append(msg)
        assert consumer.poll(2) is None  # nothing beyond the 500
    finally:
        consumer.close()
        delete_topics(kafka_bootstrap, [topic])

    assert len(got) == 500
    clicks = [(m, decode_click(m.key(), m.value())) for m in got]  # key == user_id checked
    assert all(m.key() == c.user_id.encode() for m, c in clicks)
    assert len({c.event_id for _, c in clicks}) == 500
    per_user = defaultdict(list)
    for msg, click in sorted(clicks, key=lambda mc: (mc[0].partition(), mc[0].offset())):
        per_user[click.user_id].append((msg.partition(), click.ts))
    for user, seen in per_user.items():
        assert len({p for p, _ in seen}) == 1, f"user {user} split over partitions"
        ts = [t for _, t in seen]
        assert ts == sorted(ts), f"user {user} out of event-time order"
    assert len({m.partition() for m, _ in clicks}) > 1  # users spread over partitions
