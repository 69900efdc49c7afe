"""The ceilings the worker is measured against, on a pre-loaded topic: a raw
confluent-kafka consumer, the Faust consume-only agent (take_events(1000), no sends, no
tables) and the Faust pass-through app (consume, one send per event; no tables, no
model), both passthrough_app.py."""

from __future__ import annotations

import json
import time

from benchmarks.streambench.common import BATCH, PARTITIONS
from benchmarks.streambench.lab import Bench
from benchmarks.streambench.load import MIN_OUTPUTS, Reader, rate_first_to_last


def raw_consume(bench: Bench, topic: str, n: int) -> dict:
    """Events/s of one consumer reading the n messages from the start."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bench.bootstrap, "group.id": bench.name("raw"),
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    got, first, t_assign = 0, None, time.perf_counter()
    deadline = time.monotonic() + 60
    try:
        while got < n and time.monotonic() < deadline:
            msgs = c.consume(1000, 0.5)
            if msgs and first is None:
                first = time.perf_counter()
            got += sum(1 for m in msgs if not m.error())
        end = time.perf_counter()
    finally:
        c.close()
    if got < n:
        raise RuntimeError(f"raw consumer read only {got} of {n}")
    return {"events_per_s": round(n / (end - first), 1),
            "events_per_s_incl_connect": round(n / (end - t_assign), 1),
            "seconds": round(end - first, 3)}


CONSUME_ONLY_BATCH = 1000


def faust_consume_only(bench: Bench, topic: str, n: int) -> dict:
    """Events/s of the consume-only agent reading the n messages from the start: from
    its first batch to the batch that made n (or --window-s), timed by the agent."""
    app_id = bench.name("consume-only")
    report = bench.work / f"{app_id}.json"
    proc = bench.passthrough_app(app_id, topic, None, CONSUME_ONLY_BATCH, env={
        "PT_SEND": "0", "PT_EXPECT": str(n), "PT_WINDOW_S": str(bench.args.window_s),
        "PT_REPORT": str(report)})
    proc.wait_until(report.exists, bench.args.phase_timeout, "done reading")
    bench.retire([proc])
    got = json.loads(report.read_text())
    timed = got["events"] - got["first_batch"]  # events after the clock started
    if got["events"] < MIN_OUTPUTS or got["seconds"] <= 0:
        raise RuntimeError(f"consume-only agent read {got} of {n}:\n{proc.tail()}")
    return {"events_per_s": round(timed / got["seconds"], 1),
            "seconds": round(got["seconds"], 3), "events": got["events"],
            "batch": CONSUME_ONLY_BATCH}


def passthrough(bench: Bench, topic: str, n: int) -> dict:
    """First to n-th output message of the pass-through app, by their Kafka timestamps
    (LogAppendTime: when each reached the broker)."""
    out = bench.name("pt-out")
    bench.topics([out], output=True)
    reader = Reader(bench.bootstrap, out, n, timeout=bench.args.phase_timeout,
                    window_s=bench.args.window_s)
    reader.start()
    proc = bench.passthrough_app(bench.name("pt"), topic, out, BATCH)
    got = reader.wait(bench.args.phase_timeout, [proc])
    bench.retire([proc])
    if got < MIN_OUTPUTS:
        raise RuntimeError(f"pass-through produced {got} of {n}:\n{proc.tail()}")
    return {**rate_first_to_last(reader.kafka_ts, n), "batch": BATCH,
            "output_timestamp_type": reader.timestamp_type()}
