"""The benchmark's own Kafka clients: the producer that feeds the workers, the reader
that times their outputs by Kafka timestamp, and the consumer-group probe."""

from __future__ import annotations

import threading
import time

class Reader(threading.Thread):
    """Reads an output topic from the beginning in a background thread; keeps each
    message's Kafka timestamp (ms), arrival time and, if asked, its event_id."""

    def __init__(self, bootstrap: str, topic: str, expected: int, decode: bool = False,
                 timeout: float = 120.0, window_s: float | None = None):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer
        self.consumer = Consumer({"bootstrap.servers": bootstrap,
                                  "group.id": f"bench-read-{topic}-{time.time_ns()}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                  "fetch.wait.max.ms": 10})
        self.consumer.subscribe([topic])
        self.expected, self.decode, self.timeout = expected, decode, timeout
        self.window_s = window_s  # stop this long after the first message, if given
        self.kafka_ts: list[int] = []
        self.arrived: list[float] = []
        self.event_ids: list[str | None] = []
        self.timestamp_types: set[int] = set()  # 1 CreateTime, 2 LogAppendTime
        self.stop_flag = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        import orjson
        deadline = time.monotonic() + self.timeout
        try:
            while (len(self.kafka_ts) < self.expected and not self.stop_flag.is_set()
                   and time.monotonic() < deadline):
                msgs = self.consumer.consume(1000, 0.1)
                now = time.time()
                if self.window_s and self.arrived and now - self.arrived[0] > self.window_s:
                    break
                for msg in msgs:
                    if msg.error():
                        continue
                    ts_type, ts = msg.timestamp()
                    self.timestamp_types.add(ts_type)
                    self.kafka_ts.append(ts)
                    self.arrived.append(now)
                    if self.decode:
                        self.event_ids.append(orjson.loads(msg.value()).get("event_id"))
        finally:
            self.consumer.close()
            self.done.set()

    def wait(self, timeout: float, procs: list | None = None) -> int:
        """Until every expected message came, the window closed or the timeout; raises
        if one of `procs` (the processes producing them) exits meanwhile."""
        deadline = time.monotonic() + timeout
        while not self.done.wait(0.2) and time.monotonic() < deadline:
            for p in procs or ():
                if p.proc.poll() is not None:
                    self.stop_flag.set()
                    raise RuntimeError(f"{p.log.name} exited {p.proc.returncode}:\n"
                                       + p.tail())
        return len(self.kafka_ts)

    def timestamp_type(self) -> str:
        names = {1: "CreateTime", 2: "LogAppendTime"}
        return "+".join(sorted(names.get(t, str(t)) for t in self.timestamp_types)) or "none"

    def count_of(self, prefix: str) -> int:
        return sum(1 for e in list(self.event_ids) if e and e.startswith(prefix))


MIN_OUTPUTS = 50  # fewer in a max-rate window: the run is broken, not slow


def rate_first_to_last(kafka_ts: list[int], n: int) -> dict:
    """Events/s between the first and the n-th (or last read) output, by their Kafka
    timestamps (set by the producing worker, so the reader's own speed is no factor)."""
    ts = sorted(kafka_ts)[:n]
    span = (ts[-1] - ts[0]) / 1000.0
    return {"events_per_s": round((len(ts) - 1) / span, 1) if span > 0 else None,
            "seconds": round(span, 3), "outputs": len(ts)}


def make_producer(bootstrap: str, linger_ms: float):
    from confluent_kafka import Producer
    from stream.tools.replay import PRODUCER_SETTINGS
    return Producer({"bootstrap.servers": bootstrap, **PRODUCER_SETTINGS,
                     "linger.ms": linger_ms, "message.timeout.ms": 30000})


def produce(producer, topic: str, key: bytes, value: bytes, timestamp_ms: int | None = None):
    while True:
        try:
            if timestamp_ms is None:
                producer.produce(topic, value, key)
            else:
                producer.produce(topic, value, key, timestamp=timestamp_ms)
            return
        except BufferError:
            producer.poll(0.05)


def warm_producer(producer, topic: str) -> float:
    """The first idempotent producer on a fresh broker waits for its producer id:
    get that over with before anything is timed."""
    t0 = time.monotonic()
    for i in range(10):
        produce(producer, topic, b"warm", b"{}")
    if producer.flush(60):
        raise RuntimeError("warm-up messages not delivered")
    return time.monotonic() - t0


def wait_group_stable(bootstrap: str, group: str, members: int, timeout: float = 60.0) -> None:
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            desc = admin.describe_consumer_groups([group], request_timeout=5)[group].result(10)
            if desc.state == ConsumerGroupState.STABLE and len(desc.members) == members:
                return
        except Exception:  # the group may not exist yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"consumer group {group} not stable with {members} members "
                       f"after {timeout:g}s")
