"""Where the worker's time goes, from py-spy's collapsed stacks (`py-spy record --format
raw`, one line per distinct stack: `frame;frame;...;frame count`, root first, each frame
`qualified.function (file:line)`; with `--threads` the first frame names the thread:
`thread (<tid>): <name>`). The rules below match a frame's file and its function's own
name (the qualified name's last part).

Every sample is put in exactly one bucket: its frames are walked from the leaf (what was
running) towards the root, and the first frame that matches a bucket's rule decides;
asyncio's and mode's own frames (the event loop, futures, queues) are passed over on
that walk, so time in them goes to the code that called them, and only a sample with no
other matching frame counts as "asyncio loop (own)". The inclusive share of a bucket is
that of the samples with a frame of it anywhere on the stack (they add up to more than
100%).

Pure: no py-spy, no Kafka (tests/test_streambench.py)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

DECODE_FUNCS = {"decode_click", "_optional_count", "_id", "_optional_id", "_ts",
                "_iso_seconds", "_check_key", "decode_batch"}
# faust/transport/drivers/aiokafka.py holds the consumer and the producer: these are
# the producer's (class Producer, class ThreadedProducer)
FAUST_PRODUCER_FUNCS = {"send", "send_and_wait", "flush", "_ensure_producer",
                        "_new_producer", "create_threaded_producer", "_producer_type",
                        "_send", "publish_message", "send_soon", "_send_changelog",
                        "send_changelog", "_on_published", "on_published"}
IDLE, LOOP, OTHER = "asyncio/selector idle", "asyncio loop (own)", "other"


def _has(path: str, *parts: str) -> bool:
    return any(p in path for p in parts)


def _decode(f, fn):
    return (f.endswith("stream/records.py") and fn in DECODE_FUNCS) or \
        (f.endswith("stream/worker/agents.py") and fn == "decode_batch")


def _producer(f, fn):
    return _has(f, "/aiokafka/producer/", "faust/transport/producer.py", "faust/topics.py") \
        or (f.endswith("faust/transport/drivers/aiokafka.py") and fn in FAUST_PRODUCER_FUNCS) \
        or (_has(f, "/faust/tables/") and "changelog" in fn)


def _table(f, fn):
    return _has(f, "rocksdict", "/rocksdb", "/faust/stores/", "/faust/tables/",
                "stream/worker/rows.py") or \
        (f.endswith("stream/worker/agents.py") and fn in ("load", "__enter__", "__exit__"))


# (bucket, rule(file, function)) in the order they are tried at each frame
BUCKETS = [
    (IDLE, lambda f, fn: f.endswith("/selectors.py")),
    ("decode (records.decode_click, agents.decode_batch)", _decode),
    ("faiss search (StreamModel.top_k, ranked_rows, faiss)",
     lambda f, fn: "/faiss/" in f or (f.endswith("hiertcn/inference.py")
                                      and fn in ("top_k", "ranked_rows"))),
    ("model (hiertcn/*.py, torch)", lambda f, fn: _has(f, "/hiertcn/", "/torch/")),
    ("top-K lists and encoding (records.encode_*, orjson, _attach_top_k, publish)",
     lambda f, fn: (f.endswith("stream/records.py") and fn.startswith("encode"))
     or "orjson" in f or fn == "_attach_top_k"
     or (f.endswith("stream/worker/agents.py") and fn == "publish")),
    ("Faust producer/changelog (aiokafka producer, faust topics)", _producer),
    ("table reads/writes (RocksDB, faust/stores, faust/tables, rows.py)", _table),
    ("publisher (confluent_kafka, stream/worker/publisher.py)",
     lambda f, fn: _has(f, "/confluent_kafka/", "stream/worker/publisher.py")),
    ("Faust fetcher/consumer (faust transport/streams/channels/agents, aiokafka, "
     "batching.py)",
     lambda f, fn: _has(f, "/faust/transport/", "/aiokafka/", "/faust/streams.py",
                        "/faust/channels.py", "/faust/events.py", "/faust/agents/",
                        "stream/worker/batching.py")),
    ("metrics (prometheus_client)", lambda f, fn: "/prometheus_client/" in f),
    ("plan/recommend python (plan.py, recommend.py, session_policy.py, agents.py rest)",
     lambda f, fn: _has(f, "stream/worker/plan.py", "stream/worker/recommend.py",
                        "stream/worker/session_policy.py", "stream/worker/agents.py")),
]
ORDER = [b for b, _ in BUCKETS] + [LOOP, OTHER]
TRANSPARENT = ("/asyncio/", "/mode/")  # passed over on the walk from the leaf

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse_frame(text: str) -> tuple[str, str, int]:
    """'fn (file:line)' -> (fn, file, line); a frame without a file -> (text, '', 0)."""
    m = _FRAME.match(text)
    if not m:
        return text, "", 0
    return m["fn"], m["file"], int(m["line"] or 0)


def parse_line(line: str) -> tuple[str, list[tuple[str, str, int]], int] | None:
    """One collapsed line -> (thread, frames root first, samples); None if blank."""
    line = line.rstrip("\n")
    if not line.strip():
        return None
    stack, _, count = line.rpartition(" ")
    parts = stack.split(";")
    thread = ""
    if parts and parts[0].startswith("thread ("):
        thread, parts = parts[0], parts[1:]
    if parts and parts[0].startswith("process "):
        parts = parts[1:]
    return thread, [parse_frame(p) for p in parts], int(count)


def bucket_of(frames: list[tuple[str, str, int]]) -> str:
    """The first bucket matched going from the leaf to the root (see the docstring)."""
    looped = False
    for qual, f, _ in reversed(frames):
        if any(t in f for t in TRANSPARENT) and not f.endswith("/selectors.py"):
            looped = looped or "/asyncio/" in f
            continue
        fn = qual.rpartition(".")[2]
        for name, rule in BUCKETS:
            if rule(f, fn):
                return name
    return LOOP if looped else OTHER


def buckets_in(frames: list[tuple[str, str, int]]) -> set[str]:
    """Every bucket with a frame on the stack (the inclusive count)."""
    out = set()
    for qual, f, _ in frames:
        if "/asyncio/" in f and not f.endswith("/selectors.py"):
            out.add(LOOP)
        fn = qual.rpartition(".")[2]
        for name, rule in BUCKETS:
            if rule(f, fn):
                out.add(name)
    return out or {OTHER}


def short(path: str) -> str:
    """A file as a reader knows it: from the package (site-packages/...) or the repo."""
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


@dataclass
class ThreadProfile:
    thread: str
    samples: int = 0
    own: Counter = field(default_factory=Counter)  # bucket -> samples
    inclusive: Counter = field(default_factory=Counter)
    leaves: Counter = field(default_factory=Counter)  # 'fn (file)' -> samples
    other_leaves: Counter = field(default_factory=Counter)  # of the "other" bucket


def summarise(lines) -> dict[str, ThreadProfile]:
    """Collapsed lines -> one ThreadProfile per thread ('' without --threads)."""
    threads: dict[str, ThreadProfile] = {}
    for line in lines:
        parsed = parse_line(line)
        if parsed is None:
            continue
        thread, frames, n = parsed
        tp = threads.setdefault(thread, ThreadProfile(thread))
        tp.samples += n
        b = bucket_of(frames)
        tp.own[b] += n
        for inc in buckets_in(frames):
            tp.inclusive[inc] += n
        if frames:
            fn, f, _ = frames[-1]
            leaf = f"{fn} ({short(f)})"
            tp.leaves[leaf] += n
            if b in (OTHER, LOOP):
                tp.other_leaves[leaf] += n
    return threads


def busy_share(tp: ThreadProfile) -> float:
    return 1.0 - tp.own[IDLE] / tp.samples if tp.samples else 0.0


def main_thread(threads: dict[str, ThreadProfile]) -> ThreadProfile:
    """The thread that ran the model (the Faust agent's event loop): the most samples in
    the model bucket, else the most samples."""
    model = BUCKETS[3][0]
    return max(threads.values(), key=lambda t: (t.inclusive[model], t.samples))


def pct(n: int, total: int) -> str:
    return f"{100.0 * n / total:5.1f}%" if total else "   -  "


def report(threads: dict[str, ThreadProfile], top: int = 20) -> str:
    """The summary as text: the agent's thread in full, the others in brief."""
    if not threads:
        return "no samples\n"
    main = main_thread(threads)
    out = [f"threads sampled: {len(threads)}; the agent's thread (the one running the model): "
           f"{main.thread or '(single)'}, {main.samples} samples, "
           f"{pct(main.samples - main.own[IDLE], main.samples).strip()} not waiting in "
           "select", "",
           "buckets of the agent's thread: own = each sample once, in the first bucket "
           "matched from the leaf to the root (asyncio/mode frames passed over); "
           "inclusive = samples with any frame of the bucket", "",
           f"  {'own':>6}  {'incl':>6}  {'busy-own':>8}  bucket"]
    busy = main.samples - main.own[IDLE]
    for b in ORDER:
        if main.own[b] or main.inclusive[b]:
            busy_col = pct(main.own[b], busy) if b != IDLE else "   -  "
            out.append(f"  {pct(main.own[b], main.samples)}  {pct(main.inclusive[b], main.samples)}"
                       f"  {busy_col:>8}  {b}")
    out += ["", "  (busy-own: share of the samples not waiting in select)", "",
            f"top {top} leaf functions (own time) of the agent's thread:"]
    for leaf, n in main.leaves.most_common(top):
        out.append(f"  {pct(n, main.samples)}  {leaf}")
    if main.other_leaves:
        out += ["", "largest leaves of 'asyncio loop (own)' and 'other':"]
        for leaf, n in main.other_leaves.most_common(8):
            out.append(f"  {pct(n, main.samples)}  {leaf}")
    rest = [t for t in threads.values() if t is not main]
    if rest:
        out += ["", "other threads (with py-spy --idle every thread is sampled, waiting "
                "or not; a wait in C, e.g. librdkafka's poll, shows as its caller):"]
        for t in sorted(rest, key=lambda t: -t.samples):
            tops = ", ".join(f"{b.split(' (')[0]} {pct(n, t.samples).strip()}"
                             for b, n in t.own.most_common(3))
            leaf = t.leaves.most_common(1)[0][0] if t.leaves else "-"
            out.append(f"  {t.thread or '(single)'}: {t.samples} samples; {tops}; "
                       f"top leaf {leaf}")
    return "\n".join(out) + "\n"
