"""The `user_state` changelog, written through the batch's librdkafka producer
(stream/worker/state_writes.py), against the real local broker: one record per user
per batch with the row the worker stored, and a worker on an empty disk rebuilds the
users' states from it and carries their sessions on."""

from __future__ import annotations

import signal
import time

import orjson
import pytest
from confluent_kafka import Producer

from hiertcn.inference import StreamModel
from stream.admin import DLQ_TOPIC_CONFIG, create_topics
from stream.records import encode_click
from stream.tools.harness import Topics, WorkerProcess, consume, read_topic
from stream.worker.rows import UserState

pytestmark = pytest.mark.integration
PARTITIONS = 2


def test_changelog_holds_the_rows_and_a_new_disk_recovers_from_it(
        kafka_bootstrap, unique_name, tmp_path, export_dir):
    topics, app_id = Topics.fresh(unique_name), unique_name("app")
    create_topics(kafka_bootstrap, {topics.clicks: PARTITIONS, topics.embeddings: PARTITIONS,
                                    topics.recommendations: PARTITIONS})
    create_topics(kafka_bootstrap, {topics.dlq: PARTITIONS}, config=DLQ_TOPIC_CONFIG)
    items = StreamModel.load(export_dir).item_ids[:3]
    changelog = f"{app_id}-user_state-changelog"

    def send(*events):
        p = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
        for user, item, ts, event_id in events:
            p.produce(topics.clicks, key=user.encode(),
                      value=encode_click(user, item, ts, "click", event_id))
        assert p.flush(30) == 0

    def worker(disk: str) -> WorkerProcess:
        w = WorkerProcess(kafka_bootstrap, topics, app_id, export_dir, tmp_path / disk,
                          PARTITIONS, ["--sweep-interval-s", "86400"],
                          log=tmp_path / f"{disk}.log")
        w.wait_ready()
        return w

    def last_rows() -> dict[str, UserState]:
        # keys as the table's key serializer writes them (JSON strings), as Faust's own
        return {orjson.loads(k): UserState.from_row(v)
                for k, v in read_topic(kafka_bootstrap, changelog)}

    first = worker("disk-a")
    send(("u1", items[0], 10.0, "a1"), ("u1", items[1], 20.0, "a2"), ("u2", items[0], 10.0, "b1"))
    assert len(consume(kafka_bootstrap, topics.recommendations, 3, timeout=60)) == 3
    rows = last_rows()
    assert {u: st.length for u, st in rows.items()} == {"u1": 2, "u2": 1}
    first.stop(signal.SIGKILL, timeout=5)

    second = worker("disk-b")  # nothing on disk: the table comes from the changelog
    try:
        send(("u1", items[2], 30.0, "a3"))
        # the first worker died before committing, so a1, a2, b1 may be answered again
        # (at-least-once); they must not be applied again
        deadline, answered = time.monotonic() + 60, set()
        while "a3" not in answered and time.monotonic() < deadline:
            recs = consume(kafka_bootstrap, topics.recommendations, 100, timeout=3)
            answered = {r["event_id"] for _, r in recs}
        assert answered == {"a1", "a2", "a3", "b1"}
        after = last_rows()
        assert after["u1"].length == 3  # went on from the recovered row, nothing twice
        assert after["u1"].session == rows["u1"].session
    finally:
        second.stop(signal.SIGKILL, timeout=5)
