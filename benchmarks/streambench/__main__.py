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

from benchmarks.streambench import report, workloads
from benchmarks.streambench.common import (DATA, RESULTS, Deadline, build_export,
                                           load_messages, loadavg, log, machine)
from benchmarks.streambench.hot_path import hot_path
from benchmarks.streambench.lab import Bench
from benchmarks.streambench.load import warm_producer

PROG = "python -m benchmarks.streambench"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Benchmark the streaming worker on two workloads (many users at "
                    "once; the MovieLens log in event-time order) against a raw Kafka "
                    "consumer, a Faust consume-only agent and a Faust pass-through, on a "
                    "real local Kafka; writes benchmarks/results/stream.json and "
                    "stream_profile.txt.")
    ap.add_argument("--events", type=int, default=20000,
                    help="clicks pre-loaded and consumed by each max-rate run (default: %(default)s)")
    ap.add_argument("--users", type=int, default=10000,
                    help="users of the concurrent workload; more than the data has are "
                         "reused as '<uid>#<k>' (default: %(default)s)")
    ap.add_argument("--latency-s", type=float, default=15.0,
                    help="seconds of scheduled input per half-load run (default: %(default)s)")
    ap.add_argument("--reps", type=int, default=15,
                    help="timed 200-event batches per session length (default: %(default)s)")
    ap.add_argument("--window-s", type=float, default=15.0,
                    help="a max-rate run stops this long after its first output, or at "
                         "--events outputs (default: %(default)s)")
    ap.add_argument("--drain-s", type=float, default=10.0,
                    help="wait for answers after a latency run (default: %(default)s)")
    ap.add_argument("--stream-batches", type=int, default=6,
                    help="200-event MovieLens batches timed without Kafka (default: %(default)s)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 5000 events, 8 s windows and latency runs, 5 reps, "
                         "3 stream batches")
    ap.add_argument("--phase-timeout", type=float, default=120.0,
                    help="longest wait for any one phase (default: %(default)s)")
    ap.add_argument("--max-seconds", type=int, default=900,
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


def kafka_phases(bench: Bench, result: dict) -> None:
    """Both workloads with their ceilings, then two workers; figures into `result`."""
    from stream.tools.replay import load_events
    n = min(bench.args.events, len(bench.events))
    conc = workloads.concurrent(load_events(DATA), bench.args.users, n)
    by_name = {"concurrent": workloads.run(bench, conc, passthrough=True),
               "bursty": workloads.run(bench, workloads.bursty(bench.events, n))}
    result["workloads"] = by_name
    from stream.config import StreamConfig
    result["worker_batch_within_s"] = StreamConfig().batch_within_s
    ceil = by_name["concurrent"]["ceilings"]
    result["ceilings"] = {"raw_consume_events_per_s": ceil["raw_consume"],
                          "faust_consume_only_events_per_s": ceil["faust_consume_only"],
                          "faust_passthrough_events_per_s": ceil["faust_passthrough"],
                          "measured_on": "the concurrent workload's pre-loaded topic"}
    # the keys of earlier results
    result["raw_consume_events_per_s"] = ceil["raw_consume"]
    result["passthrough_events_per_s"] = ceil["faust_passthrough"]
    two = workloads.two_workers(bench, conc)
    result["two_workers"] = two
    result["two_workers_vs_one"] = round(
        two["events_per_s"] / by_name["concurrent"]["events_per_s"], 3)


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
        kafka_phases(bench, result)
        result["machine"]["loadavg_at_end"] = loadavg()
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
    result["machine"].setdefault("loadavg_at_end", loadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out} in {result['total_seconds']}s")
    print(json.dumps({k: result.get(k) for k in ("ceilings", "ratios")}, indent=2))
    print("\n".join(report.target_lines(result.get("targets", {}))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
