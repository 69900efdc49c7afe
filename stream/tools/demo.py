"""The live demo (`make demo`): everything on this machine, then stopped cleanly.

1. start the local Apache Kafka (or use $KAFKA_BOOTSTRAP_SERVERS);
2. train HierTCN on the shipped MovieLens and export it, unless an export exists;
3. start one worker (`python -m stream.cli worker`) and wait until it is ready;
4. replay a few *test* users (never seen in training) in event-time order;
5. print their recommendations as they arrive, then how each user's list changed
   over their sessions, and the latency figures from the messages themselves.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict

import numpy as np

from stream.config import StreamConfig
from stream.errors import StreamError
from stream.tools.harness import MOVIELENS as DATA
from stream.tools.harness import REPO, WorkerFailed, WorkerProcess
EXPORT = REPO / "artifacts" / "export"
RUN = REPO / "runs" / "demo"
log = logging.getLogger("stream.tools.demo")


def main(args) -> None:
    from stream.tools import localkafka
    broker = localkafka.start(REPO / ".kafka" / "demo")
    print(f"[1/5] Kafka {broker.bootstrap} (log: {broker.log})")
    worker = None
    try:
        ensure_export(args.epochs)
        config = StreamConfig.resolve({"bootstrap_servers": broker.bootstrap,
                                       "export_dir": str(EXPORT)})
        worker = start_worker(config)
        warm_up_producer_ids(config)
        users = demo_users(args.users)
        print(f"[4/5] replaying test users {', '.join(users)} at {args.rate:g} events/s")
        show(config, users, args.rate)
    finally:
        if worker is not None:
            worker.stop(timeout=30)
            print("worker stopped")
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            broker.stop()
            print("Kafka stopped")


DEMO_TRAIN_SECONDS = 150  # the demo shows the stream; `hiertcn train` trains for real


def ensure_export(epochs: int) -> None:
    if (EXPORT / "meta.json").exists():
        print(f"[2/5] model export found in {EXPORT} (delete it to retrain)")
        return
    print(f"[2/5] training HierTCN on {DATA.name} ({epochs} epochs max), then exporting")
    from hiertcn.cli import main as hiertcn
    for argv in (["train", "--epochs", str(epochs), "--max-seconds", str(DEMO_TRAIN_SECONDS),
                  "--out", str(RUN)],
                 ["evaluate", "--checkpoint", str(RUN / "checkpoint.pt")],
                 ["export", "--checkpoint", str(RUN / "checkpoint.pt"), "--out", str(EXPORT)]):
        if hiertcn(argv) != 0:
            raise StreamError(f"`hiertcn {' '.join(argv)}` failed")


def start_worker(config: StreamConfig) -> WorkerProcess:
    """One worker as ops run it, on the config's topics, app id and web port."""
    worker = WorkerProcess(config.bootstrap_servers, None, None, config.export_dir,
                           REPO / "artifacts" / "demo-worker-data", partitions=None,
                           log=REPO / "runs" / "demo-worker.log", port=config.web_port,
                           host=config.web_host, batch_within_s=None)
    try:
        worker.wait_ready(timeout=120)
    except WorkerFailed as exc:
        worker.stop(timeout=10)
        raise StreamError(f"the worker did not start; see {worker.log}") from exc
    print(f"[3/5] worker ready ({worker.url('/ready/')}; log: {worker.log})")
    return worker


def warm_up_producer_ids(config: StreamConfig) -> None:
    """On a fresh broker the first idempotent producer waits seconds for the
    transaction coordinator to load; pay that here, not in the demo's latencies."""
    from confluent_kafka import Producer
    from stream.admin import create_topics
    create_topics(config.bootstrap_servers, {"demo-warmup": 1})
    p = Producer({**config.confluent_settings(), "enable.idempotence": True})
    p.produce("demo-warmup", b"warm-up")
    p.flush(60)


def demo_users(n: int) -> list[str]:
    """Test-split users with at least two sessions, fewest events first (a short demo)."""
    from hiertcn.data.cache import load_splits
    test = load_splits(DATA)["test"]
    sessions = np.diff(test.user_offsets)
    events = np.diff(test.session_offsets[test.user_offsets])
    order = [u for u in np.argsort(events) if sessions[u] >= 2]
    return [str(test.user_ids[u]) for u in order[:n]]


def show(config: StreamConfig, users: list[str], rate: float) -> None:
    from stream.tools.replay import load_events, replay
    from stream.tools.tail import format_line, load_titles
    titles = load_titles(DATA)
    expected = int((load_events(DATA, user_ids=users)["event"] == "click").sum())
    received: dict[str, list[dict]] = defaultdict(list)
    reader = threading.Thread(target=_collect, args=(config, expected, received, titles,
                                                     format_line), daemon=True)
    reader.start()
    replay(config, DATA, rate=rate, user_ids=users, progress=False)
    reader.join(timeout=60 + expected / max(rate, 1))
    summarise(received, titles, expected)


def _collect(config, expected, received, titles, format_line) -> None:
    from confluent_kafka import Consumer
    import orjson
    started_ms = time.time() * 1000 - 1000
    # from the beginning (a late assignment must not miss the first answers), skipping
    # what earlier demo runs left in the topic
    consumer = Consumer({**config.confluent_settings(), "group.id": f"demo-{time.time()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([config.recommendations_topic])
    got, idle_since = 0, time.monotonic()
    while got < expected and time.monotonic() - idle_since < 30:
        msg = consumer.poll(0.5)
        if msg is None or msg.error() or msg.timestamp()[1] < started_ms:
            continue
        rec = orjson.loads(msg.value())
        received[rec["user_id"]].append(rec)
        got, idle_since = got + 1, time.monotonic()
        print("  " + format_line(rec, titles, top=3))
    consumer.close()


def summarise(received: dict, titles: dict, expected: int) -> None:
    got = sum(map(len, received.values()))
    print(f"[5/5] {got} recommendations for {expected} clicks")
    for user, recs in received.items():
        sessions = sorted({r["session"] for r in recs})
        first, last = recs[0]["items"][:3], recs[-1]["items"][:3]
        name = lambda items: " | ".join(titles.get(i["item_id"], i["item_id"]) for i in items)
        print(f"  user {user}: {len(recs)} clicks over {len(sessions)} sessions\n"
              f"    first click -> {name(first)}\n    last click  -> {name(last)}")
    latencies = [r["latency_ms"] for rs in received.values() for r in rs if "latency_ms" in r]
    if latencies:
        print(f"  event-to-recommendation latency: p50 {np.percentile(latencies, 50):.1f} ms, "
              f"p99 {np.percentile(latencies, 99):.1f} ms")
