"""The agent and the sweep, thin: decode, read tables, call the pure step
(stream/worker/recommend.py), write tables, send.

Batches: `take_available` (stream/worker/batching.py) hands over what is already
fetched, without waiting for a window. Outputs: one librdkafka producer
(stream/worker/publisher.py); a batch's events are acked, and so become committable,
only once all of its outputs are delivered, batches in order; a failed delivery
crashes the worker with those events uncommitted.

Table access is per partition: each user's row is read once per batch and written
once, both in the changelog partition of *the event being handled* (the user's last
event of the batch), which is made Faust's current event (`_as_current`). Without it
a write from a batch spanning partitions would file a user's state under another
partition (a rebalance would lose it), and a read would look through every
partition's RocksDB (Faust's `get` without a current event does, twice: `in`, then
the read).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import orjson

from stream.worker import metrics
from stream.worker.batching import take_available
from stream.worker.canary import merge
from stream.worker.changelogs import changelogs_known
from stream.worker.failures import describe
from stream.worker.publisher import OrderedAcks
from stream.errors import BadEvent, BadState, DeliveryFailed
from stream.records import decode_click, encode_dlq, encode_embedding, encode_recommendation
from stream.worker.recommend import Incoming, UserState, is_expired, is_idle, process_batch
from stream.worker.session_policy import for_model
from stream.worker.state_writes import StateWrites, _as_current

log = logging.getLogger(__name__)


def register(worker) -> None:
    config, app, tables = worker.config, worker.app, worker.tables
    holder, policy = worker.model, worker.policy  # built by create_app (stream/worker/app.py)
    watermark: dict[int, float] = {}  # partition -> latest event time seen (sweep clock)
    checked = []  # the changelog partitions, once

    async def crash(exc: Exception) -> None:
        await app.crash(exc)  # the worker exits; its uncommitted events are redelivered

    acks = OrderedAcks(crash)  # one per worker: a restarted actor's batches queue behind
    writes = StateWrites(tables["user_state"])  # rows: RocksDB + changelog via librdkafka

    @app.agent(worker.clicks)
    async def recommend(stream):
        worker.publisher.start()
        acks.start()
        try:
            async for events in take_available(stream, config.batch_size, config.batch_within_s):
                worker.last_batch = time.monotonic()
                if not checked:
                    await changelogs_known(app, config, tables)
                    checked.append(True)
                await acks.room()  # raises once a delivery failed: no further batch
                out = worker.publisher.batch()
                handle_batch(worker, events, watermark, out, writes)
                delivered = out.close()
                delivered.add_done_callback(writes.on_delivered(out))
                delivered.add_done_callback(_timer(metrics.DELIVERY_SECONDS))
                acks.add(delivered, events, stream.ack)
        except DeliveryFailed:
            raise  # OrderedAcks has stopped the worker
        except Exception as exc:  # unexpected: the batch is not acked, so stop the worker
            log.error("the agent failed; the worker stops with its batch uncommitted: %s",
                      describe(exc))
            acks.fail(exc)
            await crash(exc)
            raise
        finally:  # stopping: the batches already sent are acked once delivered, so the
            #       last commit covers them (else they are only answered again)
            if acks.failed is None:
                try:
                    await asyncio.wait_for(acks.drained(), timeout=10.0)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    pass

    @app.timer(interval=config.sweep_interval_s)
    async def sweep():
        """Expire users silent longer than the TTL, and close sessions idle longer than
        the gap, both in event time, by sending the user an `expire` or a `session_end`
        through the clicks topic: every state change stays in the agent, in partition
        order, and each names the state it saw (its session, its last applied offset)
        so that one overtaken by a newer click is void."""
        if holder.model is None or not watermark:
            return
        clock = max(watermark.values())
        # the longest gap of the models serving: a session is closed no sooner than
        # its model would (a click after the gap closes it anyway, stream/worker/plan.py)
        gap = max(for_model(policy, config, m).session_gap_s
                  for m in (holder.model, holder.candidate) if m is not None)
        sent = Counter()
        for user_id, row in tables["user_state"].items():
            try:
                st = UserState.from_row(row)
            except BadState:  # replaced at the user's next event (stream/worker/recommend.py)
                continue
            if is_expired(st, clock, config.state_ttl_s):
                value, kind = expire_event(user_id, st), "expire"
            elif is_idle(st, clock, gap):
                value, kind = sweep_event(user_id, st), "session_end"
            else:
                continue
            await worker.clicks.send(key=user_id.encode(), value=value)
            sent[kind] += 1
        if sent:
            log.info("sweep: %d idle sessions to close, %d users past the TTL to expire "
                     "(event-time clock %.0f)", sent["session_end"], sent["expire"], clock)


def handle_batch(worker, events, watermark, out, writes: StateWrites) -> None:
    """Decode, read each user's row once, step, write each row once, send to `out`."""
    table = worker.tables["user_state"]
    incoming, by_user = decode_batch(events, worker, watermark, out)
    if not incoming:
        return

    def load(user_id: str) -> UserState | None:
        metrics.TABLE_READS.inc()
        with _as_current(by_user[user_id]):  # the partition's RocksDB only: one get
            row = table.data.get(user_id)
        return None if row is None else UserState.from_row(row)

    route = worker.model.route()  # fixed for the whole batch: swaps fall between batches
    t0 = time.perf_counter()
    parts = []
    for model, events_of_model in route.split(incoming):  # by user: canary or not
        part = process_batch(model, events_of_model, load,
                             for_model(worker.policy, worker.config, model))
        count_version(model.version, part)
        parts.append(part)
    result = merge(parts)
    elapsed = time.perf_counter() - t0
    metrics.BATCH_SECONDS.observe(elapsed)
    metrics.TOP_K_SECONDS.observe(result.top_k_s)
    metrics.MODEL_SECONDS.observe(elapsed - result.top_k_s)
    metrics.BATCH_SIZE.observe(len(incoming))
    metrics.BATCH_USERS.observe(len(by_user))
    for user_id, state in result.states.items():
        writes.put(out, by_user[user_id], user_id, state.to_row())  # one record: whole
    for user_id in result.expired:
        writes.delete(out, by_user[user_id], user_id)  # a tombstone in the changelog
    publish(worker, result, out)
    reject_failed(worker, events, result.rejected, out)


def sweep_event(user_id: str, st: UserState) -> bytes:
    return orjson.dumps({"user_id": user_id, "event": "session_end", "ts": st.last_ts,
                         "reason": "idle", "session": st.session})


def expire_event(user_id: str, st: UserState) -> bytes:
    return orjson.dumps({"user_id": user_id, "event": "expire", "reason": "ttl",
                         "ts": st.last_seen if st.last_seen is not None else st.last_ts,
                         "applied_offset": st.offset})


def decode_batch(events, worker, watermark, out):
    """Decoded clicks in batch order, plus each user's last event (the read and write
    context). Bad events go to the dead-letter topic with their reason and are not
    retried."""
    incoming, by_user = [], {}
    now = time.time()
    for event in events:
        msg = event.message
        try:
            click = decode_click(msg.key, msg.value, worker.config.max_event_bytes)
        except BadEvent as bad:
            reject(worker, msg, bad.reason, out)
            continue
        incoming.append(Incoming(click.user_id, click.item_id, click.ts, click.event,
                                 click.event_id, msg.partition, msg.offset,
                                 received=msg.timestamp or now, session=click.session,
                                 applied_offset=click.applied_offset))
        by_user[click.user_id] = event
        watermark[msg.partition] = max(watermark.get(msg.partition, click.ts), click.ts)
        if msg.timestamp:
            metrics.EVENT_WAIT.observe(max(now - msg.timestamp, 0.0))
    metrics.EVENTS_IN.inc(len(events))
    return incoming, by_user


def reject(worker, msg, reason: str, out) -> None:
    log.warning("dead-letter %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason)
    metrics.DLQ.labels(reason=reason.split(":")[0]).inc()
    out.send(worker.config.dlq_topic, msg.key, encode_dlq(msg.value, reason, msg.topic,
                                                          msg.partition, msg.offset))


def reject_failed(worker, events, rejected, out) -> None:
    """Dead-letter the decoded events the pure step could not use (a bad stored state,
    a failure in the model step): each costs its own event, never the batch."""
    if not rejected:
        return
    messages = {(e.message.partition, e.message.offset): e.message for e in events}
    for ev, reason in rejected:
        reject(worker, messages[(ev.partition, ev.offset)], reason, out)


def publish(worker, result, out) -> None:
    """Each answered event's recommendation (clicks) and embedding, as the config's
    `embeddings` option says: every event, session ends only, or none."""
    config = worker.config
    embeddings = config.embeddings
    now = time.time()
    by_version = {}  # version -> its latency histogram: one label lookup per batch
    for o in result.outputs:
        key = o.user_id.encode()
        if embeddings == "event" or (embeddings == "session_end" and not o.recommend):
            out.send(config.embeddings_topic, key, encode_embedding(
                o.user_id, o.ts, result.embeddings[o.embedding_row], o.model, o.event_id))
        if not o.recommend:
            continue
        latency_ms = (now - o.received) * 1000.0
        metrics.LATENCY.observe(latency_ms / 1000.0)
        version_latency = by_version.get(o.model)
        if version_latency is None:
            version_latency = by_version[o.model] = metrics.VERSION_LATENCY.labels(model=o.model)
        version_latency.observe(latency_ms / 1000.0)
        out.send(config.recommendations_topic, key, encode_recommendation(
            o.user_id, o.event_id, o.ts, o.session, o.items, o.model, round(latency_ms, 3)))
        metrics.RECOMMENDATIONS.inc()
    count_outcomes(result.counts)


def count_outcomes(counts: Counter) -> None:
    for name, n in counts.items():
        if name.startswith("rolled_"):
            metrics.SESSIONS_ROLLED.labels(reason=name[len("rolled_"):]).inc(n)
        else:
            metrics.OUTCOMES.labels(kind=name).inc(n)


def count_version(version: str, part) -> None:
    """The per-version view of one model's share of a batch: ops compare a canary's
    answers and outcomes with the current model's."""
    metrics.count_version(version, "answered", len(part.outputs))
    for name, n in part.counts.items():
        metrics.count_version(version, name, n)
    if part.rejected:
        metrics.count_version(version, "dead_lettered", len(part.rejected))


def _timer(histogram):
    """A done-callback observing the seconds since it was made."""
    t0 = time.perf_counter()
    return lambda _future: histogram.observe(time.perf_counter() - t0)
