"""Fault scenario `poison`: malformed events of every kind mixed into good ones: all in the
DLQ, with the right reason, and the worker never restarts."""

from __future__ import annotations

import random
import time
from collections import Counter

from benchmarks.reliability.audit import outcome, table_state
from benchmarks.reliability.clients import Answers
from benchmarks.reliability.events import clicks, malformed
from benchmarks.reliability.lab import PARTITIONS, Lab, Scenario, Sizes, error_lines, timeout_for


def run(lab: Lab, sizes: Sizes, seed: int = 0) -> dict:
    """Malformed events mixed into good ones, as fast as they can be sent."""
    good = clicks(sizes.events)
    bad = malformed(sizes.malformed, sorted({e["user"] for e in good}), seed)
    mixed = good + bad
    random.Random(seed).shuffle(mixed)
    # the good ones keep their order (per-user order is the point of a partition)
    good_iter = iter(good)
    mixed = [next(good_iter) if e["user"] else e for e in mixed]
    dlq = Answers(lab.bootstrap, lab.topics.dlq, PARTITIONS)
    dlq.start()
    w = lab.worker()
    pid = w.proc.pid
    lab.send(mixed)
    lab.wait_answered(good, timeout_for(len(mixed)), alive=[w])
    deadline = time.monotonic() + 60
    while len(dlq.reasons) < len(bad) and time.monotonic() < deadline:
        time.sleep(0.2)
    dlq.close()
    alive = w.proc.poll() is None and w.proc.pid == pid
    crashes = error_lines(w.log.read_text(errors="replace"))
    time.sleep(1.5)
    w.stop()
    out = outcome(lab, good, table_state(lab.bootstrap, lab.app_id), None)
    wanted, got = Counter(e["reason"] for e in bad), Counter(dlq.reasons)
    out.update(sent=len(mixed), good=len(good), malformed=len(bad), dlq=len(dlq.reasons),
               dlq_reasons_match=wanted == got, dlq_by_reason=dict(sorted(got.items())),
               worker_restarts=0 if alive else 1, agent_crashes=crashes, recovery_s=0.0)
    return out


SCENARIO = Scenario("poison", run)
