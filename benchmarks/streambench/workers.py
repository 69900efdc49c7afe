"""The real worker (`python -m stream.cli worker`, real RocksDB, the full-size HierTCN),
one or two in a consumer group, on a workload: the maximum rate (first to n-th
recommendation) and the latency at a lower offered rate (the recommendation's broker
timestamp, LogAppendTime, minus its click's producer timestamp, matched by event_id).
Only the worker's command line, its topics and its /ready/ and /metrics/ pages are used."""

from __future__ import annotations

import time

import numpy as np
import orjson

from stream.records import encode_click
from stream.tools.harness import WorkerProcess

from benchmarks.streambench.common import pct
from benchmarks.streambench.lab import Bench
from benchmarks.streambench.load import (MIN_OUTPUTS, Reader, produce, rate_first_to_last,
                                         wait_group_stable)
from benchmarks.streambench.loadgen import send_schedule
from benchmarks.streambench.schedule import Send

WARM = 100  # warm-up clicks before a latency run, answered before the clock starts


def start_workers(bench: Bench, count: int, clicks: str, what: str,
                  threads: int | None = None) -> tuple[list[WorkerProcess], dict]:
    app_id = bench.name(what)
    recs, emb, dlq = (f"{app_id}-recs", f"{app_id}-emb", f"{app_id}-dlq")
    bench.topics([recs], output=True)
    bench.topics([emb])
    procs = []
    for i in range(count):
        procs.append(bench.worker(app_id, i, clicks, recs, emb, dlq, threads))
        if i + 1 < count:
            # one at a time, as tests/test_stream.py does: the first creates the
            # changelog topics; two racing on a fresh app crash with
            # PartitionsMismatch (a changelog seen with 0 partitions)
            procs[-1].wait_ready(bench.args.phase_timeout)
    return procs, {"app_id": app_id, "recs": recs}


def wait_ready(bench: Bench, procs: list[WorkerProcess], app_id: str) -> None:
    for p in procs:
        p.wait_ready(bench.args.phase_timeout)
    wait_group_stable(bench.bootstrap, app_id, len(procs))
    time.sleep(1.0)  # table recovery after the last rebalance (empty changelogs)
    bench.reap_retired()  # the previous phase's workers are gone before we time


def max_rate(bench: Bench, count: int, preloaded: str | None, messages: list,
             threads: int | None = None) -> dict:
    """First to n-th recommendation (n = len(messages)): from the pre-loaded topic
    holding `messages`, or (None) from an empty topic filled with them once every worker
    is in the group."""
    n = len(messages)
    clicks = preloaded or bench.name("clicks")
    if preloaded is None:
        bench.topics([clicks])
    else:
        bench.reap_retired()  # it starts consuming as soon as it is assigned
    procs, names = start_workers(bench, count, clicks, f"max{count}", threads)
    reader = Reader(bench.bootstrap, names["recs"], n, timeout=bench.args.phase_timeout,
                    window_s=bench.args.window_s)
    reader.start()
    produce_s = None
    if preloaded is None:
        wait_ready(bench, procs, names["app_id"])
        t0 = time.monotonic()
        for key, value, _ in messages:
            produce(bench.producer, clicks, key, value)
        bench.producer.flush(60)
        produce_s = round(time.monotonic() - t0, 3)
    got = reader.wait(bench.args.phase_timeout, procs)
    if got < MIN_OUTPUTS:
        raise RuntimeError(f"{count} worker(s) produced {got} of {n} recommendations:\n"
                           + procs[0].tail())
    out = rate_first_to_last(reader.kafka_ts, n)
    out["output_timestamp_type"] = reader.timestamp_type()
    out["input"] = "pre-loaded topic" if preloaded else \
        f"produced after the group was stable ({produce_s}s to produce)"
    out.update(worker_metrics(procs, out["events_per_s"]))
    bench.retire(procs)
    return out


def worker_metrics(procs: list[WorkerProcess], rate: float | None) -> dict:
    """From the workers' /metrics/; `rate`: the events/s they ran at, together."""
    per = []
    for p in procs:
        try:
            per.append(p.counters())
        except OSError:
            per.append({})
    def total(key):
        return sum(m.get(key, 0.0) for m in per)
    batches = total("hiertcn_batch_seconds_count")
    out = {"events_in_by_worker": [int(m.get("hiertcn_events_in_total", 0)) for m in per],
           "mean_batch_events": round(total("hiertcn_batch_events_sum") / batches, 1)
           if batches else None,
           "process_batch_ms_per_batch": round(total("hiertcn_batch_seconds_sum")
                                               / batches * 1000, 2) if batches else None}
    for name, key in (("event_wait_ms_mean", "hiertcn_event_wait_seconds"),
                      ("event_to_queued_ms_mean", "hiertcn_event_to_recommendation_seconds"),
                      ("delivery_ms_mean", "hiertcn_delivery_seconds")):
        n = total(f"{key}_count")  # stage means: where a click's latency goes
        out[name] = round(total(f"{key}_sum") / n * 1000, 2) if n else None
    events = total("hiertcn_events_in_total")
    if rate and events:
        # process_batch time per event over the wall time per event of one worker
        per_event = total("hiertcn_batch_seconds_sum") / events
        out["process_batch_ms_per_event"] = round(per_event * 1000, 3)
        out["process_batch_share_of_wall"] = round(per_event * rate / len(procs), 3)
    return out


def warm_up(sends: list[Send]) -> list[Send]:
    """WARM clicks of users of their own ("warm-<i>"), items of the run, at the run's
    first event time (the worker's sweep clock is not pushed ahead), 10 ms apart."""
    clicks = [orjson.loads(s.value) for s in sends[:WARM]]
    ts = clicks[0]["ts"]
    return [Send(i * 0.01, f"warm-{i}".encode(),
                 encode_click(f"warm-{i}", clicks[i % len(clicks)]["item_id"], ts, "click",
                              f"warm:{i}"), f"warm:{i}") for i in range(WARM)]


def latency(bench: Bench, count: int, sends: list[Send], offered: float,
            threads: int | None = None) -> dict:
    """`sends` on their schedule (`offered` events/s) to fresh workers; every click's
    latency, in send order: an unanswered one counts as waited until the run's end."""
    clicks = bench.name("clicks")
    bench.topics([clicks])
    procs, names = start_workers(bench, count, clicks, f"lat{count}", threads)
    seconds = sends[-1].at if sends else 0.0
    reader = Reader(bench.bootstrap, names["recs"], WARM + len(sends), decode=True,
                    timeout=bench.args.phase_timeout + seconds)
    reader.start()
    wait_ready(bench, procs, names["app_id"])
    send_schedule(bench.producer, clicks, warm_up(sends))
    bench.producer.flush(30)
    deadline = time.monotonic() + 15
    while reader.count_of("warm:") < WARM and time.monotonic() < deadline:
        time.sleep(0.1)
    # the timed run: each click stamped with its send time
    sent = send_schedule(bench.producer, clicks, sends)
    bench.producer.flush(30)
    reader.wait(bench.args.drain_s, procs)
    reader.stop_flag.set()
    reader.wait(5)
    end = int(time.time() * 1000)  # the run's end: the unanswered wait until here
    lat_of, read_of = {}, {}  # at the broker; at the reading consumer
    for kts, arrived, eid in zip(list(reader.kafka_ts), list(reader.arrived),
                                 list(reader.event_ids)):
        if eid in sent.sent_ms and eid not in lat_of:  # the first answer counts
            lat_of[eid] = kts - sent.sent_ms[eid]
            read_of[eid] = arrived * 1000 - sent.sent_ms[eid]
    lat = [lat_of.get(e, end - ms) for e, ms in sent.sent_ms.items()]
    read_lat = [read_of.get(e, end - ms) for e, ms in sent.sent_ms.items()]
    missing = len(lat) - len(lat_of)
    out = {"offered_events_per_s": round(offered, 1), **sent.summary(),
           "events": len(sends), "answered": len(lat_of), "unanswered": missing,
           "unanswered_counted_as": "waited until the run's end (drain included)",
           "output_timestamp_type": reader.timestamp_type(),
           "warm_up_answered": reader.count_of("warm:")}
    if lat:
        q = max(1, len(lat) // 4)
        out.update({"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                    "mean_ms": round(float(np.mean(lat)), 2), "max_ms": float(max(lat)),
                    "read_p50_ms": pct(read_lat, 50), "read_p99_ms": pct(read_lat, 99),
                    # a backlog that grows shows as a last quarter far above the first
                    "p50_ms_first_quarter": pct(lat[:q], 50),
                    "p50_ms_last_quarter": pct(lat[-q:], 50)})
    out.update(worker_metrics(procs, offered))
    bench.retire(procs)
    return out
