"""HTTP endpoints on the Faust web port: /health (live), /ready (assigned, tables
recovered, model loaded) and /metrics (Prometheus text format). /health fails (503)
when clicks wait in the assigned partitions and no batch ran for `stall_s`.

Nothing else: Faust's own pages are off unless `web_debug_pages` (see `OwnPagesWeb`),
because its /table/ pages answer any user's state to whoever reaches the port."""

from __future__ import annotations

import logging
import time

from faust.web.drivers.aiohttp import Web as AiohttpWeb
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.worker import metrics

log = logging.getLogger(__name__)


class OwnPagesWeb(AiohttpWeb):
    """Faust's aiohttp server serving only the pages an app registers. Faust's own
    blueprints are gone: /table/ (every table, and any key's value: any user's state),
    /router/ (which worker holds a key, the other workers' URLs), the index at /, and,
    in debug, statistics and /graph. Whatever APP_WEB_*_ENABLED says."""

    default_blueprints = production_blueprints = debug_blueprints = optional_blueprints = ()


def choose_web(app, debug_pages: bool) -> None:
    """Call right after the App is made: `app.web` is built once, at its first use (the
    first page registered), with the blueprints it will serve."""
    if not debug_pages:
        app.web = OwnPagesWeb(app)
    else:
        log.warning("web_debug_pages: Faust's /table/ pages serve users' state on %s:%s",
                    app.conf.web_host, app.conf.web_port)


def register_pages(worker) -> None:
    app = worker.app

    @app.on_rebalance_complete.connect
    async def _assigned(sender, **kwargs):
        # fires once partitions are assigned and tables recovered ("Worker ready")
        worker.assigned = True
        worker.last_batch = time.monotonic()  # a backlog's first batch is not a stall
        worker.model.get()  # load the export before the first event, not on it
        for name, table in worker.tables.items():
            metrics.TABLE_KEYS.labels(table=name).set(_local_keys(table))

    @app.timer(interval=5.0)
    async def report_lag():
        for partition, lag in _clicks_lag(app.consumer, worker.config.clicks_topic).items():
            metrics.CONSUMER_LAG.labels(partition=str(partition)).set(lag)

    @app.page("/health/")
    async def health(web, request):
        waiting = sum(_clicks_lag(app.consumer, worker.config.clicks_topic).values())
        idle = time.monotonic() - worker.last_batch
        if worker.assigned and waiting and idle > worker.config.stall_s:
            # seen after a kill -9 restart under load: the consumer stopped fetching
            # with clicks waiting, and nothing in the worker noticed (issue 5's notes)
            fetch = fetch_state(app.consumer, worker.config.clicks_topic)
            log.warning("stalled: %d clicks wait, no batch for %.0fs; fetch state: %s",
                        waiting, idle, fetch)
            return web.json({"status": "stalled", "clicks_waiting": waiting,
                             "idle_s": round(idle, 1), "fetch": fetch}, status=503)
        return web.json({"status": "ok"})

    @app.page("/ready/")
    async def ready(web, request):
        ok = worker.assigned and worker.model.model is not None
        return web.json({"ready": ok, "model": getattr(worker.model.model, "version", None)},
                        status=200 if ok else 503)

    @app.page("/metrics/")
    async def prometheus(web, request):
        # aiohttp refuses a charset inside content_type; the text is ASCII anyway
        media = "; ".join(p for p in CONTENT_TYPE_LATEST.split("; ") if "charset" not in p)
        return web.bytes(generate_latest(), content_type=media)


def _clicks_lag(consumer, clicks_topic: str) -> dict[int, int]:
    """{partition: highwater - committed offset} of the assigned clicks partitions.
    Faust keeps the group's committed offsets privately; they are what Kafka (and KEDA)
    call consumer lag, so this is the same figure."""
    lag = {}
    for tp in consumer.assignment():
        if tp.topic == clicks_topic:
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag[tp.partition] = max(0, highwater - (consumer._committed_offset.get(tp) or 0))
    return lag


def fetch_state(consumer, clicks_topic: str) -> dict:
    """Where each assigned clicks partition stands in Faust's flow control and in the
    aiokafka consumer under it: what a stall report needs (the stall's cause is open,
    issue 5's notes). Reads private attributes of both, read-only; a diagnostic must
    not fail the health check, so anything missing reads as absent."""
    state: dict = {"flow_active": getattr(consumer, "flow_active", None)}
    try:
        inner = consumer._thread._ensure_consumer()
        subscription = inner._subscription.subscription
        assignment = subscription.assignment if subscription is not None else None
    except Exception:
        assignment = None
    sets = {name: getattr(consumer, f"_{name}_partitions", None) or set()
            for name in ("active", "paused", "buffered")}
    for tp in consumer.assignment():
        if tp.topic != clicks_topic:
            continue
        row = {"committed": consumer._committed_offset.get(tp),
               "highwater": consumer.highwater(tp),
               **{name: tp in tps for name, tps in sets.items()}}
        try:
            tps = assignment.state_value(tp)
            row.update(position=tps._position, fetch_paused=tps.paused,
                       status=tps._status.name)
        except Exception:
            pass
        state[tp.partition] = row
    return state


def _local_keys(table) -> int:
    try:
        return sum(1 for _ in table.keys())
    except Exception:  # a table mid-recovery can refuse iteration; the gauge just waits
        return 0
