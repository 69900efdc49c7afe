"""Print recommendations as they arrive, one compact line each.

    python -m stream.tools.tail [--topic recommendations] [--from-beginning] [--max N] [--user U]
                          [--titles data/movielens.csv.gz]

    2016-10-16 12:00:01  user=42  session=3  event=42:17  top: 318 | 296 | 593 | 2571 | 50  4.2ms

Reads with a fresh consumer group and commits nothing, so it never disturbs the worker
or another tail.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
from typing import TextIO

from hiertcn.errors import DataError, HierTCNError
from stream.admin import check_connection
from stream.config import StreamConfig
from stream.errors import BadEvent, BrokerError, StreamError
from stream.records import decode_recommendation

TOP = 5  # items shown per line
TITLE_WIDTH = 28  # long titles are cut so a line stays readable
KAFKA_LOG = logging.getLogger("stream.kafka")


def load_titles(path) -> dict[str, str]:
    """item id -> title from a MovieLens file with movieId,title columns."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, usecols=["movieId", "title"], dtype=str)
    except (OSError, ValueError) as exc:  # missing file / columns, not CSV
        raise DataError(f"{path}: cannot read movieId,title: {' '.join(str(exc).split())[:200]}") from None
    return dict(zip(frame["movieId"], frame["title"]))


def format_line(rec: dict, titles: dict[str, str] | None = None, top: int = TOP) -> str:
    """One recommendation message (decoded) as one line."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(rec["ts"]))
    names = [_name(i["item_id"], titles) for i in rec["items"][:top]]
    latency = rec.get("latency_ms")
    return (f"{when}  user={rec['user_id']}  session={rec.get('session')}  "
            f"event={rec.get('event_id')}  top: {' | '.join(names) or '-'}"
            + (f"  {latency:.1f}ms" if latency is not None else ""))


def _name(item_id: str, titles: dict[str, str] | None) -> str:
    title = titles.get(str(item_id)) if titles else None
    if title is None:
        return str(item_id)
    return title if len(title) <= TITLE_WIDTH else title[:TITLE_WIDTH - 1] + "…"


# ---------------------------------------------------------------- consuming


def tail(config: StreamConfig, topic: str | None = None, *, from_beginning: bool = False,
         max_messages: int | None = None, user: str | None = None,
         titles: dict[str, str] | None = None, out: TextIO = sys.stdout,
         idle_timeout: float | None = None, timeout: float = 30.0) -> int:
    """Print recommendations from `topic` (default config.recommendations_topic) until
    `max_messages` were printed or none came for `idle_timeout` s; the count printed."""
    topic = topic or config.recommendations_topic
    check_connection(config.confluent_settings(), timeout)  # a refused login or bad certificate, in one line
    consumer = _consumer(config, from_beginning)
    try:
        _subscribe(consumer, config, topic, timeout)
        printed, last = 0, time.monotonic()
        while max_messages is None or printed < max_messages:
            msg = consumer.poll(0.5)
            if msg is None:
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    break
                continue
            last = time.monotonic()
            line = _line(msg, user, titles)
            if line is not None:
                print(line, file=out, flush=True)
                printed += 1
        return printed
    finally:
        consumer.close()


def _consumer(config: StreamConfig, from_beginning: bool):
    from confluent_kafka import Consumer

    return Consumer({
        **config.confluent_settings(),
        "group.id": f"hiertcn-tail-{uuid.uuid4().hex[:8]}",  # never shares the worker's offsets
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "topic.metadata.refresh.interval.ms": 5000,  # notice a topic created after we start
        "logger": KAFKA_LOG,
    })


def _subscribe(consumer, config: StreamConfig, topic: str, timeout: float) -> None:
    """Fail fast if the broker is unreachable; wait (and say so) for a missing topic."""
    from confluent_kafka import KafkaException

    try:
        topics = consumer.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {config.bootstrap_servers} within "
                          f"{timeout:g}s: {exc.args[0].str()}") from None
    if topic not in topics:
        print(f"topic {topic!r} does not exist yet; waiting for it", file=sys.stderr)
    consumer.subscribe([topic])


def _line(msg, user: str | None, titles: dict[str, str] | None) -> str | None:
    """The line to print for one polled message, or None to skip it."""
    from confluent_kafka import KafkaError

    err = msg.error()
    if err is not None:
        if err.fatal():
            raise BrokerError(f"kafka: {err.str()}")
        if err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:  # already said we wait for it
            print(f"kafka: {err.str()}", file=sys.stderr)
        return None
    try:
        rec = decode_recommendation(msg.value())
    except BadEvent as bad:
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        print(f"skipped {where}: {bad.reason}", file=sys.stderr)
        return None
    if user is not None and str(rec.get("user_id")) != user:
        return None
    try:
        return format_line(rec, titles)
    except (KeyError, TypeError, ValueError) as exc:  # v1 but missing/odd fields
        print(f"skipped {msg.topic()}[{msg.partition()}]@{msg.offset()}: bad field {exc}",
              file=sys.stderr)
        return None


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m stream.tools.tail",
        description="Pretty-print recommendations as they arrive: time, user, session, "
        "event id, top-5 items, latency. Broker and security as for stream.tools.replay.")
    ap.add_argument("--topic", default=None,
                    help="topic to read (default: config recommendations_topic)")
    ap.add_argument("--from-beginning", action="store_true", help="start at the oldest message")
    ap.add_argument("--max", type=int, default=None, help="stop after N printed lines")
    ap.add_argument("--user", default=None, help="only this user id")
    ap.add_argument("--titles", default=None,
                    help="MovieLens file with movieId,title to show titles (data/movielens.csv.gz)")
    ap.add_argument("--idle-timeout", type=float, default=None,
                    help="stop after N seconds without a message")
    ap.add_argument("--bootstrap-servers", default=None, help="Kafka host:port[,host:port]")
    ap.add_argument("--verbose", action="store_true", help="show the Kafka client's log lines")
    args = ap.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    KAFKA_LOG.setLevel(logging.INFO if args.verbose else logging.CRITICAL)
    try:
        from stream.tools.replay import with_local_broker

        config = with_local_broker(StreamConfig.resolve({
            "bootstrap_servers": args.bootstrap_servers, "recommendations_topic": args.topic}))
        titles = load_titles(args.titles) if args.titles else None
        tail(config, from_beginning=args.from_beginning, max_messages=args.max,
             user=args.user, titles=titles, idle_timeout=args.idle_timeout)
    except KeyboardInterrupt:
        return 130  # Ctrl-C is the normal way to stop: no traceback
    except (StreamError, HierTCNError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
