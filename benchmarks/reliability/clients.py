"""The harness's own Kafka clients: the sender that replays events, the reader that
sees every output arrive, and the committed-offset probe."""

from __future__ import annotations

import logging
import threading
import time

import orjson

# the harness's own clients retry through the broker outage by design: their
# connection-refused lines would bury the figures (delivery failures are still counted)
QUIET = logging.getLogger("reliability.clients")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


class Sender(threading.Thread):
    """Produces the events in order (idempotent, acks=all: the replay's settings),
    paced by `rate(elapsed_s)` events/s (None: as fast as possible)."""

    def __init__(self, bootstrap: str, topic: str, events: list[dict], rate=None):
        super().__init__(daemon=True)
        from confluent_kafka import Producer

        from stream.tools.replay import PRODUCER_SETTINGS
        self.producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_SETTINGS,
                                  "message.max.bytes": 2_000_000, "logger": QUIET})
        self.topic, self.events, self.rate = topic, events, rate
        self.delivered = 0
        self.failed: list[str] = []

    def _on_delivery(self, err, msg) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed.append(str(err))

    def run(self) -> None:
        start, budget = time.monotonic(), 0.0
        last = start
        for ev in self.events:
            if self.rate is not None:
                now = time.monotonic()
                budget += (now - last) * self.rate(now - start)
                last = now
                while budget < 1.0:
                    time.sleep(0.002)
                    now = time.monotonic()
                    budget += (now - last) * self.rate(now - start)
                    last = now
                budget -= 1.0
            while True:
                try:
                    self.producer.produce(self.topic, key=ev["key"], value=ev["value"],
                                          on_delivery=self._on_delivery)
                    break
                except BufferError:  # local queue full (e.g. the broker is down): wait
                    self.producer.poll(0.1)
            self.producer.poll(0)
        while self.producer.flush(1.0):
            pass


class Answers(threading.Thread):
    """Reads an output topic from the start: arrival time and event_id of each message."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer, TopicPartition
        self.consumer = Consumer({"bootstrap.servers": bootstrap,
                                  "group.id": f"reliability-{topic}-{time.time_ns()}",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 20,
                                  "logger": QUIET})
        # assigned, not subscribed: no group rebalance can make the reader read twice
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.arrivals: list[float] = []
        self.produced_ms: list[int] = []  # Kafka timestamps, set by the producing worker
        self.event_ids: list[str | None] = []
        self.reasons: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for msg in self.consumer.consume(1000, 0.1):
                    if msg.error():
                        continue
                    value = orjson.loads(msg.value())
                    self.arrivals.append(time.monotonic())
                    self.produced_ms.append(msg.timestamp()[1])
                    self.event_ids.append(value.get("event_id"))
                    if "reason" in value:
                        self.reasons.append(value["reason"])
        finally:
            self.consumer.close()

    def answered(self) -> set:
        return set(self.event_ids)

    def first_after(self, t: float) -> float | None:
        return next((a for a in list(self.arrivals) if a > t), None)

    def first_produced_after(self, wall: float) -> float | None:
        """Wall-clock time the first output produced after `wall` was produced: tells
        a restarted worker's outputs from the in-flight ones of the one it replaced."""
        return next((ms / 1000 for ms in list(self.produced_ms) if ms / 1000 > wall), None)

    def longest_pause(self, t0: float, t1: float) -> float:
        """The longest wait for the next output between t0 and t1 (s)."""
        times = [t0] + [a for a in list(self.arrivals) if t0 < a < t1]
        return max((b - a for a, b in zip(times, times[1:])), default=t1 - t0)

    def close(self) -> None:
        self.stopping.set()
        self.join(10)


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Events of `topic` the consumer group has committed, all partitions together."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "logger": QUIET})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        c.close()
