"""The two workloads the worker is measured on, each with its own ceilings:

- concurrent: many users (--users) replaying their own real sequences at once,
  interleaved (schedule.py, loadgen.py): most micro-batches hold many users;
- bursty: the MovieLens log replayed in event-time order (stream.tools.replay): users
  rate in bursts, so a micro-batch holds a few users with many events each.

For each: n clicks pre-loaded into a topic; on it the raw consume and Faust consume-only
ceilings and the worker's maximum rate (drained as fast as it can); then a fresh worker
fed the workload at half that rate, each click stamped with its send time."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from benchmarks.streambench import ceilings, workers
from benchmarks.streambench.common import PARTITIONS, log
from benchmarks.streambench.lab import Bench
from benchmarks.streambench.load import produce
from benchmarks.streambench.loadgen import describe
from benchmarks.streambench.schedule import Schedule, Send, build, histories

PRELOAD_RATE = 1000.0  # only the order of a pre-loaded topic matters; any rate will do
WINDOW = 200  # the worker's default micro-batch (StreamConfig.batch_size)


def users_per_window(messages: list, window: int = WINDOW) -> float:
    """Mean distinct users per `window` consecutive clicks: about the users of one
    micro-batch, i.e. the table rows it reads and writes (per user, not per event)."""
    counts = [len({k for k, _, _ in messages[i:i + window]})
              for i in range(0, len(messages), window)]
    return round(sum(counts) / len(counts), 1) if counts else 0.0


@dataclass
class Workload:
    name: str
    messages: list  # [(key, value, event_id)] in send order: the pre-loaded clicks
    # (events/s, seconds) -> (the schedule, what it holds)
    at_rate: Callable[[float, float], tuple[list[Send], dict]]
    info: dict


def concurrent(events, users: int, n: int, seed: int = 0) -> Workload:
    """`events`: load_events' frame (MovieLens clicks in event-time order)."""
    hist = histories(events)
    pre: Schedule = build(hist, users, PRELOAD_RATE, n / PRELOAD_RATE, seed=seed)
    log(f"   concurrent pre-load: {describe(pre)}")

    def at_rate(rate: float, seconds: float) -> tuple[list[Send], dict]:
        sched = build(hist, users, rate, seconds, seed=seed + 1)
        log(f"   concurrent at {rate:,.0f}/s: {describe(sched)}")
        return sched.sends, sched.info
    messages = [(s.key, s.value, s.event_id) for s in pre.sends]
    return Workload("concurrent", messages, at_rate,
                    {"users": users, "preload_schedule": pre.info,
                     "users_per_200_clicks": users_per_window(messages)})


def bursty(messages: list, n: int) -> Workload:
    """`messages`: every MovieLens click in event-time order (common.load_messages)."""
    def at_rate(rate: float, seconds: float) -> tuple[list[Send], dict]:
        # the clicks the maximum rate was measured on, no further: later parts of the
        # log hold other users and other bursts, and half of one part's rate need
        # not be half of another's
        m = min(n, len(messages), max(1, int(rate * seconds)))
        sends = [Send(i / rate, k, v, e) for i, (k, v, e) in enumerate(messages[:m])]
        info = {"events": m, "offered_events_per_s": round(rate, 1),
                "seconds": round(m / rate, 2),
                "users_with_clicks_in_run": len({k for k, _, _ in messages[:m]}),
                "pacing": "evenly spaced, in event-time order, from the log's start"}
        if m < int(rate * seconds):
            info["note"] = (f"cut to the {n} pre-loaded clicks of the max-rate run: "
                            f"{m / rate:.1f}s instead of {seconds:g}s")
            log(f"   bursty at {rate:,.0f}/s: {info['note']}")
        return sends, info
    users = len({k for k, _, _ in messages[:n]})
    return Workload("bursty", messages[:n], at_rate,
                    {"users": users, "users_note": "distinct users among the pre-loaded "
                     "clicks (the MovieLens log from its start, in event-time order)",
                     "users_per_200_clicks": users_per_window(messages[:n])})


def preload(bench: Bench, w: Workload) -> tuple[str, float]:
    """w's clicks into a fresh topic, as fast as the producer goes; (topic, events/s)."""
    topic = bench.name(f"{w.name}-clicks")
    bench.topics([topic])
    t0 = time.monotonic()
    for key, value, _ in w.messages:
        produce(bench.producer, topic, key, value)
    if bench.producer.flush(60):
        raise RuntimeError(f"pre-loading {topic}: messages not delivered")
    return topic, round(len(w.messages) / (time.monotonic() - t0), 1)


def measure_ceilings(bench: Bench, topic: str, n: int, passthrough: bool) -> dict:
    log("   raw confluent-kafka consume")
    raw = ceilings.raw_consume(bench, topic, n)
    log(f"   {raw['events_per_s']:,.0f} events/s; Faust consume-only agent")
    co = ceilings.faust_consume_only(bench, topic, n)
    out = {"raw_consume": raw, "faust_consume_only": co}
    log(f"   {co['events_per_s']:,.0f} events/s")
    if passthrough:
        log("   Faust pass-through agent")
        out["faust_passthrough"] = ceilings.passthrough(bench, topic, n)
        log(f"   {out['faust_passthrough']['events_per_s']:,.0f} events/s")
    return out


def run(bench: Bench, w: Workload, passthrough: bool = False) -> dict:
    """Every figure of one workload (see the module docstring)."""
    n = len(w.messages)
    log(f"{w.name}: pre-loading {n} clicks into a {PARTITIONS}-partition topic")
    topic, preload_rate = preload(bench, w)
    ceil = measure_ceilings(bench, topic, n, passthrough)
    log(f"{w.name}: full worker, max rate")
    mx = workers.max_rate(bench, 1, topic, w.messages)
    rate = mx["events_per_s"]
    if not rate:
        raise RuntimeError(f"{w.name}: no maximum rate measured: {mx}")
    log(f"   {rate:,.0f} events/s over {mx['outputs']} outputs "
        f"(process_batch {mx.get('process_batch_share_of_wall')} of its wall time)")
    half = rate / 2
    log(f"{w.name}: half load, {half:,.0f} events/s for {bench.args.latency_s:g}s")
    sends, sched_info = w.at_rate(half, bench.args.latency_s)
    lat = workers.latency(bench, 1, sends, half)
    lat["schedule"] = sched_info
    log(f"   p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms, p50 first/last quarter "
        f"{lat.get('p50_ms_first_quarter')}/{lat.get('p50_ms_last_quarter')} ms "
        f"({lat['answered']}/{lat['events']} answered, sent at "
        f"{lat['achieved_events_per_s']:,.0f}/s)")
    co = ceil["faust_consume_only"]["events_per_s"]
    return {"users": w.info["users"], "events_per_s": rate,
            "vs_faust_consume_only": round(rate / co, 4) if co else None,
            "ms_per_event": round(1000.0 / rate, 4) if rate else None,
            "half_load": {k: lat.get(k) for k in (
                "offered_events_per_s", "p50_ms", "p99_ms", "p50_ms_first_quarter",
                "p50_ms_last_quarter")},
            "ceilings": {k: v["events_per_s"] for k, v in ceil.items()},
            "preload_events_per_s": preload_rate, "info": w.info,
            "max_rate_run": mx, "half_load_run": lat, "ceiling_runs": ceil}


def two_workers(bench: Bench, w: Workload) -> dict:
    """Two workers in one group, on an empty topic filled with w's clicks once both are
    in the group (no rebalance inside the window)."""
    log(f"{w.name}: 2 full workers, max rate")
    mx = workers.max_rate(bench, 2, None, w.messages)
    log(f"   {mx['events_per_s']:,.0f} events/s; by worker {mx.get('events_in_by_worker')}")
    return mx
