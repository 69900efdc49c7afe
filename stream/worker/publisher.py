"""The worker's outputs (recommendations, embeddings, dead letters) through one
librdkafka producer, and the rule that a batch's events are committed only after
all of the batch's outputs are delivered.

Why not Faust's producer: on the 2-core test machine a Faust agent sending one message
per event with `send_soon` ran 3,000-3,700 events/s, with librdkafka 6,300-6,600/s
(the consumer alone: 5,000-6,300/s); Faust's producer buffer and aiokafka's batching
were a quarter of the worker's profile. The table's changelog goes through the same
producer and the same batch (stream/worker/state_writes.py), so it is covered by the
same rule.

At-least-once, step by step:
1. each batch's messages are produced with a delivery callback into that batch's
   `Outbox`; `Outbox.close()` gives an asyncio future that resolves once every
   message of the batch is acknowledged by the broker (acks=all: idempotence);
2. `OrderedAcks` acks the batch's events (Faust's `stream.ack`) only after that
   future resolves, batch after batch in order (see stream/worker/batching.py for why
   the order matters), so Faust's next commit never covers an event whose outputs
   are not all delivered; the agent meanwhile works on the next batch (up to
   `MAX_BATCHES_IN_FLIGHT` batches wait for delivery at once);
3. a failed delivery is not retried here: librdkafka already retries what can succeed
   (until `delivery.timeout.ms`), so what reaches the callback as an error is
   permanent for this process (topic gone, message too large for the topic,
   authorisation, or the broker unreachable for the whole timeout). Re-producing it
   would loop; dropping it would lose an answer. So the batch and every later one stay
   unacked (uncommitted) and the worker crashes (`on_failure`): after the restart the
   events are delivered again and answered again (their state is not applied twice:
   see README "Guarantees").

Delivery callbacks run in a poll thread (`producer.poll` blocks, so not on the event
loop); a batch's future is resolved on the loop with `call_soon_threadsafe`, once per
batch, not per message.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from typing import Awaitable, Callable

from confluent_kafka import KafkaError, KafkaException, Producer

from stream.config import DLQ_MAX_BYTES, StreamConfig
from stream.errors import DeliveryFailed

log = logging.getLogger(__name__)

# Batches produced whose deliveries are awaited at once. 1: each batch waits for the
# one before to be delivered, so under a backlog the stream fills it to batch_size
# meanwhile (fewer, fuller batches); more: a batch's model work overlaps the delivery
# of the ones before, which at moderate load keeps the delivery wait (linger + round
# trip) out of the next click's latency. Measured on 20,000 pre-loaded MovieLens clicks,
# one worker, 2 cores, load ~1: 1 -> 3,340-3,540 events/s (200 events a batch),
# 2 -> 3,220-3,310 (165), 4 -> 3,170-3,340 (130), within the noise of each other.
MAX_BATCHES_IN_FLIGHT = 2

# librdkafka settings on top of the connection and security ones. Measured on the
# 2-core machine, local broker, 40,000 messages (20,000 recommendations of 20 items +
# 20,000 embeddings of 64 floats, 914 B on average), idempotent, 4 partitions:
#   none, linger 5 ms:  3.1-3.8 µs CPU/message, 37.2 MB on the broker
#   lz4,  linger 5 ms:  5.7-6.7 µs CPU/message, 19.9 MB (-46%)
#   zstd, linger 5 ms: 10.5 µs CPU/message, 12.8 MB
# lz4: half the bytes on the network and the broker's disk for ~3 µs a message (about
# 4% of a core at 6,000 events/s, two messages each). Linger 5 ms (as Faust's
# producer had): 1 ms made no difference in CPU; it bounds what batching adds to an
# answer's latency.
PRODUCER_SETTINGS = {
    "enable.idempotence": True,  # acks=all, no duplicates or reordering on retries
    "linger.ms": 5,
    "compression.type": "lz4",
    # Java clients' (and Faust's) key hashing, so a user's outputs land in the same
    # partition as they did with Faust's producer (librdkafka's default differs)
    "partitioner": "murmur2_random",
    "message.max.bytes": DLQ_MAX_BYTES + 65536,  # a dead letter carries its input
}


def producer_settings(config: StreamConfig) -> dict:
    """The output producer's librdkafka config: the config's connection and security
    (`StreamConfig.confluent_settings`) plus `PRODUCER_SETTINGS`."""
    return {**config.confluent_settings(), **PRODUCER_SETTINGS,
            "client.id": f"{config.app_id}-outputs"}


class Outbox:
    """One batch's outputs: `send` each, then `close()` for the future that resolves
    when all are delivered (or fails with DeliveryFailed at the first that is not)."""

    def __init__(self, publisher: Publisher):
        self.publisher = publisher
        self.future: asyncio.Future = publisher.loop.create_future()
        self.lock = threading.Lock()  # `pending` is counted down in the poll thread
        self.pending = 0
        self.closed = False
        self.sent = 0
        # topic -> {partition: highest offset delivered}, for the topics asked to track
        # (the table's changelog: stream/worker/state_writes.py); read once resolved
        self.offsets: dict[str, dict[int, int]] = {}

    def send(self, topic: str, key: bytes | None, value: bytes | None,
             partition: int | None = None, track: bool = False) -> None:
        """`value` None: a tombstone. `partition` None: by the key (murmur2, as Java
        clients); `track`: record the delivered offset in `offsets`."""
        with self.lock:
            self.pending += 1
            if track:
                self.offsets.setdefault(topic, {})
        self.sent += 1
        self.publisher.produce(topic, key, value, self._delivered, partition)

    def close(self) -> asyncio.Future:
        with self.lock:
            self.closed = True
            done = self.pending == 0
        if done:
            self._resolve(None)
        return self.future

    def _delivered(self, err: KafkaError | None, msg) -> None:
        """librdkafka's delivery callback, in the poll thread."""
        if err is not None:
            self._resolve(DeliveryFailed(
                f"output to {msg.topic()} not delivered: {err.str()} ({err.name()})"))
            return
        with self.lock:
            self.pending -= 1
            done = self.closed and self.pending == 0
            tracked = self.offsets.get(msg.topic())
            if tracked is not None:
                p, offset = msg.partition(), msg.offset()
                if offset > tracked.get(p, -1):
                    tracked[p] = offset
        if done:
            self._resolve(None)

    def _resolve(self, error: Exception | None) -> None:
        self.publisher.loop.call_soon_threadsafe(_settle, self.future, error)


def _settle(future: asyncio.Future, error: Exception | None) -> None:
    if future.done():
        return  # a failure came first
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class Publisher:
    """One librdkafka producer per worker process, polled by its own thread; made at
    `start` (no I/O before: `create_app` builds one without a broker)."""

    def __init__(self, config: StreamConfig):
        self.config = config
        self.producer: Producer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Make the producer (it connects in the background) and the poll thread; on
        the running event loop, once."""
        if self.producer is not None:
            return
        self.loop = asyncio.get_running_loop()
        self.producer = Producer(producer_settings(self.config))
        self._thread = threading.Thread(target=self._poll, name="outputs-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)  # runs the delivery callbacks

    def stop(self) -> None:
        """Stop polling (the worker's never stops: the process ends with it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def batch(self) -> Outbox:
        return Outbox(self)

    def produce(self, topic: str, key: bytes | None, value: bytes | None, on_delivery,
                partition: int | None = None) -> None:
        extra = {} if partition is None else {"partition": partition}
        while True:
            try:
                self.producer.produce(topic, value, key, on_delivery=on_delivery, **extra)
                return
            except BufferError:  # librdkafka's queue is full: let the poll thread drain it
                self._stop.wait(0.01)
            except KafkaException as exc:  # refused before sending: same as a failed delivery
                on_delivery(exc.args[0], _Refused(topic))
                return


class _Refused:
    """Stands for the message in a delivery report of one produce() refused."""

    def __init__(self, topic: str):
        self._topic = topic

    def topic(self) -> str:
        return self._topic


class OrderedAcks:
    """Acks each batch's events once its outputs are delivered, batches in the order
    they were added; at the first failed delivery it acks nothing more and calls
    `on_failure(exc)` (which crashes the worker). One per worker process, not per agent
    actor: batches of an actor Faust restarted still queue behind the ones before."""

    def __init__(self, on_failure: Callable[[Exception], Awaitable],
                 limit: int = MAX_BATCHES_IN_FLIGHT):
        self.on_failure, self.limit = on_failure, limit
        # (delivered, events, ack): `ack` is the stream's, Faust's `Stream.ack`
        self.queue: deque[tuple[asyncio.Future, list, Callable[[object], Awaitable]]] = deque()
        self.wake: asyncio.Event | None = None
        self.failed: Exception | None = None
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        """On the running loop; once."""
        if self.task is None:
            self.wake = asyncio.Event()
            self.task = asyncio.ensure_future(self._run())

    def add(self, delivered: asyncio.Future, events: list,
            ack: Callable[[object], Awaitable]) -> None:
        if self.failed is not None:
            raise self.failed
        self.queue.append((delivered, events, ack))
        self.wake.set()

    def fail(self, exc: Exception) -> None:
        """A batch failed before it was added (the agent raised): ack nothing more, as
        any later batch would be acked past it."""
        if self.failed is None:
            self.failed = exc

    async def room(self) -> None:
        """Wait while `limit` batches await delivery (backpressure); raises the
        delivery failure once there is one, so the agent stops taking batches."""
        while len(self.queue) >= self.limit and self.failed is None:
            await asyncio.wait([self.queue[0][0]])
            await asyncio.sleep(0)  # let _run ack it
        if self.failed is not None:
            raise self.failed

    async def drained(self) -> None:
        """Until every batch added so far is acked (or a delivery failed)."""
        while self.queue and self.failed is None:
            await asyncio.wait([self.queue[-1][0]])
            await asyncio.sleep(0)  # let _run ack it

    async def _run(self) -> None:
        while True:
            while not self.queue:
                self.wake.clear()
                await self.wake.wait()
            delivered, events, ack = self.queue[0]
            try:
                await asyncio.shield(delivered)
            except DeliveryFailed as exc:
                self.failed = exc
                log.error("%s; the worker stops without committing this batch (%d events) "
                          "or any later one: they are processed again after the restart",
                          exc, len(events))
                await self.on_failure(exc)
                return
            if self.failed is not None:  # `fail`: a batch before this one was lost
                return
            self.queue.popleft()
            for event in events:
                await ack(event)
