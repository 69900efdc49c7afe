"""`python -m benchmarks.streambench.worker_profile`: where the real worker's time goes
(issue 13), by py-spy, while it drains a backlog.

On a local broker (stream.tools.localkafka), for each workload the stream benchmark
uses (concurrent: the schedule of its max-rate run, workloads.concurrent; bursty: the
MovieLens log in event-time order, workloads.bursty), pre-load N clicks into a fresh
4-partition topic, start one worker on it as the benchmark does (workers.start_workers:
`python -m stream.cli worker`, the full-size model of common.build_export, real
RocksDB), and once its first recommendation is out and --before-s more have passed,
run `py-spy record --pid <worker> --nonblocking --idle --threads --format raw` for
--duration seconds. The worker's events/s during the profile (its events_in counter,
and the recommendations read back by their LogAppendTime) and in the seconds before
(no py-spy) tie the profile to a throughput; the collapsed stacks are summarised by
stacks.py. Everything goes to benchmarks/results/stream_worker_profile.txt.

py-spy needs ptrace on the worker (root, or kernel.yama.ptrace_scope 0); it is in the
`dev` extra (`pip install -e .[dev]`)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.streambench import stacks, workers, workloads
from benchmarks.streambench.common import (DATA, PARTITIONS, RESULTS, Deadline, build_export,
                                           load_messages, loadavg, log)
from benchmarks.streambench.lab import Bench
from benchmarks.streambench.load import Reader, warm_producer

PROG = "python -m benchmarks.streambench.worker_profile"
OUT = RESULTS / "stream_worker_profile.txt"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[1])
    ap.add_argument("--workloads", default="concurrent,bursty",
                    help="comma-separated, of concurrent and bursty (default: %(default)s)")
    ap.add_argument("--events", type=int, default=60000,
                    help="clicks pre-loaded per workload: enough that the backlog outlasts "
                         "--before-s + --duration (default: %(default)s)")
    ap.add_argument("--users", type=int, default=10000,
                    help="users of the concurrent workload (default: %(default)s)")
    ap.add_argument("--before-s", type=float, default=5.0,
                    help="seconds after the first recommendation before py-spy starts; "
                         "all but the first of them measure the rate without py-spy "
                         "(default: %(default)s)")
    ap.add_argument("--duration", type=int, default=12,
                    help="seconds py-spy samples (default: %(default)s)")
    ap.add_argument("--rate", type=int, default=200,
                    help="py-spy samples per second (default: %(default)s)")
    ap.add_argument("--py-spy", default=None,
                    help="the py-spy binary (default: beside this Python, else on PATH)")
    ap.add_argument("--keep-raw", default=None,
                    help="a folder to keep py-spy's collapsed stacks in (default: dropped)")
    ap.add_argument("--phase-timeout", type=float, default=120.0,
                    help="longest wait for the worker's first answer (default: %(default)s)")
    ap.add_argument("--max-seconds", type=int, default=900,
                    help="hard cap on the whole run (default: %(default)s)")
    ap.add_argument("--out", default=str(OUT), help="report file (default: %(default)s)")
    args = ap.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = set(args.workloads) - {"concurrent", "bursty"}
    if bad:
        ap.error(f"unknown workload(s): {', '.join(sorted(bad))}")
    return args


def find_py_spy(given: str | None) -> str:
    for cand in (given, str(Path(sys.executable).parent / "py-spy"), shutil.which("py-spy")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    raise SystemExit("py-spy not found: pip install -e .[dev] (or pass --py-spy)")


def in_window(kafka_ts: list[int], t0: float, t1: float) -> int:
    lo, hi = t0 * 1000.0, t1 * 1000.0
    return sum(1 for ts in kafka_ts if lo <= ts < hi)


def rates(c0: dict, c1: dict, seconds: float) -> dict:
    """The worker's own counters over the profile: events/s, process_batch's share."""
    def d(key):
        return c1.get(key, 0.0) - c0.get(key, 0.0)
    batches = d("hiertcn_batch_seconds_count")
    return {"events_per_s": d("hiertcn_events_in_total") / seconds if seconds else 0.0,
            "process_batch_share": d("hiertcn_batch_seconds_sum") / seconds if seconds else 0.0,
            "mean_batch_events": d("hiertcn_batch_events_sum") / batches if batches else 0.0,
            "events_in_at_end": int(c1.get("hiertcn_events_in_total", 0))}


def wait_first(reader: Reader, proc, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while not reader.arrived:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"worker exited {proc.proc.returncode}:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no recommendation after {timeout:g}s:\n{proc.tail()}")
        time.sleep(0.05)
    return reader.arrived[0]


def record(py_spy: str, pid: int, seconds: int, rate: int, raw: Path) -> list[str]:
    cmd = [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(rate),
           "--format", "raw", "--output", str(raw), "--nonblocking", "--idle", "--threads",
           "--full-filenames"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0 or not raw.exists():
        raise RuntimeError(f"py-spy failed (rc {done.returncode}; it needs ptrace on the "
                           f"worker: root or kernel.yama.ptrace_scope=0):\n"
                           f"{done.stderr[-2000:]}")
    return cmd


def profile(bench: Bench, w: workloads.Workload, args, py_spy: str, preload_note: str) -> str:
    """One workload: pre-load, one worker, py-spy while it drains; the report section."""
    n = len(w.messages)
    log(f"{w.name}: pre-loading {n} clicks into a {PARTITIONS}-partition topic")
    topic, preload_rate = workloads.preload(bench, w)
    procs, names = workers.start_workers(bench, 1, topic, f"prof-{w.name}")
    proc = procs[0]
    reader = Reader(bench.bootstrap, names["recs"], n,
                    timeout=args.phase_timeout + args.before_s + args.duration + 120)
    reader.start()
    try:
        first = wait_first(reader, proc, args.phase_timeout)
        log(f"{w.name}: first recommendation; py-spy in {args.before_s:g}s")
        time.sleep(max(0.0, first + args.before_s - time.time()))
        load_start = loadavg()
        c0, t0 = proc.counters(), time.time()
        raw = bench.work / f"{w.name}.pyspy.txt"
        cmd = record(py_spy, proc.proc.pid, args.duration, args.rate, raw)
        c1, t1 = proc.counters(), time.time()
        load_end = loadavg()
        if proc.proc.poll() is not None:
            raise RuntimeError(f"worker exited during the profile:\n{proc.tail()}")
    finally:
        reader.stop_flag.set()
        bench.retire(procs)
    reader.done.wait(10)
    bench.reap_retired()
    kts = list(reader.kafka_ts)
    during = rates(c0, c1, t1 - t0)
    out_rate = in_window(kts, t0, t1) / (t1 - t0)
    before_s = max(0.0, t0 - (first + 1.0))
    before_rate = in_window(kts, first + 1.0, t0) / before_s if before_s > 0 else 0.0
    left = n - during["events_in_at_end"]
    threads = stacks.summarise(raw.read_text().splitlines())
    if args.keep_raw:
        Path(args.keep_raw).mkdir(parents=True, exist_ok=True)
        shutil.copy(raw, Path(args.keep_raw) / raw.name)
    samples = sum(t.samples for t in threads.values())
    date = time.strftime("%Y-%m-%d %H:%M", time.localtime(t0))
    head = (f"######## py-spy of the worker process ({w.name}, {date}, load average "
            f"{load_start[0]} at the start of the profile, {load_end[0]} at its end; "
            f"{os.cpu_count()} CPUs)")
    lines = [head,
             f"workload: {n} clicks pre-loaded at {preload_rate:,.0f}/s into a "
             f"{PARTITIONS}-partition topic; {w.info['users_per_200_clicks']} users per 200 "
             f"clicks{preload_note}",
             f"py-spy: {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))}"
             f" -> {samples} samples over {len(threads)} threads",
             f"worker during the profile ({t1 - t0:.1f} s): {during['events_per_s']:,.0f} "
             f"events/s by its events_in counter, {out_rate:,.0f} recommendations/s read back "
             f"(their LogAppendTime in the window); {before_rate:,.0f}/s in the {before_s:.1f} s "
             f"before it without py-spy; process_batch {during['process_batch_share']:.0%} of "
             f"the wall time, {during['mean_batch_events']:.0f} events per batch; backlog at "
             f"the end: {left} clicks" + ("" if left > 0 else
                                          " (RAN DRY: the profile includes idle time)"),
             "", stacks.report(threads)]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def header(args) -> str:
    return textwrap.fill(
        f"py-spy profiles of the stream worker draining a pre-loaded backlog "
        f"({PROG}; written by it, not by hand). One worker (`python -m stream.cli "
        "worker`, full-size HierTCN over the MovieLens catalogue, real RocksDB, its own "
        "micro-batch settings) on the local broker; py-spy --nonblocking --idle, so every "
        "thread is sampled whether it runs or waits. The agent's thread is the worker's "
        "event loop (model, tables, Faust's producer); Faust fetches in a thread of its own "
        "(aiokafka's consumer, 'Thread-1'), and librdkafka's delivery callbacks run in "
        "'outputs-poll'. How to read the buckets: "
        + " ".join(stacks.__doc__.split("\n\n")[1].split()),
        width=92) + f"\ncommand: {PROG} {' '.join(sys.argv[1:])}\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    py_spy = find_py_spy(args.py_spy)

    def on_alarm(*_):
        raise Deadline(f"over its {args.max_seconds}s cap")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.max_seconds)
    from stream.tools import localkafka
    work = Path(tempfile.mkdtemp(prefix="stream-profile-"))
    broker, bench, sections = None, None, []
    try:
        log(f"work dir {work}; building the full-size model export")
        export_dir = build_export(work)
        messages = load_messages()
        log("starting the local Kafka broker")
        broker = localkafka.start(work / "kafka")
        bench = Bench(args, work, broker, export_dir, messages)
        warm_producer(bench.producer, bench.name("warm"))
        for name in args.workloads:
            n = min(args.events, len(messages))
            if name == "concurrent":
                from stream.tools.replay import load_events
                w = workloads.concurrent(load_events(DATA), args.users, n)
                note = (f" ({args.users} users replaying their own sessions at once, as the "
                        "benchmark's concurrent max-rate run)")
            else:
                w = workloads.bursty(messages, n)
                note = " (the MovieLens log from its start, in event-time order)"
            sections.append(profile(bench, w, args, py_spy, note))
    finally:
        signal.alarm(0)
        if bench is not None:
            bench.stop_all()
            bench.producer = None
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header(args) + "\n" + "\n\n".join(sections))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
