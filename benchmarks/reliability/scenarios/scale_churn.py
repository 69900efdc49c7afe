"""Fault scenario `scale_churn`: a second worker joins and leaves `churns` times under
paced load."""

from __future__ import annotations

import time
from collections import Counter

from benchmarks.reliability.audit import outcome, reference_state, table_state
from benchmarks.reliability.events import clicks
from benchmarks.reliability.lab import Lab, Scenario, Sizes, consumer_counters, timeout_for


def run(lab: Lab, sizes: Sizes) -> dict:
    """scale_1_2_1 over and over: a second worker joins and leaves `churns` times under
    paced load, a rebalance every few seconds. The clicks a rebalance can lose inside
    Faust's consumer (stream/worker/faust_fixes.py) show here, where one cycle shows them
    rarely."""
    hold = sizes.phase_s / 4  # each worker count holds this long
    n = int(sizes.rate * (2 * sizes.phase_s + sizes.churns * (2 * hold + 10)))
    events = clicks(n)
    a = lab.worker("a")
    sender = lab.send(events, rate=lambda t: sizes.rate)
    time.sleep(sizes.phase_s)
    steady = lab.answers.longest_pause(time.monotonic() - sizes.phase_s + 2, time.monotonic())
    pauses, consumer = [], Counter()
    for _ in range(sizes.churns):
        if not sender.is_alive():
            break
        t = time.monotonic()
        b = lab.worker("b")
        time.sleep(hold)
        consumer_counters(b, consumer)
        b.stop()
        time.sleep(hold)
        pauses.append(lab.answers.longest_pause(t, time.monotonic()))
    lab.wait_answered(events, timeout_for(n), alive=[a])
    consumer_counters(a, consumer)
    time.sleep(1.5)
    a.stop()
    reference = reference_state(lab, n, timeout_for(n))
    out = outcome(lab, events, table_state(lab.bootstrap, lab.app_id), reference)
    out.update(recovery_s=round(max(pauses, default=0.0), 2), churns=len(pauses),
               longest_pause_steady_s=round(steady, 2), **consumer)
    return out


SCENARIO = Scenario("scale_churn", run)
