"""The Faust app: topics, changelog-backed RocksDB tables, the agent and the web pages,
built from one StreamConfig.

    worker = build(config)        # `hiertcn-stream worker` (stream/cli.py), then runs it
    worker.app.main()

`create_app(config, ...)` does no I/O; `build` first asks the broker for its cluster id
(the local stores live under `<datadir>/<app_id>/<cluster id>/`), reads the export's
session policy, and sets aside local stores that belong to another changelog
(stream/worker/store.py). Importing this module builds nothing: `faust -A
stream.worker.app worker` gets `app` built from the environment at its first access.
The model export itself is loaded when partitions are first assigned (the deployment
in force on the `models` topic, else `export_dir`), then swapped live between
micro-batches (stream/worker/model_holder.py).

One table, `user_state` (key = user id, value raw bytes, never JSON lists of floats):
a user's whole state in one row (stream/worker/rows.py), so that a crash can never leave
one part of it newer than another. Its parts are the design's three:
- session meta: orjson {model version, session id, last event time, length, clicked
  items, partition and offset of the last event applied, sessions rolled};
- GRU state: the long-term state h (float32);
- TCN window: the current session's cached TCN layer inputs, session sums and the
  latest embedding (float32).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import faust

from stream.config import DLQ_MAX_BYTES, StreamConfig
from stream.worker import failures, faust_fixes, store, web
from stream.worker.faust_settings import FAUST_CLIENT_SETTINGS
from stream.worker.agents import register
from stream.worker.model_holder import ModelHolder
from stream.worker.publisher import Publisher
from stream.worker.recommend import Policy
from stream.worker.session_policy import resolve_policy

log = logging.getLogger(__name__)


@dataclass
class Worker:
    app: faust.App
    config: StreamConfig
    clicks: faust.TopicT  # the outputs are the publisher's: names in config
    tables: dict[str, faust.Table]  # name -> table: just "user_state"
    policy: Policy  # session policy: the export's, or the config's overrides
    model: ModelHolder  # the models serving (current, canary), swapped live; /ready/ waits
    store_dir: Path  # Faust's datadir: <datadir>/<app_id>/<cluster id>
    publisher: Publisher  # the outputs' librdkafka producer (stream/worker/publisher.py)
    # what the web pages read (stream/worker/web.py)
    last_batch: float = field(default_factory=time.monotonic)  # /health/ tells a stall by it
    assigned: bool = False  # partitions assigned and tables recovered: /ready/ needs it


def rocksdb_options() -> dict:
    """Per-partition RocksDB sizing. Faust's defaults (2 GiB block cache and 3 x 64 MiB
    write buffers per partition) would reserve gigabytes for a few partitions. The
    access is point reads and writes of whole rows: per batch one get and one put per
    user, in the event's partition (stream/worker/agents.py), so
    - block cache 32 MiB: holds the blocks of the users active lately (a row is the
      size of the model's GRU state + TCN window, KiBs); a miss is one block read;
    - write buffers 2 x 32 MiB: a row is ~37 KB and about 0.7 are written per click, so
      8 MiB memtables flushed every ~220 rows (every other batch) and the flushes and
      compactions competed with the worker for the cores. Measured (python -m
      benchmarks.streambench, concurrent workload, one worker, load ~1.4): 8 MiB ->
      1,961 events/s, 32 MiB -> 2,142 (+9%); a bare put loop of 37 KB rows: 8 MiB ->
      8.7k puts/s, 32 MiB -> 10.1k, 64 MiB -> 16k (not taken: 8 partitions in one pod
      would reserve 1 GiB of memtables);
    - Faust's bloom filter (3 bits/key) stays: the reads no longer probe other
      partitions' stores with it, but a get of a new user (no row) still uses it;
    - max_open_files 256: bounded file handles per partition store.
    A fresh dict each time: the store pops keys out of it."""
    return {"block_cache_size": 32 << 20, "write_buffer_size": 32 << 20,
            "max_write_buffer_number": 2, "max_open_files": 256}


def create_app(config: StreamConfig, *, cluster_id: str, policy: Policy) -> Worker:
    """The app, its topics, table, agent and pages; no I/O. `cluster_id` keys the local
    store; `policy`: see stream/worker/session_policy.py."""
    datadir = store.store_dir(config, cluster_id)
    app = faust.App(
        config.app_id,  # also the consumer group and the changelog prefix
        broker=config.faust_broker() if config.bootstrap_servers else "kafka://localhost:9092",
        broker_credentials=config.faust_credentials(),
        store="rocksdb://",
        datadir=str(datadir),
        topic_partitions=config.partitions,  # changelogs must match the source topic
        topic_replication_factor=1,
        web_host=config.web_host,
        web_port=config.web_port,
        key_serializer="raw",
        value_serializer="raw",  # we decode with orjson ourselves: a bad event is ours
        # Faust's producer now sends only the table's changelog (flushed by Faust before
        # each commit) and the sweep's events; the outputs are the publisher's
        producer_max_request_size=DLQ_MAX_BYTES,
        **FAUST_CLIENT_SETTINGS,
    )
    web.choose_web(app, config.web_debug_pages)  # before any page: only ours are served
    failures.reveal_user_data(config.log_user_data)

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=config.partitions)

    user_state = app.Table("user_state", key_type=str, value_type=bytes,
                           partitions=config.partitions, options=rocksdb_options())
    worker = Worker(app, config, topic(config.clicks_topic), {"user_state": user_state}, policy,
                    ModelHolder(config), datadir, Publisher(config))
    faust_fixes.install(app, config.clicks_topic)  # before it starts: no click skipped
    web.register_pages(worker)
    register(worker)  # the agent and the sweep
    return worker


def build(config: StreamConfig) -> Worker:
    """`create_app` with what it needs from outside: the broker's cluster id and the
    export's session policy; then the local stores are checked against their
    changelogs, before Faust opens any of them."""
    worker = create_app(config, cluster_id=store.cluster_id(config),
                        policy=resolve_policy(config))
    worker.store_dir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    log.info("tables under %s", worker.store_dir)
    if (config.datadir / "v1").is_dir():
        log.warning("%s holds tables of the old layout, shared by every app and cluster: "
                    "not used any more, it can be deleted", config.datadir / "v1")
    store.check_local_stores(worker)
    return worker


_built: Worker | None = None


def __getattr__(name: str):
    """`app` and `worker` for `faust -A stream.worker.app`: built from the environment
    on first access, so that importing this module does nothing."""
    global _built
    if name not in ("app", "worker"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _built is None:
        _built = build(StreamConfig.resolve())
    return _built.app if name == "app" else _built
