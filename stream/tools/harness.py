"""The harness around worker processes, shared by tests, benchmarks and the demo: a
random-weight model export (plumbing, not accuracy), `python -m stream.cli worker` (or
any Faust app) in a subprocess with its log in a file, a free port, fresh topic names,
and consumers that read outputs and changelogs back.

Importing it is cheap (no torch): the local broker takes `free_port` from here."""

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
from typing import Callable

import orjson
from confluent_kafka import Consumer, TopicPartition

from stream.errors import StreamError

REPO = Path(__file__).resolve().parents[2]
MOVIELENS = REPO / "data" / "movielens.csv.gz"


class WorkerFailed(StreamError, AssertionError):
    """A harnessed process exited, or was not ready in time; the message ends with its
    log's tail. An AssertionError too, so a test fails on it rather than errors."""


# ---------------------------------------------------------------- model exports


def export_random_model(where: Path, items: list[str], config=None) -> Path:
    """A HierTCN with random weights (seed 0) over `items`, exported exactly as
    `hiertcn export` does; `config`: a ModelConfig (default: the full-size one)."""
    import torch

    from hiertcn.checkpoint import export, save_checkpoint
    from hiertcn.model import HierTCN, ModelConfig

    torch.manual_seed(0)
    model = HierTCN(config or ModelConfig(n_items=len(items))).eval()
    save_checkpoint(where / "ckpt.pt", model, items, step=0, extra={})
    return export(where / "ckpt.pt", where / "export")


def make_export(where: Path) -> Path:
    """A small HierTCN (random weights: tests and fault scenarios check plumbing, not
    accuracy) over every MovieLens item."""
    from hiertcn.data.loaders import load_interactions
    from hiertcn.model import ModelConfig

    items = sorted(set(load_interactions(MOVIELENS)["item"].astype(str)))
    return export_random_model(where, items, ModelConfig(
        n_items=len(items), item_dim=16, channels=16, kernel_size=3, levels=3, gru_hidden=8,
        gru_layers=2, dropout=0.0))


# ---------------------------------------------------------------- processes


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


class Process:
    """A Python process (a worker, or any Faust app) started from the repository root,
    stdout and stderr in `log` (`append`: after what an earlier run left there), `env`
    on top of this process's environment; `port`: its web server, if it has one."""

    def __init__(self, cmd: list[str], log: Path, env: dict | None = None,
                 port: int | None = None, host: str = "127.0.0.1", append: bool = False):
        self.log, self.port, self.host = Path(log), port, host
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab" if append else "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         env={**os.environ, **(env or {})})

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str = "ready") -> None:
        """Poll `ready` until it says True; WorkerFailed if the process exits first or
        `timeout` (s) passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WorkerFailed(f"{self.log.name}: exited {self.proc.returncode}:\n"
                                   + self.tail())
            if ready():
                return
            time.sleep(0.3)
        raise WorkerFailed(f"{self.log.name}: not {what} after {timeout:g}s:\n{self.tail()}")

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until its /ready/ answers 200 (partitions assigned, tables recovered)."""
        self.wait_until(self._answers_ready, timeout)

    def _answers_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url("/ready/"), timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        """Its /metrics/ page (Prometheus text); OSError if it does not answer."""
        with urllib.request.urlopen(self.url("/metrics/"), timeout=5) as r:
            return r.read().decode()

    def counters(self) -> dict[str, float]:
        """The hiertcn_* samples of /metrics/, summed over their labels (histograms:
        _sum and _count, not the buckets); OSError if it does not answer."""
        out: dict[str, float] = {}
        for line in self.metrics().splitlines():
            m = re.match(r"^(hiertcn_[a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
            if m and not m.group(1).endswith("_bucket"):
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
        return out

    def terminate(self) -> None:
        """SIGTERM without waiting: it shuts down while the caller gets on."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `sig`, wait `timeout` s, then SIGKILL; the exit code (-9: killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stacks(self, wait: float = 3.0) -> str:
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

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"


class WorkerProcess(Process):
    """`python -m stream.cli worker` as ops run it, in a subprocess.

    `topics`, `app_id`, `partitions`: None leaves the option to the worker's own
    config (environment, then default). `extra`: more worker options; `env`: more
    environment (e.g. OMP_NUM_THREADS); `log`: default `<datadir>.<port>.log`;
    `port`: default a free one; `batch_within_s`: the micro-batch wait, short by
    default so tests answer fast, None for the worker's own default."""

    def __init__(self, bootstrap: str, topics: Topics | None, app_id: str | None,
                 export_dir, datadir, partitions: int | None = 2, extra=(), *,
                 env: dict | None = None, log: Path | None = None, port: int | None = None,
                 host: str = "127.0.0.1", batch_within_s: float | None = 0.02):
        self.datadir = Path(datadir)
        port = port or free_port()
        cmd = [sys.executable, "-m", "stream.cli", "worker", "--bootstrap-servers", bootstrap,
               "--export-dir", str(export_dir), "--datadir", str(datadir),
               "--web-port", str(port)]
        if app_id is not None:
            cmd += ["--app-id", app_id]
        if partitions is not None:
            cmd += ["--partitions", str(partitions)]
        if batch_within_s is not None:
            cmd += ["--batch-within-s", str(batch_within_s)]
        cmd += [*(topics.options() if topics else ()), *extra]
        super().__init__(cmd, log or self.datadir.with_suffix(f".{port}.log"), env, port, host)


def consume(bootstrap, topic, n, timeout=60.0, group=None, settings=None, raw=False,
            strict=False, done=None) -> list:
    """Read until `n` messages arrived (or the timeout): [(key, value dict)], or
    [(key bytes, value bytes)] when `raw`. `settings`: a full client config
    (security included) instead of a plaintext bootstrap address; `strict`: a client
    error fails the test instead of being skipped; `done`: read until done(messages) is
    true instead of counting (outputs are at-least-once: a redelivered click is answered
    again, so a count can be reached before every click was answered)."""
    c = Consumer({**(settings or {"bootstrap.servers": bootstrap}),
                  "group.id": group or f"read-{topic}-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out, deadline = [], time.monotonic() + timeout
    try:
        finished = done or (lambda got: len(got) >= n)
        while not finished(out) and time.monotonic() < deadline:
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


def until_answered(event_ids):
    """A `done` for `consume`: true once a message names every one of `event_ids`
    (messages looked at once each, as they arrive)."""
    missing, seen = set(event_ids), [0]

    def done(out) -> bool:
        for _, value in out[seen[0]:]:
            missing.discard(value["event_id"])
        seen[0] = len(out)
        return not missing
    return done


def read_topic(bootstrap, topic, timeout=30.0) -> list[tuple[bytes, bytes | None]]:
    """Every (key, value) in the topic now, up to each partition's end; value None is a
    tombstone."""
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
