"""Smallest faust app that exercises what the real worker needs.

An agent reads keyed events, counts them per key in a RocksDB-backed Table
(changelogged to Kafka) and sends (key, count) to an output topic.
Run by tests/test_localkafka.py as `python tests/faust_smoke_app.py worker`;
everything comes from the environment so one test can run it twice.
"""

import os
from pathlib import Path

import faust

env = os.environ
PARTITIONS = int(env.get("SMOKE_PARTITIONS", "2"))

app = faust.App(
    env["SMOKE_APP_ID"],  # also the consumer group id and changelog prefix
    broker="kafka://" + env["SMOKE_BOOTSTRAP"],
    store="rocksdb://",
    datadir=env["SMOKE_DATADIR"],
    # Every topic the app creates (changelog, repartition) gets this many
    # partitions; it must equal the source topic's count, or faust refuses
    # to co-partition the table with the stream.
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    # The HTTP server is not needed here; faust would otherwise bind :6066.
    web_enabled=False,
    # Short timeouts: a dead worker's partitions move on quickly in tests.
    broker_session_timeout=10.0,
    broker_heartbeat_interval=1.0,
    broker_commit_every=100,
    broker_commit_interval=0.5,
    consumer_auto_offset_reset="earliest",
)

# value_type=str alone would still decode with the app's value_serializer
# ('json'); keys default to 'raw', so key_type=str gives str keys.
source = app.topic(env["SMOKE_IN"], key_type=str, value_serializer="json",
                   partitions=PARTITIONS)
sink = app.topic(env["SMOKE_OUT"], key_type=str, value_serializer="json",
                 partitions=PARTITIONS)

counts = app.Table(
    "counts",
    default=int,
    partitions=PARTITIONS,
    # Passed to faust.stores.rocksdb.RocksDBOptions. The defaults are sized for
    # production (2 GiB block cache and 3x64 MiB write buffers per partition).
    options={"block_cache_size": 8 << 20, "write_buffer_size": 4 << 20,
             "max_write_buffer_number": 2, "max_open_files": 64},
)


@app.agent(source)
async def count(stream):
    async for key, _value in stream.items():
        counts[key] += 1
        await sink.send(key=key, value={"key": key, "count": counts[key]})


@app.on_rebalance_complete.connect
async def mark_ready(sender, **kwargs):
    # Tell the test partitions are assigned and tables recovered (the same
    # moment the worker logs "Worker ready"); faust has no ready file itself.
    Path(env["SMOKE_READY"]).touch()


if __name__ == "__main__":
    app.main()
