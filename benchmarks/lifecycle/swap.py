"""A live model swap under load: clicks lost, answered twice, and the longest pause in
the output stream while the worker swaps, against the longest pause of the same run
without a swap.

    python -m benchmarks.lifecycle.swap [--bootstrap-servers H:P] [--rate 300] [--seconds 30]

One worker (real RocksDB, local broker unless --bootstrap-servers), a full-size
random model A over the MovieLens catalogue (`--small`: the tests' small one); paced
clicks of 300 users; halfway, model B (another seed, so another version) is announced
on the models topic, loaded by the worker in its loader thread and installed between
two micro-batches. Pauses are gaps
between consecutive recommendations' timestamps (set by the worker's producer, ms):
`max_pause_s` over the swap window (from the announcement to 5 s after the install)
and `baseline_max_pause_s` over the rest of the run after a warm-up (5 s of load, not
measured); `gap_across_install_s` is the gap that spans the install itself. Lost:
clicks without a recommendation; applied twice: clicks with more than one (no restart
happens here, so any would be a double application). Writes the "swap" key of
benchmarks/results/lifecycle.json (read-modify-write: other keys are left alone).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, Producer

from stream.admin import CONTROL_TOPIC_CONFIG, DLQ_TOPIC_CONFIG, create_topics
from stream.config import StreamConfig
from stream.models_cli import write_deployment
from stream.records import Deployment, ModelRef, encode_click
from stream.tools.harness import MOVIELENS, REPO, Topics, WorkerProcess

RESULTS = REPO / "benchmarks" / "results" / "lifecycle.json"
PARTITIONS = 4
# Not measured: the first seconds of the load (first batches, caches). On a broker
# started for the run (the default) the outputs still paused 1.3-1.9 s now and then
# outside the swap window, after 15 s of warm-up too, on the shared 2-core machine;
# on a broker that had run a while, no gap over 0.3 s in three runs: measure against
# one (--bootstrap-servers) for the swap's own pause.
WARM_UP_S = 5.0
AFTER_SWAP_S = 5.0  # the swap window ends this long after the install


def log(msg: str) -> None:
    print(f"[lifecycle {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def export_seeded(where: Path, seed: int, frozen: bool = False, full: bool = False) -> Path:
    """A random HierTCN over every MovieLens item, small (as harness.make_export) or
    `full`-size (the released code's shape, what a swap really loads), with its own
    seed (another version); `frozen`: its item table frozen (live items)."""
    import torch

    from hiertcn.checkpoint import export, save_checkpoint
    from hiertcn.data.loaders import load_interactions
    from hiertcn.model import HierTCN, ModelConfig

    items = sorted(set(load_interactions(MOVIELENS)["item"].astype(str)))
    torch.manual_seed(seed)
    small = {} if full else dict(item_dim=16, channels=16, kernel_size=3, levels=3,
                                 gru_hidden=8, gru_layers=2, dropout=0.0)
    model = HierTCN(ModelConfig(n_items=len(items), freeze_items=frozen, **small)).eval()
    where.mkdir(parents=True, exist_ok=True)
    save_checkpoint(where / "ckpt.pt", model, items, step=0, extra={})
    return export(where / "ckpt.pt", where / "export")


@contextmanager
def world(bootstrap: str | None, work: Path, export_dir: Path):
    """(config, topics, worker): fresh topics, one worker on `export_dir`; a local
    broker when `bootstrap` is None. Everything stopped on the way out."""
    from stream.tools import localkafka

    broker = localkafka.start(work / "kafka") if bootstrap is None else None
    bootstrap = bootstrap or broker.bootstrap
    token = f"life-{time.time_ns() % 10**9}"
    topics = Topics(*(f"{token}-{n}" for n in ("clicks", "recs", "emb", "dlq")))
    config = StreamConfig.resolve({"bootstrap_servers": bootstrap, "clicks_topic": topics.clicks,
                                   "models_topic": f"{token}-models",
                                   "items_topic": f"{token}-items"})
    create_topics(bootstrap, {topics.clicks: PARTITIONS, topics.recommendations: PARTITIONS,
                              topics.embeddings: PARTITIONS})
    create_topics(bootstrap, {topics.dlq: PARTITIONS}, config=DLQ_TOPIC_CONFIG)
    create_topics(bootstrap, {config.models_topic: 1, config.items_topic: 1},
                  config=CONTROL_TOPIC_CONFIG)
    w = WorkerProcess(bootstrap, topics, f"{token}-app", export_dir, work / "data", PARTITIONS,
                      ["--sweep-interval-s", "86400", "--models-topic", config.models_topic,
                       "--items-topic", config.items_topic], log=work / "worker.log",
                      batch_within_s=None)
    try:
        w.wait_ready(120)
        yield config, topics, w
    finally:
        w.stop()
        if broker is not None:
            broker.stop()


def send_paced(config: StreamConfig, clicks, rate: float) -> None:
    """clicks: (user, item, event_id), at `rate` per second, event time 1 s apart."""
    p = Producer({**config.confluent_settings(), "partitioner": "murmur2_random",
                  "linger.ms": 1})
    t0 = time.monotonic()
    for k, (user, item, event_id) in enumerate(clicks):
        p.produce(config.clicks_topic, key=user.encode(),
                  value=encode_click(user, item, 1e6 + k, "click", event_id))
        p.poll(0)
        time.sleep(max(0.0, t0 + (k + 1) / rate - time.monotonic()))
    p.flush(60)


def read_outputs(config: StreamConfig, topic: str, n: int, timeout: float) -> list[tuple]:
    """[(timestamp s, value dict)] of the first n messages (or what came in time)."""
    import orjson

    c = Consumer({**config.confluent_settings(), "group.id": f"bench-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out, deadline = [], time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            for msg in c.consume(1000, timeout=0.5):
                if not msg.error():
                    out.append((msg.timestamp()[1] / 1000.0, orjson.loads(msg.value())))
    finally:
        c.close()
    return out


def max_gap(times: list[float]) -> float:
    return float(np.max(np.diff(times))) if len(times) > 1 else 0.0


def install_time(w: WorkerProcess, timeout: float = 60.0) -> float:
    """When the worker installed the new model: the time of its log line saying so
    (ms), once the swap counter moved."""
    deadline = time.monotonic() + timeout
    while w.counters().get("hiertcn_model_swaps_total", 0.0) < 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no swap within {timeout:g}s:\n{w.tail()}")
        time.sleep(0.05)
    for line in w.log.read_text(errors="replace").splitlines():
        m = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\].*model swapped between", line)
        if m:
            return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
    raise RuntimeError("the swap is counted but not logged")


def gap_across(times: list[float], at: float) -> float:
    """The gap between the last output before `at` and the first after it."""
    i = bisect.bisect_left(times, at)
    return times[i] - times[i - 1] if 0 < i < len(times) else 0.0


def run(bootstrap: str | None, rate: float, seconds: float, work: Path, full: bool) -> dict:
    from hiertcn.inference import StreamModel

    a_dir, b_dir = export_seeded(work / "a", 0, full=full), export_seeded(work / "b", 1, full=full)
    a, b = StreamModel.load(a_dir), StreamModel.load(b_dir)
    rng = np.random.default_rng(0)
    n = int(rate * (WARM_UP_S + seconds))
    clicks = [(f"u{rng.integers(300)}", a.item_ids[rng.integers(len(a.item_ids))], f"e{k}")
              for k in range(n)]
    load_average = [round(os.getloadavg()[0], 2)]  # the machine is shared: say how busy
    with world(bootstrap, work, a_dir) as (config, topics, w):
        load = threading.Thread(target=send_paced, args=(config, clicks, rate))
        start = time.time()
        load.start()
        time.sleep(WARM_UP_S + seconds / 2)
        announced = time.time()
        write_deployment(config, Deployment(ModelRef(b.version, str(b_dir.resolve()))))
        installed = install_time(w)
        load.join()
        outputs = read_outputs(config, topics.recommendations, n, timeout=120 + n / 200)
        load_average.append(round(os.getloadavg()[0], 2))
    per_click = Counter(v["event_id"] for _, v in outputs)
    times = sorted(t for t, _ in outputs)
    window = [t for t in times if announced <= t <= installed + AFTER_SWAP_S]
    # the pause across the window's edges counts too: the last output before it
    before = [t for t in times if t < announced][-1:]
    rest = [t for t in times if start + WARM_UP_S <= t < announced]
    rest_after = [t for t in times if t > installed + AFTER_SWAP_S]
    versions = Counter(v["model"] for _, v in outputs)
    return {
        "lost": n - len(per_click), "applied_twice": sum(c > 1 for c in per_click.values()),
        "max_pause_s": round(max_gap(before + window), 3),
        "baseline_max_pause_s": round(max(max_gap(rest), max_gap(rest_after)), 3),
        "announce_to_install_s": round(installed - announced, 3),
        "gap_across_install_s": round(gap_across(times, installed), 3),
        "events": n, "rate_per_s": rate, "load_average_start_end": load_average,
        "model": "full-size" if full else "small",
        "answered_by": {a.version: versions[a.version],
                                                         b.version: versions[b.version]},
        "command": "python -m benchmarks.lifecycle.swap " + " ".join(sys.argv[1:]),
    }


def write_results(update: dict, path: Path = RESULTS) -> None:
    """Read-modify-write: only the keys in `update` change (another benchmark writes
    the same file's accuracy arms)."""
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc.update(update)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.lifecycle.swap",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap-servers", default=None, help="default: a local broker")
    p.add_argument("--rate", type=float, default=300.0, help="clicks/s (default 300)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the run (default 30)")
    p.add_argument("--small", action="store_true",
                   help="a small model (default: full-size, 128 dims, 9,066 items)")
    p.add_argument("--no-write", action="store_true", help="print, do not write results")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lifecycle-swap-") as tmp:
        swap = run(args.bootstrap_servers, args.rate, args.seconds, Path(tmp), not args.small)
    log(json.dumps(swap))
    if not args.no_write:
        write_results({"swap": swap})
    ok = swap["lost"] == 0 and swap["applied_twice"] == 0 and swap["max_pause_s"] <= 1.0
    log(f"targets (0 lost, 0 applied twice, max pause <= 1 s): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
