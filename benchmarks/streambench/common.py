"""What every phase of the stream benchmark shares: paths, sizes, the full-size model
export, the MovieLens clicks as Kafka messages, the log line."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from stream.tools.harness import REPO, export_random_model

DATA = REPO / "data" / "movielens.csv.gz"
RESULTS = REPO / "benchmarks" / "results"
PARTITIONS = 4
BATCH = 200  # the worker's default micro-batch (StreamConfig.batch_size)
SESSION_LENS = (1, 10, 50)
# The latency producer: the project's producer settings (stream.tools.replay), but sending
# at once: with linger 20 ms the producer's own batching would sit inside the latency.
LATENCY_LINGER_MS = 1
# Output topics (recommendations, pass-through): the broker stamps each message when it
# appends it, so latency ends where the output reached Kafka, however the worker sends.
OUTPUT_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Deadline(Exception):
    """The whole run went over --max-seconds."""


def build_export(where: Path) -> Path:
    """The full-size HierTCN (default ModelConfig) over the MovieLens training
    catalogue, random weights (speed does not depend on them), exported exactly as
    `hiertcn export` does."""
    from hiertcn.data.cache import load_splits
    items = [str(i) for i in load_splits(DATA)["train"].item_ids]
    return export_random_model(where, items)


def load_messages() -> list[tuple[bytes, bytes, str]]:
    """Every MovieLens click in event-time order as (key, value, event_id)."""
    from stream.records import encode_click
    from stream.tools.replay import load_events
    events = load_events(DATA)
    cols = (events[c].tolist() for c in ("user", "item", "ts", "event", "event_id"))
    return [(user.encode(), encode_click(user, item, ts, event, eid), eid)
            for user, item, ts, event, eid in zip(*cols)]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    import torch
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(),
            "loadavg_at_start": loadavg()}


def pct(values, q) -> float:
    return round(float(np.percentile(values, q)), 2)
