"""`python -m benchmarks.streambench [--quick]`: every phase in one go (see the package
docstring), results to benchmarks/results/stream.json."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.streambench import ceilings, report, workers
from benchmarks.streambench.common import (DATA, PARTITIONS, RESULTS, Deadline, build_export,
                                           load_messages, log, machine)
from benchmarks.streambench.hot_path import hot_path
from benchmarks.streambench.lab import Bench
from benchmarks.streambench.load import warm_producer

PROG = "python -m benchmarks.streambench"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Benchmark the streaming worker against a raw Kafka consumer and a "
                    "Faust pass-through, on a real local Kafka; writes "
                    "benchmarks/results/stream.json and stream_profile.txt.")
    ap.add_argument("--events", type=int, default=20000,
                    help="clicks pre-loaded and consumed by each max-rate run (default: %(default)s)")
    ap.add_argument("--latency-s", type=float, default=15.0,
                    help="seconds of paced input per latency run (default: %(default)s)")
    ap.add_argument("--reps", type=int, default=15,
                    help="timed 200-event batches per session length (default: %(default)s)")
    ap.add_argument("--window-s", type=float, default=15.0,
                    help="a max-rate run stops this long after its first output, or at "
                         "--events outputs (default: %(default)s)")
    ap.add_argument("--drain-s", type=float, default=10.0,
                    help="wait for answers after a latency run (default: %(default)s)")
    ap.add_argument("--no-one-thread", action="store_true",
                    help="skip the extra runs with OMP_NUM_THREADS=1 workers")
    ap.add_argument("--stream-batches", type=int, default=6,
                    help="200-event MovieLens batches timed without Kafka (default: %(default)s)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 5000 events, 8 s windows and latency runs, 5 reps, "
                         "3 stream batches")
    ap.add_argument("--phase-timeout", type=float, default=120.0,
                    help="longest wait for any one phase (default: %(default)s)")
    ap.add_argument("--max-seconds", type=int, default=470,
                    help="hard cap on the whole run; stops everything (default: %(default)s)")
    ap.add_argument("--out", default=str(RESULTS / "stream.json"),
                    help="result file; stream_profile.txt goes beside it (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.quick:
        args.events, args.latency_s, args.reps = min(args.events, 5000), 8.0, 5
        args.stream_batches = min(args.stream_batches, 3)
        args.window_s, args.drain_s = 8.0, 5.0
    return args


def model_figures(export_dir: Path) -> dict:
    from stream.config import StreamConfig
    meta = json.loads((export_dir / "meta.json").read_text())
    return {"n_items": meta["n_items"], "item_dim": meta["item_dim"],
            "receptive_field": meta["receptive_field"], "config": "ModelConfig defaults",
            "top_k": StreamConfig().top_k}


def preload(bench: Bench, n: int) -> tuple[str, float]:
    """Phase 2: n MovieLens clicks into a fresh topic; (topic, events/s)."""
    from stream.config import StreamConfig
    from stream.tools.replay import replay
    topic = bench.name("clicks")
    bench.topics([topic])
    config = StreamConfig.resolve({"bootstrap_servers": bench.bootstrap,
                                   "partitions": PARTITIONS})
    t0 = time.monotonic()
    sent = replay(config, DATA, rate=0, limit=n, topic=topic)
    return topic, round(sent / (time.monotonic() - t0), 1)


def run_workers(bench: Bench, count: int, preloaded: str, n: int,
                threads: int | None) -> dict:
    """Phase 5 for `count` workers: their maximum rate, then the latency at half of it."""
    args = bench.args
    tag = f"x{count}" + (", OMP_NUM_THREADS=1" if threads else "")
    log(f"5. full worker {tag}: max rate")
    mx = workers.max_rate(bench, count, preloaded if count == 1 else None, n, threads)
    log(f"   {mx['events_per_s']:,.0f} events/s over {mx['outputs']} outputs "
        f"(process_batch {mx.get('process_batch_share_of_wall')} of the wall time)")
    log(f"   latency at 50% = {mx['events_per_s'] / 2:,.0f} events/s "
        f"for {args.latency_s:g}s")
    lat = workers.latency(bench, count, mx["events_per_s"] / 2, args.latency_s, threads)
    log(f"   p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms "
        f"({lat['answered']}/{lat['events']} answered)")
    return {"events_per_s": mx["events_per_s"],
            "events_per_s_per_worker": round(mx["events_per_s"] / count, 1),
            "p50_ms": lat.get("p50_ms"), "p99_ms": lat.get("p99_ms"),
            "max_rate_run": mx, "half_load_run": lat}


def kafka_phases(bench: Bench, result: dict, t_start: float) -> None:
    """Phases 2 to 5, their figures into `result`."""
    args = bench.args
    n = min(args.events, len(bench.events))
    log(f"2. pre-loading {n} MovieLens clicks into a {PARTITIONS}-partition topic")
    pre, result["preload_events_per_s"] = preload(bench, n)
    log("3. raw confluent-kafka consume")
    raw = ceilings.raw_consume(bench, pre, n)
    result["raw_consume_events_per_s"], result["raw_consume"] = raw["events_per_s"], raw
    log(f"   raw consume {raw['events_per_s']:,.0f} events/s")
    log("4. Faust pass-through")
    pt = ceilings.passthrough(bench, pre, n)
    result["passthrough_events_per_s"], result["passthrough"] = pt["events_per_s"], pt
    log(f"   pass-through {pt['events_per_s']:,.0f} events/s")
    by_count = {str(c): run_workers(bench, c, pre, n, None) for c in (1, 2)}
    # Extra: the same with one torch/faiss thread per worker (the hot path's
    # fastest setting on this machine), as far as the time cap allows.
    one_thread: dict = {}
    for count, needs_s in ((1, 80), (2, 120)):
        left = args.max_seconds - (time.monotonic() - t_start)
        if args.no_one_thread or left < needs_s:
            one_thread[str(count)] = {"skipped": f"{left:.0f}s left of the cap"
                                      if not args.no_one_thread else "--no-one-thread"}
            continue
        one_thread[str(count)] = run_workers(bench, count, pre, n, 1)
    result["workers_one_thread"] = one_thread
    result["workers"] = by_count
    result["full_worker_events_per_s"] = by_count["1"]["events_per_s"]


def main(argv=None) -> int:
    args = parse_args(argv)
    command = f"{PROG} " + " ".join(sys.argv[1:] if argv is None else argv)
    t_start = time.monotonic()

    def on_alarm(*_):
        raise Deadline(f"benchmark over its {args.max_seconds}s cap")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.max_seconds)

    from stream.tools import localkafka
    result: dict = {"command": command.strip(), "machine": machine(), "events": args.events}
    work = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    broker, bench = None, None
    try:
        log(f"work dir {work}; building the full-size model export")
        export_dir = build_export(work)
        result["model"] = model_figures(export_dir)
        messages = load_messages()
        log("1. hot path without Kafka")
        result.update(hot_path(export_dir, args.reps, args.stream_batches, messages,
                               Path(args.out).with_name("stream_profile.txt")))

        log("starting the local Kafka broker")
        broker = localkafka.start(work / "kafka")
        bench = Bench(args, work, broker, export_dir, messages)
        warm_s = warm_producer(bench.producer, bench.name("warm"))
        log(f"broker {broker.bootstrap}; producer id acquired in {warm_s:.1f}s")
        kafka_phases(bench, result, t_start)
        result["ratios"] = report.ratios(result)
        result["targets"] = report.targets(result)
        result["notes"] = report.notes(result)
    finally:
        signal.alarm(0)
        if bench is not None:
            bench.stop_all()
            bench.producer = None  # closed before the broker goes: no reconnect noise
        if broker is not None:
            broker.stop()
        result["total_seconds"] = round(time.monotonic() - t_start, 1)
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out} in {result['total_seconds']}s")
    print(json.dumps({k: result[k] for k in ("raw_consume_events_per_s",
                      "passthrough_events_per_s", "ratios", "targets")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
