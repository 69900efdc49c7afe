"""The world of one benchmark run: the broker, fresh topic names, the model export, the
clicks, one producer, and every process started (stream/tools/harness.py), so that each
phase can retire its processes while the next one starts and the end stops them all."""

from __future__ import annotations

import sys
from pathlib import Path

from stream.tools.harness import REPO, Process, Topics, WorkerProcess

from benchmarks.streambench.common import LATENCY_LINGER_MS, OUTPUT_TOPIC_CONFIG, PARTITIONS
from benchmarks.streambench.load import make_producer

PASSTHROUGH_APP = REPO / "benchmarks" / "streambench" / "passthrough_app.py"


class Bench:
    def __init__(self, args, work: Path, broker, export_dir: Path, events: list):
        self.args, self.work, self.broker, self.export_dir = args, work, broker, export_dir
        self.bootstrap = broker.bootstrap
        self.events = events  # [(key bytes, value bytes, event_id)]
        self.procs: list[Process] = []
        self.retiring: list[Process] = []
        self.serial = 0
        self.producer = make_producer(self.bootstrap, LATENCY_LINGER_MS)

    def name(self, what: str) -> str:
        self.serial += 1
        return f"bench-{self.serial}-{what}"

    def topics(self, names: list[str], output: bool = False) -> None:
        """Fresh topics; `output`: stamped by the broker (LogAppendTime), so an output's
        timestamp is when it reached Kafka, whatever its producer set."""
        from stream.admin import create_topics
        create_topics(self.bootstrap, {n: PARTITIONS for n in names},
                      OUTPUT_TOPIC_CONFIG if output else None)

    def passthrough_app(self, app_id: str, clicks: str, out: str | None, batch: int,
                        env: dict | None = None) -> Process:
        """The Faust baseline (passthrough_app.py) as a worker process; `out` None and
        env PT_SEND=0: the consume-only agent."""
        proc = Process([sys.executable, str(PASSTHROUGH_APP), "worker", "-l", "warn"],
                       self.work / f"{app_id}.log",
                       env={"PT_BOOTSTRAP": self.bootstrap, "PT_APP_ID": app_id,
                            "PT_IN": clicks, "PT_OUT": out or "", "PT_PARTITIONS": str(PARTITIONS),
                            "PT_BATCH": str(batch), "PT_DATADIR": str(self.work / app_id),
                            **(env or {})})
        self.procs.append(proc)
        return proc

    def worker(self, app_id: str, i: int, clicks: str, recs: str, emb: str, dlq: str,
               threads: int | None = None) -> WorkerProcess:
        """The real worker as shipped (its own micro-batch settings); `threads`: torch's
        and faiss' thread pools (OMP_NUM_THREADS), default theirs."""
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} \
            if threads else None
        proc = WorkerProcess(self.bootstrap, Topics(clicks, recs, emb, dlq), app_id,
                             self.export_dir, self.work / f"{app_id}-data-{i}", PARTITIONS,
                             ["--loglevel", "info"], env=env,
                             log=self.work / f"{app_id}-{i}.log", batch_within_s=None)
        self.procs.append(proc)
        return proc

    def retire(self, procs: list[Process]) -> None:
        """Stop processes without waiting: they shut down while the next ones start."""
        for p in procs:
            p.terminate()
        self.retiring += procs

    def reap_retired(self) -> None:
        for p in self.retiring:
            p.stop(timeout=15)
        self.retiring = []

    def stop_all(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.stop(timeout=10)
            except Exception:
                pass
