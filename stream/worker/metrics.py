"""Prometheus metrics of the worker, served at /metrics on the Faust web port.
One process-wide registry: each worker process is one scrape target."""

from prometheus_client import Counter, Gauge, Histogram, Info

EVENTS_IN = Counter("hiertcn_events_in_total", "Events consumed from the clicks topic")
RECOMMENDATIONS = Counter("hiertcn_recommendations_total", "Recommendations published")
DLQ = Counter("hiertcn_dlq_total", "Events sent to the dead-letter topic", ["reason"])
SESSIONS_ROLLED = Counter("hiertcn_sessions_rolled_total", "GRU roll-ups", ["reason"])
OUTCOMES = Counter("hiertcn_event_outcomes_total",
                   "Notable outcomes: unknown_items, model_resets, redelivered, late, "
                   "bad_states (a stored row that did not parse: its user started afresh), "
                   "batch_retries (a batch that failed, processed again user by user)",
                   ["kind"])
BATCH_SIZE = Histogram("hiertcn_batch_events", "Events per micro-batch",
                       buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
BATCH_SECONDS = Histogram("hiertcn_batch_seconds", "Model + top-K time per micro-batch",
                          buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1))
_FAST = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1)
MODEL_SECONDS = Histogram("hiertcn_model_seconds", "State + model time per micro-batch",
                          buckets=_FAST)
TOP_K_SECONDS = Histogram("hiertcn_top_k_seconds", "faiss top-K time per micro-batch",
                          buckets=_FAST)
BATCH_USERS = Histogram("hiertcn_batch_users", "Users per micro-batch",
                        buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
TABLE_READS = Counter("hiertcn_table_reads_total",
                      "user_state rows read (one RocksDB get each, in the event's "
                      "partition): one per user per batch, so reads/batch users = 1")
DELIVERY_SECONDS = Histogram("hiertcn_delivery_seconds",
                             "From a batch's last output produced to all its outputs "
                             "acknowledged by the broker (its events then committable)",
                             buckets=_FAST)
LATENCY = Histogram("hiertcn_event_to_recommendation_seconds",
                    "From the event's Kafka timestamp to its recommendation being queued",
                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
EVENT_WAIT = Histogram("hiertcn_event_wait_seconds",
                       "From the event's Kafka timestamp to the start of its micro-batch's "
                       "work: fetching and queueing, before any model work (the timestamp "
                       "is the producer's clock unless the topic uses LogAppendTime)",
                       buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
CONSUMER_LAG = Gauge("hiertcn_consumer_lag", "Clicks not yet committed by this worker: "
                     "highwater - committed offset, per assigned partition", ["partition"])
HELD_BACK = Counter("hiertcn_clicks_held_back_total",
                    "Clicks fetched across a rebalance that Faust would have delivered "
                    "out of order, held back to be fetched again (stream/worker/faust_fixes.py)",
                    ["why"])
OFFSET_GAPS = Counter("hiertcn_offset_gaps_total",
                      "Jumps in clicks offsets Faust's consumer saw (it would skip the "
                      "clicks between; see stream/worker/faust_fixes.py)")
TABLE_KEYS = Gauge("hiertcn_table_keys", "Users held in a local table", ["table"])
MODEL_INFO = Info("hiertcn_model", "Loaded model export")

# ---- model lifecycle: swaps, canary, live catalogue (stream/worker/model_holder.py)
MODEL_LOAD_FAILURES = Counter("hiertcn_model_load_failures_total",
                              "Model exports refused (missing file, wrong shapes, a load "
                              "error, another version than announced): the models that "
                              "served before keep serving")
MODEL_SWAPS = Counter("hiertcn_model_swaps_total",
                      "Deployments installed (a new current or candidate model, or "
                      "share), each between two micro-batches")
CANARY_SHARE = Gauge("hiertcn_canary_share",
                     "Share of users served by the candidate model (0: no canary)")
# By model version, for comparing a canary with the current model. Bounded: only the
# versions serving (current, candidate) have series; a version's are dropped when it
# stops serving (`forget_version`).
VERSION_LATENCY = Histogram("hiertcn_model_latency_seconds",
                            "From the event's Kafka timestamp to its recommendation being "
                            "queued, by the model version that answered",
                            ["model"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25,
                                                .5, 1, 2.5, 5))
VERSION_EVENTS = Counter("hiertcn_model_events_total",
                         "Events per model version: answered, and the notable outcomes "
                         "(as hiertcn_event_outcomes_total and rolled_<reason>)",
                         ["model", "kind"])
ITEM_MESSAGES = Counter("hiertcn_item_messages_total",
                        "Records read from the items topic: vector, tombstone", ["kind"])
ITEM_UPDATES = Counter("hiertcn_item_updates_total",
                       "Item changes applied to a loaded model: added, updated, retired; "
                       "refused (the model trains its own item table), wrong_dim",
                       ["outcome"])
CONTROL_BAD_RECORDS = Counter("hiertcn_control_bad_records_total",
                              "Records of the models or items topic that do not parse, "
                              "skipped", ["topic"])
_VERSION_KINDS: dict[str, set[str]] = {}  # version -> kinds with a series


def count_version(version: str, kind: str, n: float = 1) -> None:
    _VERSION_KINDS.setdefault(version, set()).add(kind)
    VERSION_EVENTS.labels(model=version, kind=kind).inc(n)


def forget_version(version: str) -> None:
    """Drop a version's series once it serves no more: cardinality stays bounded."""
    for kind in _VERSION_KINDS.pop(version, ()):
        VERSION_EVENTS.remove(version, kind)
    try:
        VERSION_LATENCY.remove(version)
    except KeyError:
        pass
