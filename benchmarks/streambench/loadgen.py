"""The concurrent load generator: many users replaying their own real click sequences
at once (schedule.py), sent on the wall-clock schedule, each click stamped with the time
it was handed to the producer (its Kafka CreateTime), so that a reader of the outputs can
measure latency from it.

    python -m benchmarks.streambench.loadgen --bootstrap-servers 127.0.0.1:9092 \\
        --topic clicks --users 10000 --rate 500 --duration 60
    python -m benchmarks.streambench.loadgen --users 2000 --rate 0 --time-scale 0.1 \\
        --duration 30 --dry-run                # the schedule's figures, nothing sent

The producer is the project's (stream.tools.replay.PRODUCER_SETTINGS: murmur2_random,
so a user lands on the partition any Java/aiokafka producer would pick), with
linger.ms 1 by default: a longer linger would sit inside every measured latency.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np

from benchmarks.streambench.load import make_producer, produce
from benchmarks.streambench.schedule import (DEFAULT_MAX_GAP_S, Schedule, Send, build,
                                             histories)
from stream.tools.harness import MOVIELENS

PROG = "python -m benchmarks.streambench.loadgen"


@dataclass
class Sent:
    sent_ms: dict[str, int]  # event_id -> producer timestamp (ms since the epoch)
    seconds: float  # first to last send
    behind_ms_p99: float  # how late against the schedule a send was, p99
    behind_ms_max: float

    @property
    def events_per_s(self) -> float:
        return round(len(self.sent_ms) / self.seconds, 1) if self.seconds > 0 else 0.0

    def summary(self) -> dict:
        return {"sent": len(self.sent_ms), "seconds": round(self.seconds, 2),
                "achieved_events_per_s": self.events_per_s,
                "behind_schedule_ms_p99": round(self.behind_ms_p99, 1),
                "behind_schedule_ms_max": round(self.behind_ms_max, 1)}


def send_schedule(producer, topic: str, sends: list[Send], stop=None) -> Sent:
    """Produce each click at its `at` after now, stamped with the time of the send.
    A generator that falls behind sends at once (the clicks bunch up, the stamps stay
    true) and says how far behind it fell; `stop()` true ends it early."""
    sent_ms: dict[str, int] = {}
    behind = np.zeros(len(sends))
    start = time.monotonic()
    for i, s in enumerate(sends):
        ahead = s.at - (time.monotonic() - start)
        if ahead > 0.0005:
            time.sleep(ahead)
        now = time.monotonic() - start
        behind[i] = max(0.0, now - s.at) * 1000
        ts = int(time.time() * 1000)
        produce(producer, topic, s.key, s.value, ts)
        sent_ms[s.event_id] = ts
        if i % 20 == 0:
            producer.poll(0)
            if stop is not None and stop():
                behind = behind[:i + 1]
                break
    seconds = time.monotonic() - start
    return Sent(sent_ms, seconds, float(np.percentile(behind, 99)) if len(behind) else 0.0,
                float(behind.max()) if len(behind) else 0.0)


def concurrent_schedule(users: int, rate: float | None, duration_s: float, *,
                        max_gap_s: float = DEFAULT_MAX_GAP_S,
                        time_scale: float | None = None, seed: int = 0,
                        data=MOVIELENS, events=None) -> Schedule:
    """The concurrent workload's schedule from the data's click sequences (`events`:
    load_events' frame, if already loaded)."""
    from stream.tools.replay import load_events
    hist = histories(events if events is not None else load_events(data))
    return build(hist, users, rate or None, duration_s, max_gap_s=max_gap_s,
                 time_scale=time_scale, seed=seed)


def describe(sched: Schedule) -> str:
    i = sched.info
    line = (f"{i['events']} clicks of {i['users_with_clicks_in_run']} users (of {i['users']} "
            f"simulated, {i['source_users']} in the data) over {i['duration_s']:g}s = "
            f"{i['offered_events_per_s']:,.1f} events/s offered; event time runs "
            f"{1 / i['wall_s_per_event_s'] if i['wall_s_per_event_s'] else 0:.2f}x the wall "
            f"clock, gaps capped at {i['max_gap_s']:g}s")
    return line + (f"; {i['note']}" if "note" in i else "")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG, description="Send many users' real click sequences at once, "
        "interleaved, at an offered rate (benchmarks/streambench/schedule.py).")
    ap.add_argument("--bootstrap-servers", default=None,
                    help="Kafka host:port (default: $KAFKA_BOOTSTRAP_SERVERS or a running "
                         "`python -m stream.tools.localkafka start`)")
    ap.add_argument("--topic", default=None, help="clicks topic (default: config)")
    ap.add_argument("--data", default=str(MOVIELENS), help="interaction log (default: %(default)s)")
    ap.add_argument("--users", type=int, default=10000,
                    help="users active at once; more than the data has are reused as "
                         "'<uid>#<k>' (default: %(default)s)")
    ap.add_argument("--rate", type=float, default=500.0,
                    help="offered events/s; 0: follow --time-scale (default: %(default)s)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds (default: %(default)s)")
    ap.add_argument("--max-gap-s", type=float, default=DEFAULT_MAX_GAP_S,
                    help="longest gap between a user's clicks, event time (default: %(default)s)")
    ap.add_argument("--time-scale", type=float, default=None,
                    help="wall seconds per event-time second, when --rate is 0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--linger-ms", type=float, default=1.0,
                    help="producer linger (default: %(default)s)")
    ap.add_argument("--create-topic", action="store_true",
                    help="create the topic with the configured partition count if missing")
    ap.add_argument("--dry-run", action="store_true", help="build the schedule, send nothing")
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if not args.rate and not args.time_scale:
        print("error: give --rate > 0 or --time-scale", file=sys.stderr)
        return 2
    sched = concurrent_schedule(args.users, args.rate, args.duration, max_gap_s=args.max_gap_s,
                                time_scale=args.time_scale, seed=args.seed, data=args.data)
    print(describe(sched), flush=True)
    if args.dry_run:
        print(json.dumps(sched.info, indent=2))
        return 0
    from stream.admin import create_topics
    from stream.config import StreamConfig
    from stream.tools.replay import with_local_broker
    config = with_local_broker(StreamConfig.resolve({
        "bootstrap_servers": args.bootstrap_servers, "clicks_topic": args.topic}))
    if not config.bootstrap_servers:
        print("error: no broker: pass --bootstrap-servers", file=sys.stderr)
        return 2
    if args.create_topic:
        create_topics(config.bootstrap_servers, {config.clicks_topic: config.partitions})
    producer = make_producer(config.bootstrap_servers, args.linger_ms)
    try:
        sent = send_schedule(producer, config.clicks_topic, sched.sends)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        left = producer.flush(30)
    print(json.dumps({**sent.summary(), "undelivered_at_exit": left,
                      "topic": config.clicks_topic}, indent=2))
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
