"""The control feed: the compacted `models` and `items` topics, read whole by every
worker, then followed, in a thread of their own (never the event loop).

No consumer group: a group would split the partitions between the workers, and each
worker needs every record (every worker serves the deployment; every worker's index
holds every item). Each worker assigns itself all partitions from the beginning; a
compacted topic's beginning is the latest record per key, so a worker started (or
restarted) today reads the deployment in force and the catalogue as it stands.

    feed = ControlFeed(config, on_deployment, on_items)
    deployment, items = feed.catch_up()   # at start, before the first batch
    feed.start()                          # then: callbacks from the feed's thread

Bad records are counted and logged by topic, partition and offset; they never stop
the feed.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Callable

import numpy as np

from stream.config import StreamConfig
from stream.errors import BadEvent
from stream.records import DEPLOYMENT_KEY, Deployment, decode_deployment, decode_item_vector
from stream.worker import metrics

log = logging.getLogger(__name__)

ItemUpdate = tuple[str, "np.ndarray | None"]  # (item id, vector; None = retired)
# the deployment's tombstone (`hiertcn-stream models withdraw`): no deployment in force,
# the workers serve their own export dir again; on_deployment gets None
WITHDRAWN = object()
POLL_S = 0.2  # the feed's longest wait for a record: part of an item's time to its first rec
RECHECK_S = 5.0  # how often a control topic not there yet is looked for again


class ControlFeed:
    def __init__(self, config: StreamConfig, on_deployment: Callable[[Deployment], None],
                 on_items: Callable[[list[ItemUpdate]], None]):
        self.config = config
        self.on_deployment, self.on_items = on_deployment, on_items
        self.topics = (config.models_topic, config.items_topic)
        self._assigned: set[str] = set()
        self._warned: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer = None

    def catch_up(self, timeout: float = 15.0) -> tuple[Deployment | None, list[ItemUpdate]]:
        """Read both topics up to their end as of now: (the latest deployment or None,
        the latest update of each item). Blocking: called once, at start."""
        from confluent_kafka import TopicPartition

        c = self._connect()
        ends = {}
        for topic in self._assign_missing():
            for p in c.list_topics(topic, timeout=10).topics[topic].partitions:
                ends[(topic, p)] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        todo = {tp for tp, end in ends.items() if end > 0}
        deployment, items = None, {}
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for msg in c.consume(500, timeout=POLL_S):
                if msg.error():
                    continue
                tp = (msg.topic(), msg.partition())
                got = self._decode(msg)
                if msg.topic() == self.config.models_topic and got is not None:
                    deployment = None if got is WITHDRAWN else got
                elif got is not None:
                    items[got[0]] = got[1]
                if msg.offset() + 1 >= ends.get(tp, 0):
                    todo.discard(tp)
        if todo:
            log.warning("control feed: %d partitions not read to their end within %gs; the "
                        "rest follows in the background", len(todo), timeout)
        return deployment, list(items.items())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="control-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ internals

    def _connect(self):
        from confluent_kafka import Consumer

        if self._consumer is None:
            self._consumer = Consumer({
                **self.config.confluent_settings(),
                # never joins a group (partitions are assigned, not subscribed): the id
                # is only required by the client; nothing is committed
                "group.id": f"{self.config.app_id}-control-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        return self._consumer

    def _assign_missing(self) -> list[str]:
        """Assign every partition, from the start, of the control topics that exist
        and are not assigned yet; returns the newly assigned topics."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        c = self._connect()
        new = []
        for topic in self.topics:
            if topic in self._assigned:
                continue
            md = c.list_topics(topic, timeout=10).topics.get(topic)
            if md is None or md.error is not None or not md.partitions:
                continue
            c.incremental_assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                                  for p in md.partitions])
            self._assigned.add(topic)
            new.append(topic)
        missing = set(self.topics) - self._assigned - self._warned
        if missing:  # once per topic: `hiertcn-stream topics` creates them
            self._warned |= missing
            log.warning("control feed: no topic %s yet; looked for again every %gs",
                        ", ".join(sorted(missing)), RECHECK_S)
        return new

    def _run(self) -> None:
        c = self._connect()
        checked = time.monotonic()
        while not self._stop.is_set():
            try:
                if len(self._assigned) < len(self.topics) and time.monotonic() - checked > RECHECK_S:
                    checked = time.monotonic()
                    self._assign_missing()
                # consume(n, timeout) waits the whole timeout for n records: wait for
                # one only, then take what else is already there
                first = c.poll(POLL_S)
                if first is not None:
                    self._dispatch([first, *c.consume(499, timeout=0)])
            except Exception as exc:  # the feed must outlive a broker hiccup
                log.warning("control feed: %s; going on", type(exc).__name__)
                time.sleep(1.0)
        c.close()

    def _dispatch(self, messages) -> None:
        items: dict[str, np.ndarray | None] = {}
        for msg in messages:
            if msg.error():
                continue
            got = self._decode(msg)
            if got is None:
                continue
            if msg.topic() == self.config.models_topic:
                self.on_deployment(None if got is WITHDRAWN else got)
            else:
                items[got[0]] = got[1]
        if items:
            self.on_items(list(items.items()))

    def _decode(self, msg):
        """A Deployment, an ItemUpdate, or None for a record to skip (counted)."""
        where = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        try:
            if msg.topic() == self.config.models_topic:
                if msg.key() != DEPLOYMENT_KEY:
                    raise BadEvent("unknown_key")
                if msg.value() is None:  # `models withdraw`
                    return WITHDRAWN
                return decode_deployment(msg.value())
            update = decode_item_vector(msg.key(), msg.value())
            metrics.ITEM_MESSAGES.labels(kind="vector" if update[1] is not None
                                         else "tombstone").inc()
            return update
        except BadEvent as bad:
            log.warning("control feed: skipped %s: %s", where, bad.reason)
            metrics.CONTROL_BAD_RECORDS.labels(topic="models" if msg.topic() ==
                                               self.config.models_topic else "items").inc()
            return None
