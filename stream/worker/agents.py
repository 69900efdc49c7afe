"""The agent and the sweep, thin: decode, read tables, call the pure step
(stream/worker/recommend.py), write tables, send.

Table writes go to the changelog partition of the *event being written for*, not
of the last event of the micro-batch, so each write runs with that event set as
Faust's current event (`_as_current`). Without it a batch spanning partitions would
file a user's state under another partition, and a rebalance would lose it.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import Counter

import orjson
from faust.streams import _current_event

from stream.worker import metrics
from stream.worker.changelogs import changelogs_known
from stream.errors import BadEvent, BadState
from stream.records import decode_click, encode_dlq, encode_embedding, encode_recommendation
from stream.worker.recommend import Incoming, UserState, is_expired, is_idle, process_batch

log = logging.getLogger(__name__)


def register(worker) -> None:
    config, app, tables = worker.config, worker.app, worker.tables
    holder, policy = worker.model, worker.policy  # built by create_app (stream/worker/app.py)
    watermark: dict[int, float] = {}  # partition -> latest event time seen (sweep clock)

    def load(user_id: str) -> UserState | None:
        row = tables["user_state"].get(user_id)
        return None if row is None else UserState.from_row(row)

    checked = []  # the changelog partitions, once

    @app.agent(worker.clicks)
    async def recommend(stream):
        async for events in stream.take_events(config.batch_size, within=config.batch_within_s):
            worker.last_batch = time.monotonic()
            if not checked:
                await changelogs_known(app, config, tables)
                checked.append(True)
            model = holder.get()
            incoming, by_user = decode_batch(events, worker, watermark)
            if not incoming:
                continue
            t0 = time.perf_counter()
            result = process_batch(model, incoming, load, policy)
            elapsed = time.perf_counter() - t0
            metrics.BATCH_SECONDS.observe(elapsed)
            metrics.TOP_K_SECONDS.observe(result.top_k_s)
            metrics.MODEL_SECONDS.observe(elapsed - result.top_k_s)
            metrics.BATCH_SIZE.observe(len(incoming))
            for user_id, state in result.states.items():
                with _as_current(by_user[user_id]):
                    tables["user_state"][user_id] = state.to_row()  # one record: whole
            for user_id in result.expired:
                with _as_current(by_user[user_id]):
                    del tables["user_state"][user_id]  # a tombstone in the changelog
            publish(worker, result)
            reject_failed(worker, events, result.rejected)

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
        sent = Counter()
        for user_id, row in tables["user_state"].items():
            try:
                st = UserState.from_row(row)
            except BadState:  # replaced at the user's next event (stream/worker/recommend.py)
                continue
            if is_expired(st, clock, config.state_ttl_s):
                value, kind = expire_event(user_id, st), "expire"
            elif is_idle(st, clock, policy.session_gap_s):
                value, kind = sweep_event(user_id, st), "session_end"
            else:
                continue
            await worker.clicks.send(key=user_id.encode(), value=value)
            sent[kind] += 1
        if sent:
            log.info("sweep: %d idle sessions to close, %d users past the TTL to expire "
                     "(event-time clock %.0f)", sent["session_end"], sent["expire"], clock)


def sweep_event(user_id: str, st: UserState) -> bytes:
    return orjson.dumps({"user_id": user_id, "event": "session_end", "ts": st.last_ts,
                         "reason": "idle", "session": st.session})


def expire_event(user_id: str, st: UserState) -> bytes:
    return orjson.dumps({"user_id": user_id, "event": "expire", "reason": "ttl",
                         "ts": st.last_seen if st.last_seen is not None else st.last_ts,
                         "applied_offset": st.offset})


def decode_batch(events, worker, watermark):
    """Decoded clicks in batch order, plus each user's last event (the write context).
    Bad events go to the dead-letter topic with their reason and are not retried."""
    incoming, by_user = [], {}
    now = time.time()
    for event in events:
        msg = event.message
        try:
            click = decode_click(msg.key, msg.value, worker.config.max_event_bytes)
        except BadEvent as bad:
            reject(worker, msg, bad.reason)
            continue
        incoming.append(Incoming(click.user_id, click.item_id, click.ts, click.event,
                                 click.event_id, msg.partition, msg.offset,
                                 received=msg.timestamp or now, session=click.session,
                                 applied_offset=click.applied_offset))
        by_user[click.user_id] = event
        watermark[msg.partition] = max(watermark.get(msg.partition, click.ts), click.ts)
    metrics.EVENTS_IN.inc(len(events))
    return incoming, by_user


def reject(worker, msg, reason: str) -> None:
    log.warning("dead-letter %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason)
    metrics.DLQ.labels(reason=reason.split(":")[0]).inc()
    worker.dlq.send_soon(key=msg.key, value=encode_dlq(msg.value, reason, msg.topic,
                                                        msg.partition, msg.offset))


def reject_failed(worker, events, rejected) -> None:
    """Dead-letter the decoded events the pure step could not use (a bad stored state,
    a failure in the model step): each costs its own event, never the batch."""
    if not rejected:
        return
    messages = {(e.message.partition, e.message.offset): e.message for e in events}
    for ev, reason in rejected:
        reject(worker, messages[(ev.partition, ev.offset)], reason)


def publish(worker, result) -> None:
    now = time.time()
    for o in result.outputs:
        key = o.user_id.encode()
        emb = result.embeddings[o.embedding_row]
        worker.embeddings.send_soon(key=key, value=encode_embedding(o.user_id, o.ts, emb, o.model,
                                                                     o.event_id))
        if not o.recommend:
            continue
        latency_ms = (now - o.received) * 1000.0
        metrics.LATENCY.observe(latency_ms / 1000.0)
        worker.recommendations.send_soon(key=key, value=encode_recommendation(
            o.user_id, o.event_id, o.ts, o.session, o.items, o.model, round(latency_ms, 3)))
        metrics.RECOMMENDATIONS.inc()
    count_outcomes(result.counts)


def count_outcomes(counts: Counter) -> None:
    for name, n in counts.items():
        if name.startswith("rolled_"):
            metrics.SESSIONS_ROLLED.labels(reason=name[len("rolled_"):]).inc(n)
        else:
            metrics.OUTCOMES.labels(kind=name).inc(n)


class _as_current:
    """Make `event` Faust's current event for the table writes inside the block."""

    def __init__(self, event):
        self.event = event

    def __enter__(self):
        self.token = _current_event.set(weakref.ref(self.event))

    def __exit__(self, *exc):
        _current_event.reset(self.token)
