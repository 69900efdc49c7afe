"""The Faust app: topics, changelog-backed RocksDB tables, and the agent, built from
one StreamConfig. `faust -A stream.worker.app worker` (the Procfile) imports `app` from here;
building it does no I/O: the model export is loaded when the worker starts.

One table, `user_state` (key = user id, value raw bytes, never JSON lists of floats):
a user's whole state in one row (stream/worker/rows.py), so that a crash can never leave one
part of it newer than another. Its parts are the design's three:
- session meta: orjson {model version, session id, last event time, length, clicked
  items, partition and offset of the last event applied, sessions rolled};
- GRU state: the long-term state h (float32);
- TCN window: the current session's cached TCN layer inputs, session sums and the
  latest embedding (float32).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faust

from stream.worker import faust_fixes
from stream.config import DLQ_MAX_BYTES, StreamConfig

log = logging.getLogger(__name__)

TABLES = ("user_state",)


@dataclass
class Worker:
    app: faust.App
    config: StreamConfig
    clicks: faust.TopicT
    recommendations: faust.TopicT
    embeddings: faust.TopicT
    dlq: faust.TopicT
    tables: dict[str, faust.Table]


def rocksdb_options() -> dict:
    """Per-partition RocksDB sizing. Faust's defaults (2 GiB block cache and 3 x 64 MiB
    write buffers per partition) would reserve gigabytes for a few partitions; the
    states are small and read once per event. A fresh dict each time: the store pops
    keys out of it."""
    return {"block_cache_size": 32 << 20, "write_buffer_size": 8 << 20,
            "max_write_buffer_number": 2, "max_open_files": 256}


def create_app(config: StreamConfig) -> Worker:
    app = faust.App(
        config.app_id,  # also the consumer group and the changelog prefix
        broker=config.faust_broker() if config.bootstrap_servers else "kafka://localhost:9092",
        broker_credentials=config.faust_credentials(),
        store="rocksdb://",
        datadir=str(config.datadir),
        topic_partitions=config.partitions,  # changelogs must match the source topic
        topic_replication_factor=1,
        web_host=config.web_host,
        web_port=config.web_port,
        key_serializer="raw",
        value_serializer="raw",  # we decode with orjson ourselves: a bad event is ours
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        producer_linger_ms=5,
        producer_max_request_size=DLQ_MAX_BYTES,
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=config.partitions)

    tables = {name: app.Table(name, key_type=str, value_type=bytes, partitions=config.partitions,
                              options=rocksdb_options())
              for name in TABLES}
    worker = Worker(app, config, topic(config.clicks_topic),
                    topic(config.recommendations_topic), topic(config.embeddings_topic),
                    topic(config.dlq_topic), tables)
    faust_fixes.install(app, config.clicks_topic)  # before it starts: no click skipped
    from stream.worker.agents import register  # the agent needs the Worker it belongs to
    register(worker)
    return worker


worker = create_app(StreamConfig.resolve())
app = worker.app
