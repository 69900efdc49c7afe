"""Streaming benchmark: raw Kafka consume, a Faust pass-through, the full worker.

    python benchmarks/stream_bench.py                 # ~5-7 min, writes the results
    python benchmarks/stream_bench.py --quick         # ~2-3 min smoke run, same keys
    python benchmarks/stream_bench.py --events 20000 --latency-s 20

Everything runs in one go on this machine, against a real local Apache Kafka
(stream.tools.localkafka) started in a temp dir and stopped at the end, so the figures are
comparable with each other; absolute numbers depend on what else the machine runs,
which is why the result also carries them as ratios to the baselines measured here.

1. hot path, no Kafka (first, before the broker takes CPU): the cost per event of
   `stream.worker.recommend.process_batch` (state load, StreamModel step, faiss top-20 over
   the whole MovieLens catalogue) for 200 users whose session already has 1, 10 or 50
   events; the naive alternative (re-encoding the whole session, HierTCN.encode) as
   a contrast; and a cProfile of 200-event batches -> results/stream_profile.txt;
2. N MovieLens clicks pre-loaded into a 4-partition topic (stream.tools.replay);
3. raw confluent-kafka consume of those N messages;
4. the pass-through Faust app (benchmarks/passthrough_app.py, a worker subprocess):
   first to N-th output message, by the outputs' Kafka timestamps;
5. the real worker (`python -m stream.cli worker`, real RocksDB tables, the full-size
   HierTCN): first to N-th recommendation; then a fresh worker fed at 50% of that rate
   for --latency-s seconds: latency = the recommendation's Kafka timestamp minus its
   click's produce timestamp (matched by event_id), p50/p99. The same with 2 workers
   in one consumer group (started on an empty topic, both ready and the group stable
   before the N events are produced, so no rebalance falls inside the measurement).

The model is the full-size HierTCN (default ModelConfig) over the MovieLens training
catalogue with random weights: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

DATA = REPO / "data" / "movielens.csv.gz"
RESULTS = REPO / "benchmarks" / "results"
PARTITIONS = 4
BATCH = 200  # the worker's default micro-batch (StreamConfig.batch_size)
SESSION_LENS = (1, 10, 50)
# The latency producer: the project's producer settings (stream.tools.replay), but sending
# at once: with linger 20 ms the producer's own batching would sit inside the latency.
LATENCY_LINGER_MS = 1


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Deadline(Exception):
    pass


# ---------------------------------------------------------------- model export


def build_export(where: Path) -> Path:
    """The full-size HierTCN (default ModelConfig) over the MovieLens training
    catalogue, random weights, exported exactly as `hiertcn export` does."""
    from hiertcn.checkpoint import export, save_checkpoint
    from hiertcn.data.cache import load_splits
    from hiertcn.model import HierTCN, ModelConfig

    items = [str(i) for i in load_splits(DATA)["train"].item_ids]
    torch.manual_seed(0)
    model = HierTCN(ModelConfig(n_items=len(items))).eval()
    save_checkpoint(where / "ckpt.pt", model, items, step=0, extra={})
    return export(where / "ckpt.pt", where / "export")


# ---------------------------------------------------------------- hot path (no Kafka)


def set_threads(n: int) -> None:
    import faiss
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


def hot_path(export_dir: Path, reps: int, stream_batches: int, messages: list) -> dict:
    """Per-event cost of process_batch: synthetic batches of 200 distinct users at
    session lengths 1/10/50, and the real MovieLens stream cut into 200-event batches
    (what the worker gets from the pre-loaded topic); plus cProfiles of both."""
    from hiertcn.inference import StreamModel
    from hiertcn.model import Batch
    from stream.worker.recommend import Incoming, Policy, UserState, process_batch, _rounds
    from stream.records import decode_click, encode_embedding, encode_recommendation

    model = StreamModel.load(export_dir)
    policy = Policy()
    rng = np.random.default_rng(0)
    n_items = len(model.item_ids)
    offset = [0]
    default_threads = torch.get_num_threads()

    def events_for(users, last_items, ts):
        out, items = [], []
        for u, last in zip(users, last_items):
            item = int(rng.integers(n_items))
            while item == last:  # a repeat would not be fed (training drops them)
                item = int(rng.integers(n_items))
            offset[0] += 1
            out.append(Incoming(u, model.item_ids[item], ts, "click", f"{u}:{offset[0]}",
                                0, offset[0], received=time.time()))
            items.append(item)
        return out, items

    def table(rows):
        """The agent's `load`: a UserState rebuilt from its three table rows."""
        return lambda u: UserState.from_rows(*rows[u]) if u in rows else None

    def write(rows, result):
        for u, st in result.states.items():
            rows[u] = (st.gru, st.window, st.meta_bytes())

    def prepare(length: int):
        """B users whose current session holds `length` events, as table rows."""
        users = [f"u{length}-{i}" for i in range(BATCH)]
        rows: dict[str, tuple] = {}
        last, ts = [-1] * BATCH, 1.0e9
        set_threads(1)  # not timed: the quick way
        for _ in range(length):
            events, last = events_for(users, last, ts)
            write(rows, process_batch(model, events, table(rows), policy))
            ts += 60.0
        assert all(UserState.from_rows(*rows[u]).length == length for u in users)
        return users, rows, last, ts

    prepared = {length: prepare(length) for length in SESSION_LENS}

    def synthetic(length, threads=None):
        users, rows, last, ts = prepared[length]
        events = events_for(users, last, ts)[0]  # rows are not written back: length stays
        def run():
            set_threads(threads or default_threads)
            process_batch(model, events, table(rows), policy)
        return run

    def naive(length):
        items = torch.from_numpy(rng.integers(n_items, size=(BATCH, 1, length + 1)))
        batch = Batch(items=items, reset=torch.ones(BATCH, 1, dtype=torch.bool),
                      valid=torch.ones(BATCH, 1, dtype=torch.bool))
        h = model.model.zero_state(BATCH)
        def run():
            set_threads(1)  # compared with the incremental step on one thread
            with torch.no_grad():
                model.model.encode(batch, h)
        return run

    # Timed round-robin over every variant, so a neighbour's load on this shared
    # machine falls on all of them alike; the first round is a warm-up.
    makers = {**{str(n): (lambda n=n: synthetic(n)) for n in SESSION_LENS},
              **{f"{n}_one_thread": (lambda n=n: synthetic(n, 1)) for n in SESSION_LENS},
              **{f"naive_{n}": (lambda n=n: naive(n)) for n in SESSION_LENS}}
    times: dict[str, list[float]] = {name: [] for name in makers}
    for rep in range(reps + 1):
        for name, make in makers.items():
            if name.startswith("naive") and rep > max(3, reps // 3):
                continue  # the contrast needs fewer repeats
            run = make()
            t0 = time.perf_counter()
            run()
            if rep:
                times[name].append(time.perf_counter() - t0)
    set_threads(default_threads)
    ms = {name: round(statistics.median(t) / BATCH * 1000, 4) for name, t in times.items()}
    ms_min = {name: round(min(t) / BATCH * 1000, 4) for name, t in times.items()}
    per_event = {str(n): ms[str(n)] for n in SESSION_LENS}
    one_thread = {str(n): ms[f"{n}_one_thread"] for n in SESSION_LENS}
    naive_ms = {str(n): ms[f"naive_{n}"] for n in SESSION_LENS}
    log(f"hot path ms/event by session length (median of {reps} batches of {BATCH}): "
        f"{per_event}; on one thread: {one_thread}; naive re-encode (one thread): "
        f"{naive_ms}")

    # The real input: the MovieLens stream in event-time order, 200 events a batch,
    # state carried from batch to batch as the worker does; default threads and one
    # thread interleaved batch by batch, each with its own tables.
    decoded = [decode_click(k, v) for k, v, _ in messages[:stream_batches * BATCH]]
    stream = [Incoming(c.user_id, c.item_id, c.ts, c.event, c.event_id, 0, i)
              for i, c in enumerate(decoded)]
    batches = [stream[i:i + BATCH] for i in range(0, len(stream), BATCH)]
    rows_by = {"default": {}, "one_thread": {}}
    st_times: dict[str, list[float]] = {"default": [], "one_thread": []}
    for events in batches:
        for variant, threads in (("default", default_threads), ("one_thread", 1)):
            rows = rows_by[variant]
            set_threads(threads)
            t0 = time.perf_counter()
            result = process_batch(model, events, table(rows), policy)
            st_times[variant].append(time.perf_counter() - t0)
            write(rows, result)
    set_threads(default_threads)
    rounds = [len(_rounds(b)) for b in batches]
    users_per_batch = [len({e.user_id for e in b}) for b in batches]
    movielens = {
        "batches": len(batches),
        "ms_per_event": round(sum(st_times["default"]) / len(stream) * 1000, 4),
        "ms_per_event_one_thread": round(sum(st_times["one_thread"]) / len(stream) * 1000, 4),
        "mean_users_per_batch": round(float(np.mean(users_per_batch)), 1),
        "mean_rounds_per_batch": round(float(np.mean(rounds)), 1),
        "note": "process_batch makes one model call per round (a user's r-th event of "
                "the batch is in round r): MovieLens users rate in bursts, so a 200-event "
                "batch holds few users and needs ~one model call per few events"}
    log(f"MovieLens stream batches: {movielens['ms_per_event']} ms/event "
        f"({movielens['ms_per_event_one_thread']} on one thread), "
        f"{movielens['mean_users_per_batch']} users and {movielens['mean_rounds_per_batch']} "
        "model rounds per 200-event batch")

    # what else the agent does per event, around process_batch (synthetic, length 10)
    users, rows, last, ts = prepared[10]
    events = events_for(users, last, ts)[0]
    from stream.records import encode_click
    raw = [(e.user_id.encode(), encode_click(e.user_id, e.item_id, e.ts, "click", e.event_id))
           for e in events]
    cost = {}
    t0 = time.perf_counter()
    for _ in range(reps):
        for key, value in raw:
            decode_click(key, value)
    cost["decode_click"] = (time.perf_counter() - t0) / reps / BATCH * 1000
    t0 = time.perf_counter()
    for _ in range(reps):
        for u in users:
            UserState.from_rows(*rows[u])
    cost["state_from_rows"] = (time.perf_counter() - t0) / reps / BATCH * 1000
    result = process_batch(model, events, table(rows), policy)
    t0 = time.perf_counter()
    for _ in range(reps):
        for st in result.states.values():
            st.meta_bytes()
        for o in result.outputs:
            encode_embedding(o.user_id, o.ts, result.embeddings[o.embedding_row], o.model,
                             o.event_id)
            encode_recommendation(o.user_id, o.event_id, o.ts, o.session, o.items, o.model, 1.0)
    cost["encode_outputs_and_meta"] = (time.perf_counter() - t0) / reps / BATCH * 1000
    cost = {k: round(v, 4) for k, v in cost.items()}

    # cProfiles: the MovieLens batches (what limits the worker), then synthetic ones
    sections, tops = [], {}
    n_prof = min(len(batches), 3)
    rows = {}
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    for events in batches[:n_prof]:
        prof.enable()
        result = process_batch(model, events, table(rows), policy)
        prof.disable()
        write(rows, result)
    wall = time.perf_counter() - t0
    text, tops["movielens"] = profile_report(
        prof, n_prof, wall, f"the MovieLens stream in event-time order, {n_prof} batches of "
        f"{BATCH} events ({movielens['mean_users_per_batch']} users, "
        f"{movielens['mean_rounds_per_batch']} model rounds per batch on average)")
    sections.append(text)
    users, rows, last, ts = prepared[10]
    synth = [events_for(users, last, ts)[0] for _ in range(5)]
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for events in synth:
        process_batch(model, events, table(rows), policy)
    prof.disable()
    wall = time.perf_counter() - t0
    text, tops["synthetic"] = profile_report(
        prof, len(synth), wall, f"synthetic batches of {BATCH} distinct users at session "
        "length 10 (one model round per batch)")
    sections.append(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stream_profile.txt").write_text(
        "cProfile of stream.worker.recommend.process_batch (state load from table rows, "
        "StreamModel step, faiss top-20 over the MovieLens catalogue), full-size HierTCN, "
        f"torch threads {default_threads}.\n\n" + "\n\n".join(sections))
    return {"per_event_ms_by_session_len": per_event,
            "per_event_ms_by_session_len_min": {str(n): ms_min[str(n)] for n in SESSION_LENS},
            "per_event_ms_by_session_len_one_thread": one_thread,
            "naive_encode_ms_by_session_len": naive_ms,
            "movielens_stream_batches": movielens,
            "agent_cost_ms_per_event": cost,
            "profile_top": tops, "torch_threads": default_threads}


def profile_report(prof: cProfile.Profile, n_batches: int, wall: float,
                   what: str) -> tuple[str, list]:
    out = io.StringIO()
    out.write(f"######## {what}\nwall time under the profiler: {wall:.3f} s "
              f"({wall / n_batches * 1000:.2f} ms/batch, "
              f"{wall / n_batches / BATCH * 1000:.3f} ms/event)\n\n"
              "== top 15 by cumulative time ==\n")
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(15)
    out.write("== top 15 by own (total) time ==\n")
    stats.sort_stats("tottime").print_stats(15)
    # the summary: the 8 biggest functions by cumulative time below process_batch
    raw = stats.stats  # (file, line, func) -> (cc, nc, tt, ct, callers)
    total = max(ct for (_, _, _, ct, _) in raw.values())
    rows = sorted(((ct, tt, nc, func, Path(file).name, line)
                   for (file, line, func), (_, nc, tt, ct, _) in raw.items()), reverse=True)
    top = [f"{func} ({file}:{line}): {ct / n_batches * 1000:.2f} ms/batch cumulative "
           f"({ct / total:.0%}), own {tt / n_batches * 1000:.2f} ms, "
           f"{nc / n_batches:.0f} calls/batch"
           for ct, tt, nc, func, file, line in rows[:9] if func != "<module>"]
    # shares of process_batch's time of the pieces the notes talk about
    pieces = {"torch.einsum (CausalConv1d.step)": lambda f, fn: fn == "<built-in method torch.einsum>",
              "torch linear (nn.Linear)": lambda f, fn: fn == "<built-in method torch._C._nn.linear>",
              "torch.cat": lambda f, fn: fn == "<built-in method torch.cat>",
              "faiss search (StreamModel.top_k)": lambda f, fn: fn == "top_k",
              "StreamModel.unpack": lambda f, fn: fn == "unpack" and f.endswith("inference.py"),
              "StreamModel.pack": lambda f, fn: fn == "pack" and f.endswith("inference.py"),
              "UserState.from_rows": lambda f, fn: fn == "from_rows"}
    shares = {label: round(sum(ct for (f, _, fn), (_, _, _, ct, _) in raw.items()
                               if match(f, fn)) / total, 3)
              for label, match in pieces.items()}
    return out.getvalue(), {"top": top, "share_of_process_batch": shares}


# ---------------------------------------------------------------- kafka helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A worker subprocess (the real one or the pass-through), logging to a file."""

    def __init__(self, cmd: list[str], log_path: Path, env: dict | None = None,
                 port: int | None = None):
        self.port, self.log_path = port, log_path
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=open(log_path, "wb"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})})

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url("/ready/"), timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"worker not ready after {timeout:g}s:\n{self.tail()}")

    def metrics(self) -> dict:
        """The worker's Prometheus counters we use, summed over labels."""
        with urllib.request.urlopen(self.url("/metrics/"), timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            m = re.match(r"^(hiertcn_[a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
            if m and not m.group(1).endswith("_bucket"):
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
        return out

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def reap(self, timeout: float = 15.0) -> None:
        self.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


class Reader(threading.Thread):
    """Reads an output topic from the beginning in a background thread; keeps each
    message's Kafka timestamp (ms), arrival time and, if asked, its event_id."""

    def __init__(self, bootstrap: str, topic: str, expected: int, decode: bool = False,
                 timeout: float = 120.0, window_s: float | None = None):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer
        self.consumer = Consumer({"bootstrap.servers": bootstrap,
                                  "group.id": f"bench-read-{topic}-{time.time_ns()}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                  "fetch.wait.max.ms": 10})
        self.consumer.subscribe([topic])
        self.expected, self.decode, self.timeout = expected, decode, timeout
        self.window_s = window_s  # stop this long after the first message, if given
        self.kafka_ts: list[int] = []
        self.arrived: list[float] = []
        self.event_ids: list[str | None] = []
        self.stop_flag = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        import orjson
        deadline = time.monotonic() + self.timeout
        try:
            while (len(self.kafka_ts) < self.expected and not self.stop_flag.is_set()
                   and time.monotonic() < deadline):
                msgs = self.consumer.consume(1000, 0.1)
                now = time.time()
                if self.window_s and self.arrived and now - self.arrived[0] > self.window_s:
                    break
                for msg in msgs:
                    if msg.error():
                        continue
                    self.kafka_ts.append(msg.timestamp()[1])
                    self.arrived.append(now)
                    if self.decode:
                        self.event_ids.append(orjson.loads(msg.value()).get("event_id"))
        finally:
            self.consumer.close()
            self.done.set()

    def wait(self, timeout: float, procs: list | None = None) -> int:
        """Until every expected message came, the window closed or the timeout; raises
        if one of `procs` (the processes producing them) exits meanwhile."""
        deadline = time.monotonic() + timeout
        while not self.done.wait(0.2) and time.monotonic() < deadline:
            for p in procs or ():
                if p.proc.poll() is not None:
                    self.stop_flag.set()
                    raise RuntimeError(f"{p.log_path.name} exited {p.proc.returncode}:\n"
                                       + p.tail())
        return len(self.kafka_ts)

    def count_of(self, prefix: str) -> int:
        return sum(1 for e in list(self.event_ids) if e and e.startswith(prefix))


MIN_OUTPUTS = 50  # fewer in a max-rate window: the run is broken, not slow


def rate_first_to_last(kafka_ts: list[int], n: int) -> dict:
    """Events/s between the first and the n-th (or last read) output, by their Kafka
    timestamps (set by the producing worker, so the reader's own speed is no factor)."""
    ts = sorted(kafka_ts)[:n]
    span = (ts[-1] - ts[0]) / 1000.0
    return {"events_per_s": round((len(ts) - 1) / span, 1) if span > 0 else None,
            "seconds": round(span, 3), "outputs": len(ts)}


def make_producer(bootstrap: str, linger_ms: float):
    from confluent_kafka import Producer
    from stream.tools.replay import PRODUCER_SETTINGS
    return Producer({"bootstrap.servers": bootstrap, **PRODUCER_SETTINGS,
                     "linger.ms": linger_ms, "message.timeout.ms": 30000})


def produce(producer, topic: str, key: bytes, value: bytes, timestamp_ms: int | None = None):
    while True:
        try:
            if timestamp_ms is None:
                producer.produce(topic, value, key)
            else:
                producer.produce(topic, value, key, timestamp=timestamp_ms)
            return
        except BufferError:
            producer.poll(0.05)


def warm_producer(producer, topic: str) -> float:
    """The first idempotent producer on a fresh broker waits for its producer id:
    get that over with before anything is timed."""
    t0 = time.monotonic()
    for i in range(10):
        produce(producer, topic, b"warm", b"{}")
    if producer.flush(60):
        raise RuntimeError("warm-up messages not delivered")
    return time.monotonic() - t0


def wait_group_stable(bootstrap: str, group: str, members: int, timeout: float = 60.0) -> None:
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            desc = admin.describe_consumer_groups([group], request_timeout=5)[group].result(10)
            if desc.state == ConsumerGroupState.STABLE and len(desc.members) == members:
                return
        except Exception:  # the group may not exist yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"consumer group {group} not stable with {members} members "
                       f"after {timeout:g}s")


# ---------------------------------------------------------------- the phases


class Bench:
    def __init__(self, args, work: Path, broker, export_dir: Path, events: list):
        self.args, self.work, self.broker, self.export_dir = args, work, broker, export_dir
        self.bootstrap = broker.bootstrap
        self.events = events  # [(key bytes, value bytes, event_id)]
        self.procs: list[Proc] = []
        self.retiring: list[Proc] = []
        self.serial = 0
        self.producer = make_producer(self.bootstrap, LATENCY_LINGER_MS)

    def name(self, what: str) -> str:
        self.serial += 1
        return f"bench-{self.serial}-{what}"

    def topics(self, names: list[str]) -> None:
        from stream.admin import create_topics
        create_topics(self.bootstrap, {n: PARTITIONS for n in names})

    def retire(self, procs: list[Proc]) -> None:
        """Stop workers without waiting: they shut down while the next ones start."""
        for p in procs:
            p.terminate()
        self.retiring += procs

    def reap_retired(self) -> None:
        for p in self.retiring:
            p.reap()
        self.retiring = []

    def stop_all(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.reap(10)
            except Exception:
                pass

    # ---- 3. raw consume

    def raw_consume(self, topic: str, n: int) -> dict:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.name("raw"),
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        got, first, t_assign = 0, None, time.perf_counter()
        deadline = time.monotonic() + 60
        try:
            while got < n and time.monotonic() < deadline:
                msgs = c.consume(1000, 0.5)
                if msgs and first is None:
                    first = time.perf_counter()
                got += sum(1 for m in msgs if not m.error())
            end = time.perf_counter()
        finally:
            c.close()
        if got < n:
            raise RuntimeError(f"raw consumer read only {got} of {n}")
        return {"events_per_s": round(n / (end - first), 1),
                "events_per_s_incl_connect": round(n / (end - t_assign), 1),
                "seconds": round(end - first, 3)}

    # ---- 4. pass-through

    def passthrough(self, topic: str, n: int) -> dict:
        out = self.name("pt-out")
        self.topics([out])
        reader = Reader(self.bootstrap, out, n, timeout=self.args.phase_timeout,
                        window_s=self.args.window_s)
        reader.start()
        app_id = self.name("pt")
        proc = Proc([sys.executable, str(REPO / "benchmarks" / "passthrough_app.py"), "worker",
                     "-l", "warn"], self.work / f"{app_id}.log",
                    env={"PT_BOOTSTRAP": self.bootstrap, "PT_APP_ID": app_id, "PT_IN": topic,
                         "PT_OUT": out, "PT_PARTITIONS": str(PARTITIONS), "PT_BATCH": str(BATCH),
                         "PT_DATADIR": str(self.work / app_id)})
        self.procs.append(proc)
        got = reader.wait(self.args.phase_timeout, [proc])
        self.retire([proc])
        if got < MIN_OUTPUTS:
            raise RuntimeError(f"pass-through produced {got} of {n}:\n{proc.tail()}")
        return rate_first_to_last(reader.kafka_ts, n)

    # ---- 5. the real worker

    def start_workers(self, count: int, clicks: str, what: str,
                      threads: int | None = None) -> tuple[list[Proc], dict]:
        app_id = self.name(what)
        recs, emb, dlq = (f"{app_id}-recs", f"{app_id}-emb", f"{app_id}-dlq")
        self.topics([recs, emb])
        procs = []
        for i in range(count):
            port = free_port()
            cmd = [sys.executable, "-m", "stream.cli", "worker", "--bootstrap-servers",
                   self.bootstrap, "--app-id", app_id, "--partitions", str(PARTITIONS),
                   "--export-dir", str(self.export_dir), "--datadir",
                   str(self.work / f"{app_id}-data-{i}"), "--web-port", str(port),
                   "--clicks-topic", clicks, "--recommendations-topic", recs,
                   "--embeddings-topic", emb, "--dlq-topic", dlq, "--loglevel", "info"]
            env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} \
                if threads else None  # torch's and faiss' thread pools
            procs.append(Proc(cmd, self.work / f"{app_id}-{i}.log", env=env, port=port))
            self.procs.append(procs[-1])
            if i + 1 < count:
                # one at a time, as tests/test_stream.py does: the first creates the
                # changelog topics; two racing on a fresh app crash with
                # PartitionsMismatch (a changelog seen with 0 partitions)
                procs[-1].wait_ready(self.args.phase_timeout)
        return procs, {"app_id": app_id, "recs": recs}

    def wait_ready(self, procs: list[Proc], app_id: str) -> None:
        for p in procs:
            p.wait_ready(self.args.phase_timeout)
        wait_group_stable(self.bootstrap, app_id, len(procs))
        time.sleep(1.0)  # table recovery after the last rebalance (empty changelogs)
        self.reap_retired()  # the previous phase's workers are gone before we time

    def worker_max_rate(self, count: int, preloaded: str | None, n: int,
                        threads: int | None = None) -> dict:
        """First to n-th recommendation: from the pre-loaded topic (1 worker), or, with
        several workers, from an empty topic filled once every worker is in the group."""
        clicks = preloaded or self.name("clicks")
        if preloaded is None:
            self.topics([clicks])
        else:
            self.reap_retired()  # it starts consuming as soon as it is assigned
        procs, names = self.start_workers(count, clicks, f"max{count}", threads)
        reader = Reader(self.bootstrap, names["recs"], n, timeout=self.args.phase_timeout,
                        window_s=self.args.window_s)
        reader.start()
        produce_s = None
        if preloaded is None:
            self.wait_ready(procs, names["app_id"])
            t0 = time.monotonic()
            for key, value, _ in self.events[:n]:
                produce(self.producer, clicks, key, value)
            self.producer.flush(60)
            produce_s = round(time.monotonic() - t0, 3)
        got = reader.wait(self.args.phase_timeout, procs)
        if got < MIN_OUTPUTS:
            raise RuntimeError(f"{count} worker(s) produced {got} of {n} recommendations:\n"
                               + procs[0].tail())
        out = rate_first_to_last(reader.kafka_ts, n)
        out["input"] = "pre-loaded topic" if preloaded else \
            f"produced after the group was stable ({produce_s}s to produce)"
        out.update(self.worker_metrics(procs, out["events_per_s"]))
        self.retire(procs)
        return out

    def worker_metrics(self, procs: list[Proc], rate: float | None) -> dict:
        """From the workers' /metrics/; `rate`: the events/s they ran at, together."""
        per = []
        for p in procs:
            try:
                per.append(p.metrics())
            except OSError:
                per.append({})
        def total(key):
            return sum(m.get(key, 0.0) for m in per)
        batches = total("hiertcn_batch_seconds_count")
        out = {"events_in_by_worker": [int(m.get("hiertcn_events_in_total", 0)) for m in per],
               "mean_batch_events": round(total("hiertcn_batch_events_sum") / batches, 1)
               if batches else None,
               "process_batch_ms_per_batch": round(total("hiertcn_batch_seconds_sum")
                                                   / batches * 1000, 2) if batches else None}
        events = total("hiertcn_events_in_total")
        if rate and events:
            # process_batch time per event over the wall time per event of one worker
            per_event = total("hiertcn_batch_seconds_sum") / events
            out["process_batch_ms_per_event"] = round(per_event * 1000, 3)
            out["process_batch_share_of_wall"] = round(per_event * rate / len(procs), 3)
        return out

    def latency(self, count: int, rate: float, seconds: float,
                threads: int | None = None) -> dict:
        clicks = self.name("clicks")
        self.topics([clicks])
        procs, names = self.start_workers(count, clicks, f"lat{count}", threads)
        m = min(len(self.events), max(1, int(rate * seconds)))
        warm = 100
        reader = Reader(self.bootstrap, names["recs"], warm + m, decode=True,
                        timeout=self.args.phase_timeout + seconds)
        reader.start()
        self.wait_ready(procs, names["app_id"])
        # pipeline warm-up: distinct users and ids, at a low rate, answered before timing
        for i, (key, value, eid) in enumerate(self.events[-warm:]):
            produce(self.producer, clicks, key, value.replace(eid.encode(), b"warm:" + eid.encode()))
            self.producer.poll(0)
            time.sleep(0.01)
        self.producer.flush(30)
        deadline = time.monotonic() + 15
        while reader.count_of("warm:") < warm and time.monotonic() < deadline:
            time.sleep(0.1)
        # the timed run: m events paced at `rate`, each stamped with its produce time
        sent_at: dict[str, int] = {}
        start = time.monotonic()
        for i, (key, value, eid) in enumerate(self.events[:m]):
            ahead = i / rate - (time.monotonic() - start)
            if ahead > 0.0005:
                time.sleep(ahead)
            ts = int(time.time() * 1000)
            produce(self.producer, clicks, key, value, ts)
            sent_at[eid] = ts
            if i % 20 == 0:
                self.producer.poll(0)
        produce_s = time.monotonic() - start
        self.producer.flush(30)
        reader.wait(self.args.drain_s, procs)
        reader.stop_flag.set()
        reader.wait(5)
        waited_until = int(time.time() * 1000)
        lat_of, read_of = {}, {}
        for kts, arrived, eid in zip(list(reader.kafka_ts), list(reader.arrived),
                                     list(reader.event_ids)):
            if eid in sent_at and eid not in lat_of:  # the first answer counts
                lat_of[eid] = kts - sent_at[eid]
                read_of[eid] = arrived * 1000 - sent_at[eid]
        # in send order; an event never answered counts with the time it has waited
        # so far, a lower bound (then the percentiles it reaches are lower bounds too)
        missing = [e for e in sent_at if e not in lat_of]
        for e in missing:
            lat_of[e] = read_of[e] = waited_until - sent_at[e]
        lat = [lat_of[e] for e in sent_at]
        read_lat = [read_of[e] for e in sent_at]
        out = {"offered_events_per_s": round(rate, 1),
               "achieved_events_per_s": round(m / produce_s, 1), "events": m,
               "answered": len(lat) - len(missing), "seconds": round(produce_s, 2),
               "unanswered_counted_as_lower_bound": len(missing),
               "warm_up_answered": reader.count_of("warm:")}
        if lat:
            q = max(1, len(lat) // 4)
            out.update({"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
                        "mean_ms": round(float(np.mean(lat)), 2), "max_ms": float(max(lat)),
                        "read_p50_ms": pct(read_lat, 50), "read_p99_ms": pct(read_lat, 99),
                        # a backlog that grows shows as a last quarter far above the first
                        "p50_ms_first_quarter": pct(lat[:q], 50),
                        "p50_ms_last_quarter": pct(lat[-q:], 50)})
        out.update(self.worker_metrics(procs, rate))
        self.retire(procs)
        return out


def pct(values, q) -> float:
    return round(float(np.percentile(values, q)), 2)


def load_messages() -> list:
    from stream.tools.replay import load_events
    from stream.records import encode_click
    events = load_events(DATA)
    cols = (events[c].tolist() for c in ("user", "item", "ts", "event", "event_id"))
    return [(user.encode(), encode_click(user, item, ts, event, eid), eid)
            for user, item, ts, event, eid in zip(*cols)]


def machine() -> dict:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(),
            "loadavg_at_start": [round(x, 2) for x in load]}


# ---------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="python benchmarks/stream_bench.py",
        description="Benchmark the streaming worker against a raw Kafka consumer and a "
                    "Faust pass-through, on a real local Kafka; writes "
                    "benchmarks/results/stream.json and stream_profile.txt.")
    ap.add_argument("--events", type=int, default=20000,
                    help="clicks pre-loaded and consumed by each max-rate run (default: %(default)s)")
    ap.add_argument("--latency-s", type=float, default=15.0,
                    help="seconds of paced input per latency run (default: %(default)s)")
    ap.add_argument("--reps", type=int, default=15,
                    help="timed 200-event batches per session length (default: %(default)s)")
    ap.add_argument("--window-s", type=float, default=15.0,
                    help="a max-rate run stops this long after its first output, or at "
                         "--events outputs (default: %(default)s)")
    ap.add_argument("--drain-s", type=float, default=10.0,
                    help="wait for answers after a latency run (default: %(default)s)")
    ap.add_argument("--no-one-thread", action="store_true",
                    help="skip the extra runs with OMP_NUM_THREADS=1 workers")
    ap.add_argument("--stream-batches", type=int, default=6,
                    help="200-event MovieLens batches timed without Kafka (default: %(default)s)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 5000 events, 8 s windows and latency runs, 5 reps, "
                         "3 stream batches")
    ap.add_argument("--phase-timeout", type=float, default=120.0,
                    help="longest wait for any one phase (default: %(default)s)")
    ap.add_argument("--max-seconds", type=int, default=470,
                    help="hard cap on the whole run; stops everything (default: %(default)s)")
    ap.add_argument("--out", default=str(RESULTS / "stream.json"), help="result file")
    args = ap.parse_args(argv)
    if args.quick:
        args.events, args.latency_s, args.reps = min(args.events, 5000), 8.0, 5
        args.stream_batches = min(args.stream_batches, 3)
        args.window_s, args.drain_s = 8.0, 5.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python benchmarks/stream_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    t_start = time.monotonic()

    def on_alarm(*_):
        raise Deadline(f"benchmark over its {args.max_seconds}s cap")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.max_seconds)

    from stream.tools import localkafka
    from stream.config import StreamConfig
    from stream.tools.replay import replay

    result: dict = {"command": command.strip(), "machine": machine(), "events": args.events}
    work = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    broker, bench = None, None
    try:
        log(f"work dir {work}; building the full-size model export")
        export_dir = build_export(work)
        meta = json.loads((export_dir / "meta.json").read_text())
        result["model"] = {"n_items": meta["n_items"], "item_dim": meta["item_dim"],
                           "receptive_field": meta["receptive_field"], "config": "ModelConfig defaults",
                           "top_k": StreamConfig().top_k}

        messages = load_messages()
        log("1. hot path without Kafka")
        hot = hot_path(export_dir, args.reps, args.stream_batches, messages)
        result.update(hot)

        log("starting the local Kafka broker")
        broker = localkafka.start(work / "kafka")
        n = min(args.events, len(messages))
        bench = Bench(args, work, broker, export_dir, messages)
        warm_s = warm_producer(bench.producer, bench.name("warm"))
        log(f"broker {broker.bootstrap}; producer id acquired in {warm_s:.1f}s")

        log(f"2. pre-loading {n} MovieLens clicks into a {PARTITIONS}-partition topic")
        pre = bench.name("clicks")
        bench.topics([pre])
        config = StreamConfig.resolve({"bootstrap_servers": broker.bootstrap,
                                       "partitions": PARTITIONS})
        t0 = time.monotonic()
        sent = replay(config, DATA, rate=0, limit=n, topic=pre)
        result["preload_events_per_s"] = round(sent / (time.monotonic() - t0), 1)

        log("3. raw confluent-kafka consume")
        raw = bench.raw_consume(pre, n)
        result["raw_consume_events_per_s"] = raw["events_per_s"]
        result["raw_consume"] = raw
        log(f"   raw consume {raw['events_per_s']:,.0f} events/s")

        log("4. Faust pass-through")
        pt = bench.passthrough(pre, n)
        result["passthrough_events_per_s"] = pt["events_per_s"]
        result["passthrough"] = pt
        log(f"   pass-through {pt['events_per_s']:,.0f} events/s")

        def run_workers(count: int, threads: int | None) -> dict:
            tag = f"x{count}" + (", OMP_NUM_THREADS=1" if threads else "")
            log(f"5. full worker {tag}: max rate")
            mx = bench.worker_max_rate(count, pre if count == 1 else None, n, threads)
            log(f"   {mx['events_per_s']:,.0f} events/s over {mx['outputs']} outputs "
                f"(process_batch {mx.get('process_batch_share_of_wall')} of the wall time)")
            log(f"   latency at 50% = {mx['events_per_s'] / 2:,.0f} events/s "
                f"for {args.latency_s:g}s")
            lat = bench.latency(count, mx["events_per_s"] / 2, args.latency_s, threads)
            log(f"   p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms "
                f"({lat['answered']}/{lat['events']} answered)")
            return {"events_per_s": mx["events_per_s"],
                    "events_per_s_per_worker": round(mx["events_per_s"] / count, 1),
                    "p50_ms": lat.get("p50_ms"), "p99_ms": lat.get("p99_ms"),
                    "max_rate_run": mx, "half_load_run": lat}

        workers = {str(c): run_workers(c, None) for c in (1, 2)}
        # Extra: the same with one torch/faiss thread per worker (the hot path's
        # fastest setting on this machine), as far as the time cap allows.
        one_thread: dict = {}
        for count, needs_s in ((1, 80), (2, 120)):
            left = args.max_seconds - (time.monotonic() - t_start)
            if args.no_one_thread or left < needs_s:
                one_thread[str(count)] = {"skipped": f"{left:.0f}s left of the cap"
                                          if not args.no_one_thread else "--no-one-thread"}
                continue
            one_thread[str(count)] = run_workers(count, 1)
        result["workers_one_thread"] = one_thread
        result["workers"] = workers
        result["full_worker_events_per_s"] = workers["1"]["events_per_s"]
        result["ratios"] = ratios(result)
        result["targets"] = targets(result)
        result["notes"] = notes(result)
    finally:
        signal.alarm(0)
        if bench is not None:
            bench.stop_all()
            bench.producer = None  # closed before the broker goes: no reconnect noise
        if broker is not None:
            broker.stop()
        result["total_seconds"] = round(time.monotonic() - t_start, 1)
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out} in {result['total_seconds']}s")
    print(json.dumps({k: result[k] for k in ("raw_consume_events_per_s",
                      "passthrough_events_per_s", "ratios", "targets")}, indent=2))
    return 0


def ratios(r: dict) -> dict:
    raw, pt = r["raw_consume_events_per_s"], r["passthrough_events_per_s"]
    w1, w2 = r["workers"]["1"]["events_per_s"], r["workers"]["2"]["events_per_s"]
    pe, pe1 = r["per_event_ms_by_session_len"], r["per_event_ms_by_session_len_one_thread"]
    naive, ml = r["naive_encode_ms_by_session_len"], r["movielens_stream_batches"]
    out = {"passthrough_vs_raw": round(pt / raw, 4),
           "full_vs_passthrough": round(w1 / pt, 4),
           "full_vs_raw": round(w1 / raw, 5),
           "two_workers_vs_one": round(w2 / w1, 3),
           "session_len_50_vs_1": round(pe["50"] / pe["1"], 3),
           "session_len_50_vs_1_one_thread": round(pe1["50"] / pe1["1"], 3),
           "naive_encode_50_vs_1": round(naive["50"] / naive["1"], 3),
           "naive_vs_incremental_at_50_one_thread": round(naive["50"] / pe1["50"], 2),
           "movielens_vs_distinct_users": round(ml["ms_per_event"] / pe["10"], 2),
           "default_threads_vs_one_thread_movielens": round(
               ml["ms_per_event"] / ml["ms_per_event_one_thread"], 2),
           "movielens_process_batch_ms_vs_worker_ms_per_event": round(
               ml["ms_per_event"] / (1000.0 / w1), 3)}
    one = r.get("workers_one_thread", {})
    if "events_per_s" in one.get("1", {}):
        out["one_thread_full_vs_passthrough"] = round(one["1"]["events_per_s"] / pt, 4)
        out["one_thread_vs_default_threads_1_worker"] = round(one["1"]["events_per_s"] / w1, 2)
    if "events_per_s" in one.get("2", {}) and "events_per_s" in one.get("1", {}):
        out["one_thread_two_workers_vs_one"] = round(
            one["2"]["events_per_s"] / one["1"]["events_per_s"], 3)
    return out


def targets(r: dict) -> dict:
    ra = r["ratios"]
    out = {"full_vs_passthrough >= 0.6": {"value": ra["full_vs_passthrough"],
                                          "met": ra["full_vs_passthrough"] >= 0.6}}
    for k in ("1", "2"):
        p99 = r["workers"][k]["p99_ms"]
        out[f"p99_ms <= 50 at half load, {k} worker(s)"] = {
            "value": p99, "met": p99 is not None and p99 <= 50}
    for k, w in r.get("workers_one_thread", {}).items():
        if "events_per_s" in w:
            out[f"one thread per worker: p99_ms <= 50 at half load, {k} worker(s)"] = {
                "value": w["p99_ms"], "met": w["p99_ms"] is not None and w["p99_ms"] <= 50}
    if "one_thread_full_vs_passthrough" in ra:
        v = ra["one_thread_full_vs_passthrough"]
        out["one thread per worker: full_vs_passthrough >= 0.6"] = {"value": v, "met": v >= 0.6}
    return out


def notes(r: dict) -> list[str]:
    w1 = r["workers"]["1"]
    mx, half = w1["max_rate_run"], w1["half_load_run"]
    pe, pe1 = r["per_event_ms_by_session_len"], r["per_event_ms_by_session_len_one_thread"]
    ml, ra = r["movielens_stream_batches"], r["ratios"]
    cost = r["agent_cost_ms_per_event"]
    shares = r["profile_top"]["movielens"]["share_of_process_batch"]
    out = [
        f"Rate: one full worker (as shipped, torch/faiss default {r['torch_threads']} "
        f"threads) spends {1000.0 / w1['events_per_s']:.2f} ms of wall time per event at "
        f"its maximum rate on the MovieLens stream: {ra['full_vs_passthrough']:.1%} of the "
        f"pass-through rate (target 60%). Its own metrics put process_batch (model + "
        f"faiss) at {mx.get('process_batch_share_of_wall')} of its wall time, "
        f"{mx.get('process_batch_ms_per_batch')} ms per micro-batch of "
        f"{mx.get('mean_batch_events')} events on average: the model step limits it.",
        f"Why, 1: process_batch makes one model call per round (round r = every user's "
        f"r-th event in the batch, to keep per-user order), and MovieLens users rate in "
        f"bursts: a 200-event batch of the real stream holds {ml['mean_users_per_batch']} "
        f"users and needs {ml['mean_rounds_per_batch']} rounds, so each step runs on ~1-3 "
        f"users and its fixed per-call cost dominates: {ml['ms_per_event']} ms/event on "
        f"those batches vs {pe['10']} ms/event for 200 distinct users in one round "
        f"(x{ra['movielens_vs_distinct_users']}).",
        f"Why, 2: torch's intra-op threads on this shared 2-core machine: the same "
        f"MovieLens batches cost {ml['ms_per_event_one_thread']} ms/event on one thread, "
        f"x{ra['default_threads_vs_one_thread_movielens']} less. The profile of those "
        f"batches (profile_top.movielens, default threads) has "
        f"{shares['torch.einsum (CausalConv1d.step)']:.0%} of process_batch in torch.einsum "
        f"of CausalConv1d.step (hiertcn/model.py: 4 calls per round, one per TCN level, on "
        f"1-3 rows each) and {shares['torch linear (nn.Linear)']:.0%} in nn.Linear calls: "
        f"milliseconds per call on a few rows, i.e. thread hand-offs, not arithmetic; "
        f"{shares['torch.cat']:.0%} in torch.cat, "
        f"{shares['faiss search (StreamModel.top_k)']:.0%} in the faiss top-k, "
        f"{shares['StreamModel.unpack'] + shares['StreamModel.pack']:.0%} in state "
        f"(un)packing.",
    ]
    one = r.get("workers_one_thread", {})
    if "events_per_s" in one.get("1", {}):
        o1 = one["1"]
        out.append(
            f"Same worker with OMP_NUM_THREADS=1 (no code change): {o1['events_per_s']} "
            f"events/s = {ra['one_thread_full_vs_passthrough']:.1%} of the pass-through "
            f"(x{ra['one_thread_vs_default_threads_1_worker']} the default), p50/p99 "
            f"{o1['p50_ms']}/{o1['p99_ms']} ms at half its load"
            + f" (process_batch {o1['half_load_run'].get('process_batch_share_of_wall')} of "
              f"its wall time there, batches of {o1['half_load_run'].get('mean_batch_events')} "
              f"events)"
            + (f"; 2 such workers: {one['2']['events_per_s']} events/s, p50/p99 "
               f"{one['2']['p50_ms']}/{one['2']['p99_ms']} ms" if "events_per_s"
               in one.get("2", {}) else "") + ".")
    out += [
        f"Incremental TCN: per-event cost at session length 1/10/50 = "
        f"{pe['1']}/{pe['10']}/{pe['50']} ms (x{ra['session_len_50_vs_1']} from 1 to 50; "
        f"one thread {pe1['1']}/{pe1['10']}/{pe1['50']}, x"
        f"{ra['session_len_50_vs_1_one_thread']}; the TCN step itself is O(levels x "
        f"kernel), the residual growth on one thread is most likely the clicked-item "
        f"exclusion, which asks faiss for k + session length and filters in Python, and "
        f"the longer meta JSON): flat. Re-encoding the whole session "
        f"per event instead (HierTCN.encode, one thread) costs "
        f"{r['naive_encode_ms_by_session_len']} ms (x{ra['naive_encode_50_vs_1']} from 1 "
        f"to 50, x{ra['naive_vs_incremental_at_50_one_thread']} the incremental step at 50).",
        f"Around process_batch the agent also decodes ({cost['decode_click']:.3f} ms/event), "
        f"rebuilds states from table rows ({cost['state_from_rows']:.3f}) and encodes the "
        f"embedding, recommendation and meta ({cost['encode_outputs_and_meta']:.3f}); the "
        f"rest of the wall time is Faust/aiokafka (consume, 3 RocksDB table writes + "
        f"changelog messages per user, 2 output messages per event).",
        f"Latency at half load (1 worker, {half['offered_events_per_s']} events/s offered): "
        f"p50 {half.get('p50_ms')} ms, p99 {half.get('p99_ms')} ms (target p99 <= 50 ms); "
        f"p50 of the first vs last quarter {half.get('p50_ms_first_quarter')} vs "
        f"{half.get('p50_ms_last_quarter')} ms. Latency = the recommendation's Kafka "
        "timestamp (set when the worker hands it to its producer) minus the click's "
        "produce timestamp, matched by event_id; an event not answered by the end counts "
        "with its wait so far (a lower bound; see unanswered_counted_as_lower_bound); "
        "read_p50/p99 are taken at the reading consumer (adds output linger, broker, "
        f"fetch). Producer linger.ms={LATENCY_LINGER_MS}.",
        "Max rates are first-to-last output over at most --events outputs or --window-s "
        "seconds, by the outputs' Kafka timestamps; 1 worker reads the pre-loaded topic, "
        "2 workers an empty topic filled once both are in the group (no rebalance inside "
        "the window). In event-time order few users are active at once, so partitions "
        "are uneven (events_in_by_worker).",
        "The machine has 2 cores shared by the broker, the worker(s), this script's "
        "producer and reader, and whatever else runs (machine.loadavg_at_start): compare "
        "the ratios, not the absolute rates. Two workers share the same 2 cores with the "
        "broker, so scaling out is bounded by CPU here, not by partitions.",
    ]
    return out


if __name__ == "__main__":
    sys.exit(main())
