"""The local broker is a real Kafka, and faust-streaming works against it."""

import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer

from stream.admin import create_topics, delete_topics
from stream.tools.harness import REPO, Process

pytestmark = pytest.mark.integration


def _consumer(bootstrap, group, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    return c


def _drain(consumer, want, timeout=60.0):
    """Poll until `want` messages arrived or `timeout` passed."""
    got, deadline = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append(msg)
    return got


def test_round_trip(kafka_bootstrap, unique_name):
    topic = unique_name("t")
    create_topics(kafka_bootstrap, {topic: 2})
    create_topics(kafka_bootstrap, {topic: 2})  # idempotent
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    for i in range(100):
        producer.produce(topic, key=f"k{i % 7}", value=str(i))
    assert producer.flush(30) == 0
    consumer = _consumer(kafka_bootstrap, unique_name("g"), topic)
    try:
        got = _drain(consumer, 100)
    finally:
        consumer.close()
    assert sorted(int(m.value()) for m in got) == list(range(100))
    assert {m.partition() for m in got} == {0, 1}  # keys spread over both
    delete_topics(kafka_bootstrap, [topic])
    delete_topics(kafka_bootstrap, [topic])  # idempotent


class Worker(Process):
    """`python tests/faust_smoke_app.py worker` as a subprocess (no web server: it
    says it is ready by touching $SMOKE_READY)."""

    def __init__(self, env, log):
        self.ready = Path(env["SMOKE_READY"])
        self.ready.unlink(missing_ok=True)
        super().__init__([sys.executable, str(REPO / "tests" / "faust_smoke_app.py"), "worker",
                          "--loglevel", "info", "--without-web"], log, env, append=True)

    def wait_ready(self, timeout=90.0):
        self.wait_until(self.ready.exists, timeout)


def test_faust_worker_counts_in_rocksdb_table(kafka_bootstrap, unique_name, tmp_path):
    app_id = unique_name("app")
    env = {
        "SMOKE_APP_ID": app_id,
        "SMOKE_BOOTSTRAP": kafka_bootstrap,
        "SMOKE_DATADIR": str(tmp_path / "faust"),
        "SMOKE_IN": unique_name("in"),
        "SMOKE_OUT": unique_name("out"),
        "SMOKE_READY": str(tmp_path / "ready"),
        "SMOKE_PARTITIONS": "2",
    }
    # Pre-create everything with the app's partition count, changelog included
    # (faust names it <app id>-<table>-changelog), so nothing is auto-created
    # with the broker's num.partitions=1.
    create_topics(kafka_bootstrap, {env["SMOKE_IN"]: 2, env["SMOKE_OUT"]: 2})
    create_topics(kafka_bootstrap, {f"{app_id}-counts-changelog": 2},
                  config={"cleanup.policy": "compact"})
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    consumer = _consumer(kafka_bootstrap, unique_name("check"), env["SMOKE_OUT"])
    keys = [f"user{i}" for i in range(10)]
    log = tmp_path / "worker.log"

    try:
        # Two runs of the worker: the second must carry on counting from the
        # table state the first left (RocksDB on disk + changelog in Kafka).
        for run in range(2):
            worker = Worker(env, log)
            try:
                worker.wait_ready()
                for _ in range(10):
                    for k in keys:
                        producer.produce(env["SMOKE_IN"], key=k, value=b'{"event": "click"}')
                assert producer.flush(30) == 0
                got = _drain(consumer, 100)
                assert len(got) == 100, f"{len(got)} outputs of 100; worker: {worker.tail()}"
                counts = defaultdict(list)
                for m in got:
                    body = orjson.loads(m.value())
                    assert body["key"] == m.key().decode()
                    counts[body["key"]].append(body["count"])
                first = 10 * run + 1
                assert {k: sorted(v) for k, v in counts.items()} == {
                    k: list(range(first, first + 10)) for k in keys}
            finally:
                rc = worker.stop(timeout=30)  # faust shuts down cleanly on TERM
            assert rc == 0, f"worker exit code {rc} (-9: it ignored SIGTERM): {worker.tail()}"
    finally:
        consumer.close()
