"""Fault scenario `kill9`: kill -9 the worker at random points of a replay and restart it,
`kills` times: nothing lost, nothing applied twice, and the final state equals an
uninterrupted run."""

from __future__ import annotations

import random
import signal
import time

from benchmarks.reliability.audit import outcome, reference_state, table_state
from benchmarks.reliability.clients import committed
from benchmarks.reliability.events import clicks
from benchmarks.reliability.lab import PARTITIONS, STALL_S, Lab, Scenario, Sizes, log, timeout_for


def run(lab: Lab, sizes: Sizes, seed: int = 0) -> dict:
    """SIGKILL the worker at random points of a replay, restart it, `kills` times."""
    events = clicks(sizes.events)
    rng = random.Random(seed)
    points = sorted(rng.uniform(0.1, 0.9) for _ in range(sizes.kills))
    w = lab.worker()
    lab.send(events)
    recoveries, redo = [], []  # redo: answered but not committed at the kill
    for f in points:
        deadline = time.monotonic() + timeout_for(len(events))
        while len(lab.answers.answered()) < f * len(events):
            w = lab.heal(w)
            if w.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{len(lab.answers.answered())} of {len(events)} answered "
                                   f"before the kill at {f:.0%}; worker log:\n{w.tail(80)}\n"
                                   f"stacks:\n{w.stacks()}")
            time.sleep(0.05)
        w.stop(signal.SIGKILL)
        killed = time.time()
        at = len(lab.answers.answered())
        done = committed(lab.bootstrap, lab.app_id, lab.topics.clicks, PARTITIONS)
        log(f"  kill -9 at {at}/{len(events)} answered, {done} committed")
        redo.append(max(at - done, 0))
        w = lab.worker(wait=False)
        first = None
        while first is None and time.time() - killed < 120:
            first = lab.answers.first_produced_after(killed)
            if first is None and w.proc.poll() is not None:
                raise RuntimeError(f"restarted worker exited:\n{w.tail()}")
            time.sleep(0.05)
        recoveries.append(round((first or time.time()) - killed, 2))
    deadline = time.monotonic() + timeout_for(len(events))
    while not lab.wait_answered(events, STALL_S * 2, alive=[w], quiet=True):
        w = lab.heal(w)
        if time.monotonic() > deadline:
            break
    time.sleep(1.5)
    w.stop()
    reference = reference_state(lab, len(events), timeout_for(len(events)))
    out = outcome(lab, events, table_state(lab.bootstrap, lab.app_id), reference)
    out.update(recovery_s=max(recoveries), recoveries_s=recoveries, kills=len(points),
               uncommitted_at_kill=redo, stall_restarts=lab.stall_restarts,
               kill_points=[round(p, 3) for p in points])
    return out


SCENARIO = Scenario("kill9", run)
