"""Consumer and producer settings of the worker's Faust app (stream/worker/app.py). The
stream benchmark's pass-through app uses the same, so that the ceiling it measures is
this app's; a module of its own so that it can import them without torch or faiss."""

FAUST_CLIENT_SETTINGS = {
    "consumer_auto_offset_reset": "earliest",
    "broker_session_timeout": 10.0,  # a killed worker's partitions move after this
    "broker_heartbeat_interval": 1.0,
    "broker_commit_every": 1000,
    "broker_commit_interval": 1.0,
    "producer_linger_ms": 5,
}
