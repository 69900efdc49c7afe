"""Phases 3 and 4: the ceilings the worker is measured against, on the pre-loaded
topic: a raw confluent-kafka consumer, and the Faust pass-through app (consume, send;
no tables, no model)."""

from __future__ import annotations

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


def passthrough(bench: Bench, topic: str, n: int) -> dict:
    """First to n-th output message of the pass-through app, by Kafka timestamps."""
    out = bench.name("pt-out")
    bench.topics([out])
    reader = Reader(bench.bootstrap, out, n, timeout=bench.args.phase_timeout,
                    window_s=bench.args.window_s)
    reader.start()
    proc = bench.passthrough_app(bench.name("pt"), topic, out, BATCH)
    got = reader.wait(bench.args.phase_timeout, [proc])
    bench.retire([proc])
    if got < MIN_OUTPUTS:
        raise RuntimeError(f"pass-through produced {got} of {n}:\n{proc.tail()}")
    return rate_first_to_last(reader.kafka_ts, n)
