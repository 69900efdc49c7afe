"""Phase 5: the real worker (`python -m stream.cli worker`, real RocksDB, the full-size
HierTCN), one and two in a consumer group: the maximum rate (first to n-th
recommendation) and the latency at half that rate (the recommendation's Kafka timestamp
minus its click's produce timestamp, matched by event_id)."""

from __future__ import annotations

import time

import numpy as np

from stream.tools.harness import WorkerProcess

from benchmarks.streambench.common import pct
from benchmarks.streambench.lab import Bench
from benchmarks.streambench.load import (MIN_OUTPUTS, Reader, produce, rate_first_to_last,
                                         wait_group_stable)


def start_workers(bench: Bench, count: int, clicks: str, what: str,
                  threads: int | None = None) -> tuple[list[WorkerProcess], dict]:
    app_id = bench.name(what)
    recs, emb, dlq = (f"{app_id}-recs", f"{app_id}-emb", f"{app_id}-dlq")
    bench.topics([recs, emb])
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


def max_rate(bench: Bench, count: int, preloaded: str | None, n: int,
             threads: int | None = None) -> dict:
    """First to n-th recommendation: from the pre-loaded topic (1 worker), or, with
    several workers, from an empty topic filled once every worker is in the group."""
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
        for key, value, _ in bench.events[:n]:
            produce(bench.producer, clicks, key, value)
        bench.producer.flush(60)
        produce_s = round(time.monotonic() - t0, 3)
    got = reader.wait(bench.args.phase_timeout, procs)
    if got < MIN_OUTPUTS:
        raise RuntimeError(f"{count} worker(s) produced {got} of {n} recommendations:\n"
                           + procs[0].tail())
    out = rate_first_to_last(reader.kafka_ts, n)
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
    events = total("hiertcn_events_in_total")
    if rate and events:
        # process_batch time per event over the wall time per event of one worker
        per_event = total("hiertcn_batch_seconds_sum") / events
        out["process_batch_ms_per_event"] = round(per_event * 1000, 3)
        out["process_batch_share_of_wall"] = round(per_event * rate / len(procs), 3)
    return out


def latency(bench: Bench, count: int, rate: float, seconds: float,
            threads: int | None = None) -> dict:
    clicks = bench.name("clicks")
    bench.topics([clicks])
    procs, names = start_workers(bench, count, clicks, f"lat{count}", threads)
    m = min(len(bench.events), max(1, int(rate * seconds)))
    warm = 100
    reader = Reader(bench.bootstrap, names["recs"], warm + m, decode=True,
                    timeout=bench.args.phase_timeout + seconds)
    reader.start()
    wait_ready(bench, procs, names["app_id"])
    # pipeline warm-up: distinct users and ids, at a low rate, answered before timing
    for i, (key, value, eid) in enumerate(bench.events[-warm:]):
        produce(bench.producer, clicks, key, value.replace(eid.encode(), b"warm:" + eid.encode()))
        bench.producer.poll(0)
        time.sleep(0.01)
    bench.producer.flush(30)
    deadline = time.monotonic() + 15
    while reader.count_of("warm:") < warm and time.monotonic() < deadline:
        time.sleep(0.1)
    # the timed run: m events paced at `rate`, each stamped with its produce time
    sent_at: dict[str, int] = {}
    start = time.monotonic()
    for i, (key, value, eid) in enumerate(bench.events[:m]):
        ahead = i / rate - (time.monotonic() - start)
        if ahead > 0.0005:
            time.sleep(ahead)
        ts = int(time.time() * 1000)
        produce(bench.producer, clicks, key, value, ts)
        sent_at[eid] = ts
        if i % 20 == 0:
            bench.producer.poll(0)
    produce_s = time.monotonic() - start
    bench.producer.flush(30)
    reader.wait(bench.args.drain_s, procs)
    reader.stop_flag.set()
    reader.wait(5)
    waited_until = int(time.time() * 1000)
    lat_of, read_of = {}, {}
    for kts, arrived, eid in zip(list(reader.kafka_ts), list(reader.arrived),
                                 list(reader.event_ids)):
        if eid in sent_at and eid not in lat_of:  # the first answer counts
            lat_of[eid] = kts - sent_at[eid]
            read_of[eid] = arrived * 1000 - sent_at[eid]
    # in send order; an event never answered counts with the time it has waited
    # so far, a lower bound (then the percentiles it reaches are lower bounds too)
    missing = [e for e in sent_at if e not in lat_of]
    for e in missing:
        lat_of[e] = read_of[e] = waited_until - sent_at[e]
    lat = [lat_of[e] for e in sent_at]
    read_lat = [read_of[e] for e in sent_at]
    out = {"offered_events_per_s": round(rate, 1),
           "achieved_events_per_s": round(m / produce_s, 1), "events": m,
           "answered": len(lat) - len(missing), "seconds": round(produce_s, 2),
           "unanswered_counted_as_lower_bound": len(missing),
           "warm_up_answered": reader.count_of("warm:")}
    if lat:
        q = max(1, len(lat) // 4)
        out.update({"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                    "mean_ms": round(float(np.mean(lat)), 2), "max_ms": float(max(lat)),
                    "read_p50_ms": pct(read_lat, 50), "read_p99_ms": pct(read_lat, 99),
                    # a backlog that grows shows as a last quarter far above the first
                    "p50_ms_first_quarter": pct(lat[:q], 50),
                    "p50_ms_last_quarter": pct(lat[-q:], 50)})
    out.update(worker_metrics(procs, rate))
    bench.retire(procs)
    return out
