"""Replay a real interaction log into the clicks topic, in event-time order.

    python -m stream.tools.replay --rate 200 --limit 5000            # data/movielens.csv.gz
    python -m stream.tools.replay --data data/yoochoose-sample.csv --session-ends

    n = replay(config, "data/movielens.csv.gz", limit=500)      # from tests and the demo

Each row becomes one click (stream.records contract) keyed by user id, with the stable
event_id "<user>:<data row>", so a rerun sends the same ids. `--session-ends` adds a
session_end event `session_gap_s` after the last click of each session.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hiertcn.data.sessions import SessionConfig
from hiertcn.errors import HierTCNError
from stream.admin import check_connection
from stream.config import StreamConfig
from stream.errors import BrokerError, StreamError
from stream.records import encode_click

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT / "data" / "movielens.csv.gz"
PRODUCER_SETTINGS = {
    "linger.ms": 20,  # batch sends: ~100x the throughput of one request per event
    "compression.type": "lz4",
    "acks": "all",
    "enable.idempotence": True,  # retries never reorder or duplicate a user's events
    # Java's (and aiokafka's) key hash: any other producer puts a user on the same partition
    "partitioner": "murmur2_random",
}
KAFKA_LOG = logging.getLogger("stream.kafka")  # librdkafka's own log lines


# ---------------------------------------------------------------- events (pure)


def load_events(path=DEFAULT_DATA, fmt: str | None = None, *, users: int | None = None,
                limit: int | None = None, session_gap_s: float | None = None,
                user_ids=None) -> pd.DataFrame:
    """Columns user, item (None for session_end), ts, event, event_id; event-time order.

    `users`: the first N users in file order; `user_ids`: exactly these users;
    `session_gap_s`: add session_end events;
    `limit`: the first N events of the merged stream."""
    from hiertcn.data.loaders import load_interactions

    clicks = load_interactions(path, fmt)
    if user_ids is not None:
        clicks = clicks[clicks["user"].isin([str(u) for u in user_ids])]
    if users is not None:
        clicks = clicks[clicks["user"].isin(pd.unique(clicks["user"])[:users])]
    clicks = clicks.assign(event="click", event_id=clicks["user"] + ":" + clicks.index.astype(str))
    parts = [clicks] if session_gap_s is None else [session_ends(clicks, session_gap_s), clicks]
    # stable: same-second events keep file order, and a session_end precedes a click
    # at the same second (it closes the session before that click opens the next)
    events = pd.concat(parts).sort_values("ts", kind="stable", ignore_index=True)
    return events if limit is None else events.head(limit)


def session_ends(clicks: pd.DataFrame, gap_s: float) -> pd.DataFrame:
    """One session_end per session, at its last click + ceil(gap_s) seconds (ints stay ints).

    A session ends where the next click of the user is more than gap_s later, or never comes."""
    by_user = clicks.sort_values(["user", "ts"], kind="stable")
    gap = by_user.groupby("user", sort=False)["ts"].shift(-1) - by_user["ts"]
    last = by_user[gap.isna() | (gap > gap_s)]
    return pd.DataFrame({
        "user": last["user"], "item": None, "ts": last["ts"] + int(np.ceil(gap_s)),
        "event": "session_end", "event_id": last["user"] + ":end:" + last.index.astype(str),
    })


# ---------------------------------------------------------------- producing


@dataclass
class Summary:
    sent: int
    clicks: int
    session_ends: int
    users: int
    seconds: float
    topic: str

    def __str__(self) -> str:
        rate = self.sent / self.seconds if self.seconds > 0 else float("inf")
        return (f"replayed {self.sent} events ({self.clicks} clicks, {self.session_ends} "
                f"session_end) of {self.users} users to {self.topic} in {self.seconds:.1f}s "
                f"({rate:,.0f} ev/s)")


class _Deliveries:
    """Delivery reports: librdkafka retries by itself, so an error here is final."""

    def __init__(self):
        self.failed, self.first_error = 0, None

    def __call__(self, err, msg) -> None:
        if err is not None:
            self.failed += 1
            self.first_error = self.first_error or err.str()


def replay(config: StreamConfig, path=DEFAULT_DATA, fmt: str | None = None, rate: float = 0,
           limit: int | None = None, *, users: int | None = None, session_ends: bool = False,
           topic: str | None = None, create_topic: bool = False, progress: bool = False,
           timeout: float = 30.0, user_ids=None) -> int:
    """Send the log to `topic` (default config.clicks_topic); the number of events sent.

    `rate`: events per second, 0 = as fast as possible. Raises BrokerError if the broker
    does not answer within `timeout` seconds or any event is not delivered."""
    events = load_events(path, fmt, users=users, limit=limit, user_ids=user_ids,
                         session_gap_s=_gap(config) if session_ends else None)
    return _produce_all(config, events, topic or config.clicks_topic, rate=rate,
                        create_topic=create_topic, progress=progress, timeout=timeout).sent


def _gap(config: StreamConfig) -> float:
    """The gap after which a session_end is added: the given one, else training's."""
    return config.session_gap_s or SessionConfig().gap_s


def _produce_all(config: StreamConfig, events: pd.DataFrame, topic: str, *, rate: float,
                 create_topic: bool, progress: bool, timeout: float) -> Summary:
    from confluent_kafka import Producer
    from tqdm import tqdm

    check_connection(config.confluent_settings(), timeout)  # a refused login or bad certificate, in one line
    deliveries = _Deliveries()
    producer = Producer({**config.confluent_settings(), **PRODUCER_SETTINGS,
                         "message.timeout.ms": int(timeout * 1000),  # fail, never hang
                         "on_delivery": deliveries, "logger": KAFKA_LOG})
    _ensure_topic(config, producer, topic, create_topic, timeout)
    start = time.monotonic()
    with tqdm(total=len(events), unit="ev", disable=not progress, mininterval=0.5) as bar:
        try:
            sent = _send_all(producer, topic, events, rate, bar, deliveries)
        finally:  # also on Ctrl-C: what was produced is delivered, not dropped
            remaining = producer.flush(timeout * 2)
    if deliveries.failed or remaining:
        raise BrokerError(f"{deliveries.failed + remaining} of {sent} events not delivered "
                          f"to {topic} at {config.bootstrap_servers}: "
                          f"{deliveries.first_error or 'flush timed out'}")
    done = events.head(sent)
    return Summary(sent, int((done["event"] == "click").sum()),
                   int((done["event"] == "session_end").sum()), done["user"].nunique(),
                   time.monotonic() - start, topic)


def _send_all(producer, topic: str, events: pd.DataFrame, rate: float, bar,
              deliveries: _Deliveries) -> int:
    """Produce the events in order; the number handed to the client."""
    start = time.monotonic()
    columns = (events[c].tolist() for c in ("user", "item", "ts", "event", "event_id"))
    for i, (user, item, ts, event, event_id) in enumerate(zip(*columns)):
        if rate > 0:
            _pace(i, rate, start)
        item = item if event == "click" else None  # pandas may hold NaN for "none"
        _send(producer, topic, user.encode(), encode_click(user, item, ts, event, event_id))
        if i % 100 == 99:
            producer.poll(0)  # serve delivery reports
            bar.update(100)
            if deliveries.failed:
                return i + 1  # the broker refuses: stop now, the caller reports it
    bar.update(len(events) - bar.n)
    return len(events)


def _pace(i: int, rate: float, start: float) -> None:
    ahead = i / rate - (time.monotonic() - start)  # seconds we are ahead of schedule
    if ahead > 0:
        time.sleep(ahead)


def _send(producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:  # local queue full: let deliveries drain it, then retry
            producer.poll(0.1)


def _ensure_topic(config: StreamConfig, producer, topic: str, create: bool,
                  timeout: float) -> None:
    """Fail fast on an unreachable broker; never let the broker auto-create the topic
    with its default partition count (the worker expects config.partitions)."""
    from confluent_kafka import KafkaException

    try:
        topics = producer.list_topics(timeout=timeout).topics  # all topics: no auto-create
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {config.bootstrap_servers} within "
                          f"{timeout:g}s: {exc.args[0].str()}") from None
    if topic in topics:
        return
    if not create:
        raise BrokerError(f"topic {topic!r} does not exist at {config.bootstrap_servers}; "
                          f"create it with {config.partitions} partitions or pass --create-topic")
    _create_topic(config, topic, timeout)


def _create_topic(config: StreamConfig, topic: str, timeout: float) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({**config.confluent_settings(), "logger": KAFKA_LOG})
    # replication_factor -1: the broker's default.replication.factor
    new = NewTopic(topic, num_partitions=config.partitions, replication_factor=-1)
    try:
        admin.create_topics([new], request_timeout=timeout)[topic].result(timeout)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # a racing creator is fine
            raise BrokerError(f"cannot create topic {topic}: {exc.args[0].str()}") from None


# ---------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m stream.tools.replay",
        description="Replay a real interaction log into the clicks topic in event-time "
        "order, keyed by user id, as click JSON (see stream/records.py). The broker comes "
        "from --bootstrap-servers, $KAFKA_BOOTSTRAP_SERVERS, or a running "
        "`python -m stream.tools.localkafka start`; security from the HIERTCN_* variables "
        "(stream/config.py).")
    ap.add_argument("--data", default=str(DEFAULT_DATA),
                    help="interaction log (default: %(default)s)")
    ap.add_argument("--format", default=None,
                    help="loader format (default: detected), e.g. movielens-dslabs, yoochoose-sample")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="events per second; 0 = as fast as possible (default)")
    ap.add_argument("--limit", type=int, default=None, help="send only the first N events")
    ap.add_argument("--users", type=int, default=None,
                    help="only the first N users (in file order)")
    ap.add_argument("--session-ends", action="store_true",
                    help="also send a session_end event session_gap_s after each session")
    ap.add_argument("--session-gap-s", type=float, default=None,
                    help="inactivity gap that ends a session (default: config, 1800)")
    ap.add_argument("--topic", default=None, help="target topic (default: config clicks_topic)")
    ap.add_argument("--bootstrap-servers", default=None, help="Kafka host:port[,host:port]")
    ap.add_argument("--create-topic", action="store_true",
                    help="create the topic with config.partitions partitions if missing")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="seconds to wait for the broker / a delivery (default: %(default)s)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--verbose", action="store_true", help="show the Kafka client's log lines")
    return ap


def with_local_broker(config: StreamConfig) -> StreamConfig:
    """No broker configured: use the local one if `stream.tools.localkafka start` runs."""
    if config.bootstrap_servers:
        return config
    from stream.tools import localkafka

    broker = localkafka.status()
    return config.with_bootstrap(broker.bootstrap) if broker else config


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    # Connection retries are noise here: failures surface as one BrokerError line.
    KAFKA_LOG.setLevel(logging.INFO if args.verbose else logging.CRITICAL)
    try:
        config = with_local_broker(StreamConfig.resolve({
            "bootstrap_servers": args.bootstrap_servers, "clicks_topic": args.topic,
            "session_gap_s": args.session_gap_s}))
        events = load_events(args.data, args.format, users=args.users, limit=args.limit,
                             session_gap_s=_gap(config) if args.session_ends else None)
        summary = _produce_all(config, events, config.clicks_topic, rate=args.rate,
                               create_topic=args.create_topic, progress=not args.no_progress,
                               timeout=args.timeout)
    except KeyboardInterrupt:  # events produced so far were flushed
        print("interrupted", file=sys.stderr)
        return 130
    except (StreamError, HierTCNError) as exc:  # bad option, data file, broker: one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{summary} from {args.data} at {config.bootstrap_servers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
