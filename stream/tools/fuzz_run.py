"""The fuzz corpus (stream/tools/fuzz.py) against a real worker on a real broker:
malformed messages interleaved with good clicks, odd but valid ones, and corrupted
`user_state` rows written into the table's changelog before the worker starts (it
recovers them into its table). Used by tests/test_fuzz.py (small) and the reliability
benchmark (full size):

    from stream.tools.fuzz_run import run_scenario
    run_scenario(bootstrap, export_dir, work_dir, malformed_n=10_000, good_n=20_000)

Returns counts (see `run_scenario`); every DLQ message is matched to what was sent by
its source partition and offset, so a right count with wrong reasons does not pass.
"""

from __future__ import annotations

import random
import time
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
from confluent_kafka import Producer

from hiertcn.inference import StreamModel
from stream.admin import DLQ_TOPIC_CONFIG, create_topics
from stream.records import encode_click
from stream.tools import fuzz
from stream.tools.harness import Topics, WorkerProcess, consume
from stream.worker.rows import UserState

ROW_CLICKS = 3  # clicks of each corrupted-row user: the first meets the bad row


def run_scenario(bootstrap: str, export_dir, work, *, malformed_n: int = 1000,
                 good_n: int = 2000, bad_rows: int = 34, odd_n: int = 60, users: int = 50,
                 partitions: int = 2, seed: int = 0, timeout: float | None = None,
                 log=print) -> dict:
    """Everything sent before the worker starts (a backlog, as fast as it goes), then
    read back. Keys: malformed, dlq, by_reason, dlq_right (every DLQ message at the
    source and with the reason expected, none missing, none extra), wrong (a few
    mismatches), good (events that must be answered), good_answered, answered_by_kind,
    bad_rows, bad_states (the worker's metric), worker_restarts, health, seconds."""
    t0 = time.monotonic()
    work = Path(work)
    model = StreamModel.load(export_dir)
    token = f"{seed}-{time.time_ns() % 10**9}"
    topics = Topics(*(f"fuzz-{token}-{n}" for n in ("clicks", "recs", "emb", "dlq")))
    app_id = f"fuzz-{token}-app"
    changelog = f"{app_id}-user_state-changelog"  # Faust: <app id>-<table>-changelog
    create_topics(bootstrap, {t: partitions for t in (topics.clicks, topics.recommendations,
                                                      topics.embeddings)})
    create_topics(bootstrap, {topics.dlq: partitions}, config=DLQ_TOPIC_CONFIG)
    create_topics(bootstrap, {changelog: partitions}, config={"cleanup.policy": "compact"})
    plan = _plan(model, malformed_n, good_n, bad_rows, odd_n, users, seed)
    where = _send(bootstrap, topics.clicks, plan["messages"])
    _write_rows(bootstrap, changelog, plan, where)
    log(f"fuzz: sent {len(plan['messages'])} messages and {len(plan['rows'])} corrupted "
        f"rows in {time.monotonic() - t0:.1f}s; starting the worker")
    w = WorkerProcess(bootstrap, topics, app_id, export_dir, work / f"w-{token}", partitions,
                      ["--sweep-interval-s", "1"])  # the sweep walks the bad rows too
    try:
        w.wait_ready(120)
        pid = w.proc.pid
        return _collect(bootstrap, topics, w, pid, plan, where,
                        timeout or 60 + len(plan["messages"]) / 100, t0, log)
    finally:
        w.stop(timeout=15)


def _plan(model, malformed_n, good_n, bad_rows, odd_n, users, seed) -> dict:
    """messages: [(key, value, expect)] in send order, expect = ("dlq", reason) or
    ("answer", event_id, kind); rows: [(user, row)]."""
    rng = random.Random(seed)
    items = model.item_ids
    good_users = [f"g{k}" for k in range(users)]
    ordered = []  # per-user order matters: sent in this order
    for k in range(good_n):
        user = good_users[k % users]
        ordered.append((user.encode(), encode_click(user, rng.choice(items),
                                                    fuzz.BASE_TS + k, "click", f"g:{k}"),
                        ("answer", f"g:{k}", "good")))
    gru, window = model.fresh(1)[0]
    good_row = UserState(gru=gru, window=window, model=model.version, session=1).to_row()
    rows = []
    for k, case in enumerate(fuzz.corrupt_rows(good_row, bad_rows, seed)):
        user = f"br{k}"
        rows.append((user, case.row))
        for j in range(ROW_CLICKS):
            if j == 0 and case.reason:
                expect = ("dlq", case.reason)
            else:
                expect = ("answer", f"br:{k}:{j}", "bad_row_later" if case.reason
                          else "reset_row")
            ordered.append((user.encode(), encode_click(user, rng.choice(items),
                                                        fuzz.BASE_TS + j, "click",
                                                        f"br:{k}:{j}"), expect))
    free = [(c.key, c.value, ("dlq", c.reason))
            for c in fuzz.malformed(malformed_n, good_users, items[0], seed)]
    free += [(c.key, c.value, ("answer", c.event_id, "odd_valid"))
             for c in fuzz.odd_valid(odd_n, items[0], seed)]
    slots = [True] * len(ordered) + [False] * len(free)
    rng.shuffle(slots)
    rng.shuffle(free)
    it_ordered, it_free = iter(ordered), iter(free)
    return {"messages": [next(it_ordered) if s else next(it_free) for s in slots],
            "rows": rows}


def _send(bootstrap, topic, messages) -> list:
    """Produce in order (idempotent, murmur2 as Java clients and the replay);
    returns each message's (partition, offset)."""
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                  "enable.idempotence": True, "linger.ms": 5, "message.max.bytes": 2_000_000})
    where: list = [None] * len(messages)

    def delivered(k):
        def cb(err, msg):
            assert err is None, err
            where[k] = (msg.partition(), msg.offset())
        return cb

    for k, (key, value, _) in enumerate(messages):
        while True:
            try:
                p.produce(topic, key=key, value=value, on_delivery=delivered(k))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(60) == 0, "clicks not all delivered"
    return where


def _write_rows(bootstrap, changelog, plan, where) -> None:
    """Each row into the changelog partition of its user's clicks (the table partition
    the worker reads it from); the key as Faust writes it: JSON."""
    partition = {key: part for (key, _, _), (part, _) in zip(plan["messages"], where)}
    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000})
    for user, row in plan["rows"]:
        p.produce(changelog, key=orjson.dumps(user), value=row,
                  partition=partition[user.encode()])
    assert p.flush(60) == 0, "rows not all delivered"


def _collect(bootstrap, topics, w, pid, plan, where, timeout, t0, log) -> dict:
    """Read the answers and the DLQ back, match them to what was sent."""
    want_dlq = {pos: exp[1] for (_, _, exp), pos in zip(plan["messages"], where)
                if exp[0] == "dlq"}
    want_answer = {exp[1]: exp[2] for _, _, exp in plan["messages"] if exp[0] == "answer"}
    deadline = time.monotonic() + timeout
    recs = consume(bootstrap, topics.recommendations, len(want_answer), timeout)
    dlq = [orjson.loads(value) for _, value in  # raw: keys of bad messages need not be UTF-8
           consume(bootstrap, topics.dlq, len(want_dlq),
                   max(5.0, deadline - time.monotonic()), raw=True)]
    time.sleep(2.5)  # two more sweeps over the table, bad rows included
    got_dlq = {(d["partition"], d["offset"]): d["reason"] for d in dlq}
    wrong = [f"{pos}: want {want_dlq.get(pos)}, got {got_dlq.get(pos)}"
             for pos in sorted(set(want_dlq) | set(got_dlq))
             if want_dlq.get(pos) != got_dlq.get(pos)]
    answered = {r["event_id"] for _, r in recs} & set(want_answer)
    alive = w.proc.poll() is None and w.proc.pid == pid
    out = {"malformed": sum(1 for r in want_dlq.values() if not r.startswith("bad_state")),
           "dlq": len(dlq), "by_reason": dict(sorted(Counter(got_dlq.values()).items())),
           "dlq_right": not wrong and len(dlq) == len(got_dlq), "wrong": wrong[:10],
           "good": len(want_answer), "good_answered": len(answered),
           "answered_by_kind": _by_kind(want_answer, answered),
           "bad_rows": sum(1 for r in want_dlq.values() if r.startswith("bad_state")),
           "bad_states": _metric(w, 'hiertcn_event_outcomes_total{kind="bad_states"}')
           if alive else None,
           "worker_restarts": 0 if alive else 1, "health": _health(w) if alive else None,
           "seconds": round(time.monotonic() - t0, 1)}
    log(f"fuzz: {out}")
    return out


def _by_kind(want: dict, answered: set) -> dict:
    kinds = Counter(want.values())
    return {k: f"{sum(1 for e in answered if want[e] == k)}/{n}" for k, n in sorted(kinds.items())}


def _metric(w, sample: str) -> float:
    for line in w.metrics().splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def _health(w) -> str:
    try:
        with urllib.request.urlopen(w.url("/health/"), timeout=5) as r:
            return orjson.loads(r.read()).get("status", "?")
    except OSError as exc:
        return f"unreachable: {exc}"
