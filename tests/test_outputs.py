"""The worker's output path against the real local broker: a lone click answered
without waiting for a batch window, the embeddings option, and at-least-once when an
output cannot be delivered (the batch is never committed: the worker stops and the
clicks are answered after the restart)."""

from __future__ import annotations

import signal
import time

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource)

from stream.admin import DLQ_TOPIC_CONFIG, create_topics
from stream.records import encode_click
from stream.tools.harness import Topics, WorkerProcess, consume, read_topic

pytestmark = pytest.mark.integration
PARTITIONS = 2


@pytest.fixture
def lab(kafka_bootstrap, unique_name, tmp_path, export_dir):
    """Fresh topics (`recs_config`: the recommendations topic's own settings) and a
    `start(...)` for workers of one app id; the idle sweep off."""
    topics = Topics.fresh(unique_name)
    workers = []

    def make_topics(recs_config=None):
        create_topics(kafka_bootstrap, {topics.clicks: PARTITIONS, topics.embeddings: PARTITIONS})
        create_topics(kafka_bootstrap, {topics.recommendations: PARTITIONS}, config=recs_config)
        create_topics(kafka_bootstrap, {topics.dlq: PARTITIONS}, config=DLQ_TOPIC_CONFIG)

    def start(*extra, batch_within_s=0.02, ready=True):
        w = WorkerProcess(kafka_bootstrap, topics, unique_name("app"), export_dir,
                          tmp_path / "data", PARTITIONS,
                          ["--sweep-interval-s", "86400", *extra], batch_within_s=batch_within_s,
                          log=tmp_path / f"worker-{len(workers)}.log")
        workers.append(w)
        if ready:
            w.wait_ready()
        return w

    def send(*events):
        p = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
        for user, item, ts, kind, event_id in events:
            p.produce(topics.clicks, key=user.encode(),
                      value=encode_click(user, item, ts, kind, event_id))
        assert p.flush(30) == 0

    yield kafka_bootstrap, topics, make_topics, start, send, unique_name("app")
    for w in workers:
        w.stop(signal.SIGKILL, timeout=5)


def an_item(export_dir, i=0):
    from hiertcn.inference import StreamModel
    return StreamModel.load(export_dir).item_ids[i]


def test_a_lone_click_after_idle_is_answered_without_waiting_for_a_batch_window(lab, export_dir):
    bootstrap, topics, make_topics, start, send, _ = lab
    make_topics()
    max_age_s = 3.0  # take_events(200, within=3) would hold a lone click 3 s
    start(batch_within_s=max_age_s)
    item = an_item(export_dir)
    send(("u1", item, 1.0, "click", "warm-up"))
    assert len(consume(bootstrap, topics.recommendations, 1, timeout=60)) == 1
    time.sleep(1.0)  # idle
    send(("u2", item, 2.0, "click", "lone"))
    recs = consume(bootstrap, topics.recommendations, 2, timeout=60)
    (lone,) = [r for _, r in recs if r["event_id"] == "lone"]
    assert lone["latency_ms"] < max_age_s * 1000
    # default embeddings: one per event
    assert len(consume(bootstrap, topics.embeddings, 2, timeout=30)) == 2


@pytest.mark.parametrize("mode", ["off", "session_end"])
def test_embeddings_option(lab, export_dir, mode):
    bootstrap, topics, make_topics, start, send, _ = lab
    make_topics()
    start("--embeddings", mode)
    items = [an_item(export_dir, i) for i in range(3)]
    send(("u1", items[0], 1.0, "click", "c1"), ("u1", items[1], 2.0, "click", "c2"),
         ("u1", None, 3.0, "session_end", "end1"), ("u1", items[2], 4.0, "click", "c3"))
    recs = consume(bootstrap, topics.recommendations, 3, timeout=60)
    assert [r["event_id"] for _, r in recs] == ["c1", "c2", "c3"]
    embeddings = [orjson.loads(v) for _, v in read_topic(bootstrap, topics.embeddings)]
    if mode == "off":
        assert embeddings == []
    else:
        assert [e["event_id"] for e in embeddings] == ["end1"]  # the session end only


def committed(bootstrap, group, topic) -> int:
    """Sum over partitions of the group's committed offsets (-1001: none counts 0)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return sum(max(tp.offset, 0) for tp in got)
    finally:
        c.close()


def test_an_output_that_cannot_be_delivered_is_never_committed(lab, export_dir):
    """The recommendations topic takes no message (max.message.bytes below any record
    batch): the broker refuses every recommendation. The worker must stop with the
    clicks uncommitted, never drop them; once the topic takes messages again, a
    restarted worker answers every click."""
    bootstrap, topics, make_topics, start, send, app_id = lab
    make_topics(recs_config={"max.message.bytes": "64"})
    w = start()
    items = [an_item(export_dir, i) for i in range(3)]
    send(*[(f"u{i}", item, 1.0 + i, "click", f"c{i}") for i, item in enumerate(items)])
    deadline = time.monotonic() + 90
    while w.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    log = w.log.read_text(errors="replace")
    assert w.proc.poll() is not None, "the worker went on after a failed delivery:\n" + w.tail()
    assert w.proc.returncode != 0
    assert "MSG_SIZE_TOO_LARGE" in log and "without committing" in log
    assert committed(bootstrap, app_id, topics.clicks) == 0  # nothing committed past them
    # the topic takes messages again: a restarted worker answers all three clicks
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource("topic", topics.recommendations, incremental_configs=[
        ConfigEntry("max.message.bytes", "1048588",
                    incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([resource]).values():
        f.result(30)
    start()
    recs = consume(bootstrap, topics.recommendations, 3, timeout=90)
    assert sorted(r["event_id"] for _, r in recs) == ["c0", "c1", "c2"]
