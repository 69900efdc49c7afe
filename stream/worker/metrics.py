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
