"""The harness around a worker process, shared by tests, benchmarks and the demo: a
small random-weight export over the MovieLens catalogue (plumbing, not accuracy),
`python -m stream.cli worker` in a subprocess, fresh topic names, and consumers that
read outputs and changelogs back."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson
import torch
from confluent_kafka import Consumer

from hiertcn.checkpoint import export, save_checkpoint
from hiertcn.data.loaders import load_interactions
from hiertcn.model import HierTCN, ModelConfig

REPO = Path(__file__).resolve().parents[2]
MOVIELENS = REPO / "data" / "movielens.csv.gz"


def make_export(where: Path) -> Path:
    """A small HierTCN (random weights: these tests check plumbing, not accuracy)
    over every MovieLens item, exported exactly as `hiertcn export` does."""
    items = sorted(set(load_interactions(MOVIELENS)["item"].astype(str)))
    torch.manual_seed(0)
    model = HierTCN(ModelConfig(n_items=len(items), item_dim=16, channels=16, kernel_size=3,
                                levels=3, gru_hidden=8, gru_layers=2, dropout=0.0)).eval()
    save_checkpoint(where / "ckpt.pt", model, items, step=0, extra={})
    return export(where / "ckpt.pt", where / "export")



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Topics:
    clicks: str
    recommendations: str
    embeddings: str
    dlq: str

    @classmethod
    def fresh(cls, unique_name) -> "Topics":
        return cls(*(unique_name(n) for n in ("clicks", "recs", "emb", "dlq")))

    def options(self) -> list[str]:
        return ["--clicks-topic", self.clicks, "--recommendations-topic", self.recommendations,
                "--embeddings-topic", self.embeddings, "--dlq-topic", self.dlq]


class WorkerProcess:
    """`python -m stream.cli worker` as ops run it, in a subprocess."""

    def __init__(self, bootstrap, topics: Topics, app_id, export_dir, datadir, partitions=2,
                 extra=()):
        self.port = free_port()
        self.datadir = Path(datadir)
        self.log = self.datadir.with_suffix(f".{self.port}.log")
        cmd = [sys.executable, "-m", "stream.cli", "worker", "--bootstrap-servers", bootstrap,
               "--app-id", app_id, "--partitions", str(partitions), "--export-dir",
               str(export_dir), "--datadir", str(datadir), "--web-port", str(self.port),
               "--batch-within-s", "0.02", *topics.options(), *extra]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT, env={**os.environ})

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout=90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url("/ready/"), timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.tail()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url("/metrics/"), timeout=5) as r:
            return r.read().decode()

    def stop(self, sig=signal.SIGTERM, timeout=30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stacks(self, wait=3.0) -> str:
        """A live worker's thread stacks and asyncio tasks, from its log: what a stall
        is waiting on."""
        if self.proc.poll() is not None:
            return f"(worker exited {self.proc.returncode})"
        start = self.log.stat().st_size
        self.proc.send_signal(signal.SIGQUIT)  # faulthandler: threads, even if the loop hangs
        self.proc.send_signal(signal.SIGUSR1)  # mode: the event loop's tasks
        time.sleep(wait)
        with open(self.log, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
        self.log.with_suffix(".stacks.txt").write_text(text)  # whole, for the record
        # mode prints each frame's locals too: the frames alone say where it waits
        return "\n".join(line for line in text.splitlines()
                         if not re.match(r"\s{4}\w+ = ", line))[:30000]

    def tail(self, n=40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def consume(bootstrap, topic, n, timeout=60.0, group=None, settings=None, raw=False,
            strict=False) -> list:
    """Read until `n` messages arrived (or the timeout): [(key, value dict)], or
    [(key bytes, value bytes)] when `raw`. `settings`: a full client config
    (security included) instead of a plaintext bootstrap address; `strict`: a client
    error fails the test instead of being skipped."""
    c = Consumer({**(settings or {"bootstrap.servers": bootstrap}),
                  "group.id": group or f"read-{topic}-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out, deadline = [], time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or (msg.error() and not strict):
                continue
            assert not msg.error(), msg.error().str()
            if raw:
                out.append((msg.key(), msg.value()))
            else:
                out.append((msg.key().decode() if msg.key() else None, orjson.loads(msg.value())))
    finally:
        c.close()
    return out


def read_topic(bootstrap, topic, timeout=30.0) -> list[tuple[bytes, bytes | None]]:
    """Every (key, value) in the topic now, up to each partition's end; value None is a
    tombstone."""
    from confluent_kafka import TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-all-{time.time()}",
                  "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts}
        todo = {p for p, end in ends.items() if end > 0}
        c.assign([TopicPartition(topic, p, 0) for p in todo])
        out, deadline = [], time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append((msg.key(), msg.value()))
            if msg.offset() + 1 >= ends[msg.partition()]:
                todo.discard(msg.partition())
        assert not todo, f"{topic}: partitions {sorted(todo)} not read to their end"
        return out
    finally:
        c.close()
