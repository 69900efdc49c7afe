"""The worker against the real local broker and real RocksDB: every click answered in
order, the stream equal to the model's offline step-wise API, restarts, a wiped local
store, two workers in one group, and bad input going to the dead-letter topic."""

from __future__ import annotations

import shutil
import signal
import time
import urllib.request
from collections import defaultdict

import numpy as np
import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from hiertcn.inference import StreamModel
from stream.admin import DLQ_TOPIC_CONFIG
from stream.config import StreamConfig
from stream.admin import create_topics
from stream.tools.replay import load_events, replay
from stream.tools.harness import (MOVIELENS, Topics, WorkerProcess, consume, read_topic,
                                  until_answered)
from tests.modelkit import offline_embeddings

pytestmark = pytest.mark.integration
PARTITIONS = 2
GAP_S = 1800.0


@pytest.fixture
def setup(kafka_bootstrap, unique_name, tmp_path, export_dir):
    topics = Topics.fresh(unique_name)
    create_topics(kafka_bootstrap, {t: PARTITIONS for t in vars(topics).values() if t != topics.dlq})
    create_topics(kafka_bootstrap, {topics.dlq: PARTITIONS}, config=DLQ_TOPIC_CONFIG)
    config = StreamConfig.resolve({"bootstrap_servers": kafka_bootstrap,
                                   "clicks_topic": topics.clicks, "partitions": PARTITIONS})
    workers = []

    # the idle sweep off (it runs on a wall-clock timer and would add session ends and
    # expiries to the topic at times of its own); the TTL test turns it on
    def start(name="w1", datadir=None, app_id=unique_name("app"),
              extra=("--sweep-interval-s", "86400")):
        w = WorkerProcess(kafka_bootstrap, topics, app_id, export_dir,
                          datadir or tmp_path / name, PARTITIONS, extra)
        workers.append(w)
        w.wait_ready()
        return w

    yield kafka_bootstrap, topics, config, start, StreamModel.load(export_dir)
    for w in workers:
        w.stop(signal.SIGKILL if w.proc.poll() is None else signal.SIGTERM, timeout=5)


def by_user(messages):
    out = defaultdict(list)
    for key, value in messages:
        out[key].append(value)
    return out


def clicks_sent(bootstrap, topic, n):
    return by_user(consume(bootstrap, topic, n))


def assert_equals_offline(model, sent, embeddings, users):
    for user in users:
        clicks = [c for c in sent[user] if c.get("event", "click") == "click"]
        want = offline_embeddings(model, clicks, GAP_S)
        got = [np.asarray(e["embedding"], np.float32) for e in embeddings[user]]
        assert len(got) == len(want), f"user {user}: {len(got)} embeddings for {len(want)} clicks"
        np.testing.assert_allclose(np.stack(got), np.stack(want), atol=1e-5)


def test_every_click_answered_in_order_and_equal_to_offline(setup):
    bootstrap, topics, config, start, model = setup
    start()
    n = replay(config, MOVIELENS, users=8, limit=600)
    recs = by_user(consume(bootstrap, topics.recommendations, n, timeout=90))
    sent = clicks_sent(bootstrap, topics.clicks, n)
    assert sum(map(len, recs.values())) == n
    for user, events in sent.items():
        assert [r["event_id"] for r in recs[user]] == [e["event_id"] for e in events]
        assert all(len(r["items"]) == config.top_k and r["model"] == model.version
                   for r in recs[user])
    embeddings = by_user(consume(bootstrap, topics.embeddings, n, timeout=60))
    assert_equals_offline(model, sent, embeddings, sent.keys())
    # recommendations are the faiss top-K of the published embedding, minus the session
    user = next(iter(sent))
    first = recs[user][0]
    top = model.top_k(np.asarray([embeddings[user][0]["embedding"]], np.float32), config.top_k,
                      [{model.index_of[str(sent[user][0]["item_id"])]}])[0]
    assert [i["item_id"] for i in first["items"]] == [item for item, _ in top]


def first_answers(messages):
    """Per user, the first answer to each event id: a redelivered event is answered
    again (at-least-once output), from the state that already includes it."""
    out = defaultdict(dict)
    for key, value in messages:
        out[key].setdefault(value["event_id"], value)
    return {user: list(answers.values()) for user, answers in out.items()}


def every_first_answer(bootstrap, topic, sent, timeout):
    """first_answers, read until every sent click is answered: a count of messages can
    be reached before that, as a redelivered click is answered twice."""
    wanted = {e["event_id"] for events in sent.values() for e in events
              if e.get("event", "click") == "click"}
    return first_answers(consume(bootstrap, topic, len(wanted), timeout=timeout,
                                 done=until_answered(wanted)))


def test_restart_and_wiped_store_continue_the_same_state(setup, tmp_path):
    bootstrap, topics, config, start, model = setup
    events = load_events(MOVIELENS, users=6, limit=900)
    thirds = [0, len(events) // 3, 2 * len(events) // 3, len(events)]
    w = start("w1")
    app_id = w.proc.args[w.proc.args.index("--app-id") + 1]
    for part in range(3):
        sent = _send(config, events.iloc[thirds[part]:thirds[part + 1]])
        got = consume(bootstrap, topics.recommendations, thirds[part + 1], timeout=90)
        assert len(got) >= thirds[part + 1], f"part {part}: no click without a recommendation"
        assert w.stop() == 0  # SIGTERM: a clean shutdown
        if part == 1:
            shutil.rmtree(tmp_path / "w1")  # the local RocksDB is gone: rebuild from changelog
        w = start("w1", app_id=app_id)
    sent = clicks_sent(bootstrap, topics.clicks, len(events))
    embeddings = every_first_answer(bootstrap, topics.embeddings, sent, timeout=90)
    assert_equals_offline(model, sent, embeddings, sent.keys())


def _send(config, rows) -> int:
    p = Producer(config.confluent_settings() | {"partitioner": "murmur2_random"})
    for row in rows.itertuples():
        p.produce(config.clicks_topic, key=str(row.user).encode(), value=orjson.dumps(
            {"user_id": str(row.user), "item_id": str(row.item), "ts": int(row.ts),
             "event_id": row.event_id}))
    p.flush(30)
    return len(rows)


def test_two_workers_split_partitions_and_stay_right(setup):
    bootstrap, topics, config, start, model = setup
    a = start("a")
    b = start("b", app_id=a.proc.args[a.proc.args.index("--app-id") + 1])
    n = replay(config, MOVIELENS, users=10, limit=800)
    recs = consume(bootstrap, topics.recommendations, n, timeout=90)
    assert len(recs) >= n
    sent = clicks_sent(bootstrap, topics.clicks, n)
    embeddings = every_first_answer(bootstrap, topics.embeddings, sent, timeout=60)
    assert_equals_offline(model, sent, embeddings, sent.keys())
    seen = [metric_sum(w.metrics(), "hiertcn_events_in_total") for w in (a, b)]
    assert len(seen) == 2 and all(x > 0 for x in seen), f"both workers consume: {seen}"


BAD = {
    "not_json": b"{not json",
    "wrong_type:user_id": orjson.dumps({"user_id": [1], "item_id": "1", "ts": 1}),
    "missing_field:item_id": orjson.dumps({"user_id": "u1", "ts": 1}),
    "too_large": orjson.dumps({"user_id": "u1", "item_id": "1", "ts": 1, "pad": "x" * 1_000_000}),
    "empty_key": orjson.dumps({"user_id": "u1", "item_id": "1", "ts": 1}),
}


def test_bad_input_goes_to_the_dlq_and_the_worker_goes_on(setup):
    bootstrap, topics, config, start, model = setup
    w = start()
    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000})
    for reason, value in BAD.items():
        p.produce(topics.clicks, key=b"" if reason == "empty_key" else b"u1", value=value)
    good = {"user_id": "u1", "item_id": "no-such-item", "ts": 5, "event_id": "unknown"}
    p.produce(topics.clicks, key=b"u1", value=orjson.dumps(good))
    good2 = {"user_id": "u1", "item_id": model.item_ids[0], "ts": 6, "event_id": "known"}
    p.produce(topics.clicks, key=b"u1", value=orjson.dumps(good2))
    p.flush(30)
    dlq = consume(bootstrap, topics.dlq, len(BAD), timeout=60)
    assert sorted(d["reason"] for _, d in dlq) == sorted(BAD)
    assert all("@" in d["source"] for _, d in dlq)
    recs = consume(bootstrap, topics.recommendations, 2, timeout=60)
    assert [r["event_id"] for _, r in recs] == ["unknown", "known"]
    assert w.proc.poll() is None
    with urllib.request.urlopen(w.url("/health/"), timeout=5) as r:
        assert orjson.loads(r.read()) == {"status": "ok"}  # the liveness probe's page
    scraped = w.metrics()
    assert 'hiertcn_event_outcomes_total{kind="unknown_items"} 1.0' in scraped
    # the counters ops watch equal what was sent, dead-lettered and answered
    assert metric_sum(scraped, "hiertcn_events_in_total") == len(BAD) + 2
    assert metric_sum(scraped, "hiertcn_dlq_total") == len(dlq) == len(BAD)
    assert metric_sum(scraped, "hiertcn_recommendations_total") == len(recs) == 2


def metric_sum(text: str, name: str) -> float:
    """Sum of a Prometheus counter over its labels, from /metrics text."""
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))



def test_ttl_expires_silent_users_with_tombstones_in_compacted_changelogs(setup):
    bootstrap, topics, config, start, model = setup
    ttl = 3600
    w = start(extra=["--state-ttl-s", str(ttl), "--sweep-interval-s", "1"])
    app_id = w.proc.args[w.proc.args.index("--app-id") + 1]
    # the partitioner of Java clients and of the worker's own sweep: one partition per user
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    # "new" clicks 10 TTLs later: the event-time clock passes the TTL of "old"
    for user, item, ts in [("old", 0, 1000), ("old", 1, 1010), ("new", 2, 1000 + 10 * ttl)]:
        p.produce(topics.clicks, key=user.encode(), value=orjson.dumps(
            {"user_id": user, "item_id": model.item_ids[item], "ts": ts}))
    p.flush(30)
    assert len(consume(bootstrap, topics.recommendations, 3, timeout=60)) == 3
    expired = 'hiertcn_event_outcomes_total{kind="expired"} 1.0'
    assert wait_for(lambda: expired in w.metrics(), 30), "the sweep expires 'old'"
    changelog = f"{app_id}-user_state-changelog"

    def last(key):  # the table's latest value of key, as its changelog says
        return [v for k, v in read_topic(bootstrap, changelog) if k == key][-1:]  # JSON keys
    assert wait_for(lambda: last(b'"old"') == [None], 10), "'old' is a tombstone"
    assert last(b'"new"')[0] is not None
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource("topic", changelog)
    described = admin.describe_configs([resource])[resource].result()
    assert described["cleanup.policy"].value == "compact"


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()
