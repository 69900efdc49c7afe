"""From an item's publication on the `items` topic to its first appearance in a
recommendation, on the local broker; and from its tombstone to its last.

    python -m benchmarks.lifecycle.catalogue [--bootstrap-servers H:P] [--trials 10]

One worker on a full-size random model (`--small`: the tests' small one) over the
MovieLens catalogue whose item table is frozen (as `hiertcn train --item-vectors` trains it: the only kind that takes live
item vectors). A probe user clicks one known item, then unknown items every 20 ms
(an unknown item leaves the state as it is, so its embedding stays put). Each trial
publishes a new item whose vector points along that embedding, longer than the last
trial's, so it ranks first, and times from the publication (the record's producer
timestamp) to the first recommendation naming it (the worker's producer timestamp);
then the item's tombstone, to the first recommendation without it. Resolution: the
probe's 20 ms. Writes "item_to_first_rec_s" (the slowest trial) and "catalogue" (all
figures) into benchmarks/results/lifecycle.json, read-modify-write.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, Producer

from benchmarks.lifecycle.swap import export_seeded, log, world, write_results
from stream.records import encode_click, encode_item_vector

PROBE_EVERY_S = 0.02


def probe(config, item: str, stop: threading.Event) -> None:
    p = Producer({**config.confluent_settings(), "partitioner": "murmur2_random",
                  "linger.ms": 0})
    p.produce(config.clicks_topic, key=b"probe", value=encode_click("probe", item, 1.0))
    k = 0
    while not stop.is_set():
        k += 1
        p.produce(config.clicks_topic, key=b"probe",
                  value=encode_click("probe", f"no-such-item-{k}", 1.0 + k, "click", f"p{k}"))
        p.poll(0)
        time.sleep(PROBE_EVERY_S)
    p.flush(10)


class Recs:
    """The probe's recommendations as they come: (timestamp s, item ids)."""

    def __init__(self, config, topic: str):
        self.c = Consumer({**config.confluent_settings(), "group.id": f"cat-{time.time_ns()}",
                           "auto.offset.reset": "latest", "enable.auto.commit": False})
        self.c.subscribe([topic])

    def first(self, test, after: float, timeout: float = 30.0) -> float:
        """Timestamp of the first recommendation after `after` whose items pass `test`."""
        import orjson

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.c.consume(500, timeout=0.2):
                if msg.error():
                    continue
                ts = msg.timestamp()[1] / 1000.0
                items = [i["item_id"] for i in orjson.loads(msg.value())["items"]]
                if ts >= after and test(items):
                    return ts
        raise RuntimeError(f"no such recommendation within {timeout:g}s")


def publish(config, key: str, vector) -> float:
    """The record's producer timestamp (s); vector None: a tombstone."""
    stamp = []
    p = Producer(config.confluent_settings())
    p.produce(config.items_topic, key=key.encode(),
              value=None if vector is None else encode_item_vector(vector),
              on_delivery=lambda err, msg: stamp.append(msg.timestamp()[1] / 1000.0))
    p.flush(10)
    return stamp[0]


def embedding_of_probe(config, topic: str) -> np.ndarray:
    import orjson

    c = Consumer({**config.confluent_settings(), "group.id": f"emb-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                return np.asarray(orjson.loads(msg.value())["embedding"], np.float32)
    finally:
        c.close()
    raise RuntimeError("no embedding for the probe user")


def run(bootstrap: str | None, trials: int, work: Path, full: bool) -> dict:
    from hiertcn.inference import StreamModel

    export_dir = export_seeded(work / "frozen", 2, frozen=True, full=full)
    model = StreamModel.load(export_dir)
    to_first, to_gone = [], []
    load_average = [round(os.getloadavg()[0], 2)]  # the machine is shared: say how busy
    with world(bootstrap, work, export_dir) as (config, topics, w):
        stop = threading.Event()
        recs = Recs(config, topics.recommendations)
        sender = threading.Thread(target=probe, args=(config, model.item_ids[0], stop))
        sender.start()
        try:
            direction = embedding_of_probe(config, topics.embeddings)
            direction /= np.linalg.norm(direction)
            for j in range(trials):
                name = f"live-{j}"
                at = publish(config, name, 100.0 * (j + 1) * direction)
                to_first.append(recs.first(lambda items: name in items, at) - at)
                at = publish(config, name, None)
                to_gone.append(recs.first(lambda items: name not in items, at) - at)
        finally:
            stop.set()
            sender.join()
            recs.c.close()
    load_average.append(round(os.getloadavg()[0], 2))
    return {"item_to_first_rec_s": round(max(to_first), 3), "catalogue": {
        "trials": trials, "to_first_rec_median_s": round(statistics.median(to_first), 3),
        "to_first_rec_max_s": round(max(to_first), 3),
        "tombstone_to_gone_median_s": round(statistics.median(to_gone), 3),
        "tombstone_to_gone_max_s": round(max(to_gone), 3), "probe_every_s": PROBE_EVERY_S,
        "load_average_start_end": load_average,
        "items_in_catalogue": len(model.item_ids), "model": "full-size" if full else "small",
        "command": "python -m benchmarks.lifecycle.catalogue " + " ".join(sys.argv[1:])}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.lifecycle.catalogue",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap-servers", default=None, help="default: a local broker")
    p.add_argument("--trials", type=int, default=10, help="items published (default 10)")
    p.add_argument("--small", action="store_true",
                   help="a small model (default: full-size, 128 dims, 9,066 items)")
    p.add_argument("--no-write", action="store_true", help="print, do not write results")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lifecycle-catalogue-") as tmp:
        figures = run(args.bootstrap_servers, args.trials, Path(tmp), not args.small)
    log(json.dumps(figures))
    if not args.no_write:
        write_results(figures)
    ok = figures["item_to_first_rec_s"] <= 5.0
    log(f"target (new item to first recommendation <= 5 s): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
