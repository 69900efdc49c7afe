"""The Faust baselines of the stream benchmark (benchmarks/streambench/): pass-through
(consume, send) and consume-only (PT_SEND=0: consume, count, nothing else).

The smallest agent that does what the real worker does around its model call:
micro-batches from `take_events(200, within=0.05)` (the worker's defaults), and one
`send_soon` per event to an output topic, with the worker's producer and commit
settings (stream/worker/faust_settings.py), but no tables, no decoding and no model. Run as a worker
process like the real one:

    PT_BOOTSTRAP=127.0.0.1:9092 PT_APP_ID=pt-1 PT_IN=clicks PT_OUT=pt-out \\
        python benchmarks/streambench/passthrough_app.py worker -l warning

Settings come from the environment (PT_*): PT_PARTITIONS (default 4), PT_BATCH
(200), PT_WITHIN (0.05), PT_DATADIR (Faust's datadir; nothing is stored there).

Consume-only (PT_SEND=0, no PT_OUT): `take_events(PT_BATCH)` and a count, no sends, no
tables: the most a Faust agent reads. It has no output to time, so it times itself:
once PT_EXPECT events came, or PT_WINDOW_S seconds after its first batch, it writes
{"events", "seconds", "first_batch"} (seconds from its first batch to its last) as JSON
to PT_REPORT.
"""

import json
import os
import time

import faust

from stream.worker.faust_settings import FAUST_CLIENT_SETTINGS

env = os.environ
PARTITIONS = int(env.get("PT_PARTITIONS", "4"))
BATCH = int(env.get("PT_BATCH", "200"))
WITHIN = float(env.get("PT_WITHIN", "0.05"))

app = faust.App(
    env["PT_APP_ID"],  # also the consumer group: fresh per run, so it reads from the start
    broker="kafka://" + env["PT_BOOTSTRAP"],
    store="memory://",
    datadir=env.get("PT_DATADIR", "/tmp/passthrough-data"),
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    web_enabled=False,
    key_serializer="raw",
    value_serializer="raw",
    **FAUST_CLIENT_SETTINGS,  # the real worker's consumer/producer settings
)

source = app.topic(env["PT_IN"], key_type=bytes, value_type=bytes, partitions=PARTITIONS)
SEND = env.get("PT_SEND", "1") != "0"


if SEND:
    sink = app.topic(env["PT_OUT"], key_type=bytes, value_type=bytes, partitions=PARTITIONS)

    @app.agent(source)
    async def passthrough(stream):
        async for events in stream.take_events(BATCH, within=WITHIN):
            for event in events:
                sink.send_soon(key=event.message.key, value=event.message.value)
else:
    EXPECT = int(env.get("PT_EXPECT", "0"))
    WINDOW_S = float(env.get("PT_WINDOW_S", "15"))

    @app.agent(source)
    async def consume_only(stream):
        count, first, first_n, reported = 0, None, 0, False
        async for events in stream.take_events(BATCH, within=WITHIN):
            now = time.perf_counter()
            if first is None:
                first, first_n = now, len(events)
            count += len(events)
            if not reported and (count >= EXPECT or now - first >= WINDOW_S):
                report = {"events": count, "seconds": now - first, "first_batch": first_n}
                with open(env["PT_REPORT"] + ".tmp", "w") as f:
                    json.dump(report, f)
                os.replace(env["PT_REPORT"] + ".tmp", env["PT_REPORT"])
                reported = True


if __name__ == "__main__":
    app.main()
