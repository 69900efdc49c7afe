"""A scenario's world: its sizes, fresh topics on a broker, the worker processes it
started (stream/tools/harness.py) and the observers that watch them."""

from __future__ import annotations

import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from stream.tools.harness import Topics, WorkerProcess

from benchmarks.reliability.clients import Answers, Sender

PARTITIONS = 4
# The idle sweep and the TTL run on a wall-clock timer: off here, so that a faulted run
# and an uninterrupted one apply the same events and can be compared state for state
# (tests/test_stream.py covers both).
NO_SWEEP = ["--sweep-interval-s", "86400", "--state-ttl-s", "1e12"]
STALL_S = 15.0  # the workers' /health fails after this long with clicks waiting


@dataclass(frozen=True)
class Sizes:
    events: int = 100_000  # kill9 and poison (good events)
    wipe_events: int = 20_000
    malformed: int = 10_000
    kills: int = 3
    rate: float = 300.0  # events/s of the paced scenarios (broker restart, scale)
    outage_s: float = 30.0  # broker down
    phase_s: float = 20.0  # each phase of the paced scenarios
    burst_s: float = 10.0
    burst_x: float = 10.0
    churns: int = 8  # joins and leaves of a second worker (scale_churn)


SMALL = Sizes(events=2_000, wipe_events=1_500, malformed=200, kills=3, rate=100.0,
              outage_s=8.0, phase_s=5.0, burst_s=2.0, churns=3)


def log(msg: str) -> None:
    print(f"[reliability {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timeout_for(n: int) -> float:
    """How long n events may take: generous, a slow shared machine is not a lost event."""
    return 120.0 + n / 150.0


@dataclass
class Lab:
    """One scenario's world: fresh topics on a broker, the worker processes it started,
    and the observers. `broker`: the localkafka Broker the lab runs on when the scenario
    may stop and start it (it puts the restarted one back here); `figures`: where a
    scenario may draw its plot (None: no plot)."""

    bootstrap: str
    work: Path
    export_dir: Path
    name: str
    broker: object | None = None
    figures: Path | None = None
    workers: list = field(default_factory=list)
    stall_restarts: int = 0
    health_asked: float = 0.0

    def __post_init__(self):
        from stream.admin import DLQ_TOPIC_CONFIG, create_topics
        self.work.mkdir(parents=True, exist_ok=True)
        token = f"{self.name}-{time.time_ns() % 10**9}"
        self.topics = Topics(*(f"rel-{token}-{n}" for n in ("clicks", "recs", "emb", "dlq")))
        self.app_id = f"rel-{token}-app"
        create_topics(self.bootstrap, {t: PARTITIONS for t in vars(self.topics).values()
                                       if t != self.topics.dlq})
        create_topics(self.bootstrap, {self.topics.dlq: PARTITIONS}, config=DLQ_TOPIC_CONFIG)
        self.answers = Answers(self.bootstrap, self.topics.recommendations, PARTITIONS)
        self.answers.start()
        self.rss = Rss(self.workers)
        self.rss.start()

    def worker(self, datadir: str = "w1", app_id: str | None = None,
               topics: Topics | None = None, wait: bool = True) -> WorkerProcess:
        w = WorkerProcess(self.bootstrap, topics or self.topics, app_id or self.app_id,
                          self.export_dir, self.work / datadir, PARTITIONS,
                          [*NO_SWEEP, "--stall-s", str(STALL_S)])
        self.workers.append(w)
        if wait:
            w.wait_ready(120)
        return w

    def heal(self, w: WorkerProcess) -> WorkerProcess:
        """What the liveness probe does on Kubernetes: a worker whose /health says it
        stalled is stopped and started again on its store. Asks at most every 2 s."""
        if time.monotonic() - self.health_asked < 2.0:
            return w
        self.health_asked = time.monotonic()
        try:
            with urllib.request.urlopen(w.url("/health/"), timeout=3):
                return w
        except urllib.error.HTTPError as e:
            if e.code != 503:
                return w
            log(f"  worker {w.port} stalled: {e.read().decode()}; restarting it\n"
                f"{w.stacks()[:6000]}")
        except OSError:
            return w
        self.stall_restarts += 1
        w.stop()
        return self.worker(w.datadir.name, wait=False)

    def send(self, events: list[dict], rate=None) -> Sender:
        sender = Sender(self.bootstrap, self.topics.clicks, events, rate)
        sender.start()
        return sender

    def wait_answered(self, events: list[dict], timeout: float, alive=(),
                      quiet: bool = False) -> bool:
        """Until every click has a recommendation (True) or the timeout (False).
        Raises if a worker that must stay up exits; `quiet`: a timeout is expected."""
        want = {e["event_id"] for e in events if e["event_id"]}
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if want <= self.answers.answered():
                return True
            for w in alive:
                if w.proc.poll() is not None:
                    raise RuntimeError(f"worker exited {w.proc.returncode}:\n{w.tail()}")
            time.sleep(0.2)
        if not quiet:
            missing = len(want - self.answers.answered())
            log(f"  {missing} clicks still unanswered after {timeout:.0f}s")
            for w in alive:  # what a stalled worker waits on, for the record
                log(f"  worker {w.port} log:\n{w.tail(40)}\nstacks:\n{w.stacks()}")
        return False

    def close(self) -> None:
        for w in self.workers:
            w.stop(signal.SIGKILL, timeout=5)
        self.answers.close()
        self.rss.close()


@dataclass(frozen=True)
class Scenario:
    """One fault scenario: `run(lab, sizes)` breaks something and returns its figures
    (audit.outcome's, plus its own). `own_broker`: it stops and starts the broker, so
    it gets one of its own (lab.broker), never a shared or external one."""

    name: str
    run: Callable[[Lab, Sizes], dict]
    own_broker: bool = False


# ---------------------------------------------------------------- worker figures


def counter(w: WorkerProcess, name: str) -> float:
    """A live worker's metric summed over its labels; 0 if it does not answer."""
    try:
        return w.counters().get(name, 0.0)
    except OSError:
        return 0.0


CONSUMER_COUNTERS = {"held_back": "hiertcn_clicks_held_back_total",
                     "offset_gaps": "hiertcn_offset_gaps_total"}


def consumer_counters(w: WorkerProcess, into: Counter) -> Counter:
    """Add a live worker's rebalance counters (stream/worker/faust_fixes.py) to `into`:
    clicks held back from an out-of-order delivery, and offset gaps the consumer saw."""
    for key, name in CONSUMER_COUNTERS.items():
        into[key] += int(counter(w, name))
    return into


def error_lines(log_text: str) -> int:
    """Crash and traceback lines in a worker's log."""
    return len(re.findall(r"crashed|Traceback", log_text))


class Rss(threading.Thread):
    """Samples the resident memory of the live workers: peak (VmHWM) and a series."""

    def __init__(self, workers: list):
        super().__init__(daemon=True)
        self.workers = workers
        self.peak_kb: dict[int, int] = {}
        self.series: list[tuple[float, float]] = []  # (monotonic, total VmRSS MB)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.25):
            total = 0
            for w in list(self.workers):
                status = _proc_status(w.proc.pid)
                if status:
                    self.peak_kb[w.proc.pid] = max(self.peak_kb.get(w.proc.pid, 0),
                                                   status.get("VmHWM", 0))
                    total += status.get("VmRSS", 0)
            self.series.append((time.monotonic(), total / 1024))

    def peak_mb(self) -> float:
        return round(max(self.peak_kb.values(), default=0) / 1024, 1)

    def close(self) -> None:
        self.stopping.set()
        self.join(5)


def _proc_status(pid: int) -> dict:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(Vm\w+):\s+(\d+) kB", text, re.M)}
