"""Fault scenario `scale_1_2_1`: under paced load, one worker, a second joins, then leaves
(SIGTERM)."""

from __future__ import annotations

import time
from collections import Counter

from benchmarks.reliability.audit import outcome, reference_state, table_state
from benchmarks.reliability.events import clicks
from benchmarks.reliability.lab import Lab, Scenario, Sizes, consumer_counters, counter, timeout_for


def run(lab: Lab, sizes: Sizes) -> dict:
    """Under paced load: one worker, a second joins, then leaves (SIGTERM)."""
    n = int(sizes.rate * 4 * sizes.phase_s)
    events = clicks(n)
    a = lab.worker("a")
    lab.send(events, rate=lambda t: sizes.rate)
    time.sleep(sizes.phase_s)
    t_join = time.monotonic()
    b = lab.worker("b")
    joined_ready = time.monotonic() - t_join
    time.sleep(sizes.phase_s)
    b_share = counter(b, "hiertcn_events_in_total")
    consumer = consumer_counters(b, Counter())
    t_leave = time.monotonic()
    b.stop()
    time.sleep(sizes.phase_s)
    lab.wait_answered(events, timeout_for(n), alive=[a])
    consumer_counters(a, consumer)
    pause_join = lab.answers.longest_pause(t_join, t_join + joined_ready + sizes.phase_s)
    pause_leave = lab.answers.longest_pause(t_leave, t_leave + sizes.phase_s)
    steady = lab.answers.longest_pause(t_join - sizes.phase_s + 2, t_join)
    time.sleep(1.5)
    a.stop()
    reference = reference_state(lab, n, timeout_for(n))
    out = outcome(lab, events, table_state(lab.bootstrap, lab.app_id), reference)
    out.update(recovery_s=round(max(pause_join, pause_leave), 2),
               pause_on_join_s=round(pause_join, 2), pause_on_leave_s=round(pause_leave, 2),
               longest_pause_steady_s=round(steady, 2), second_worker_events=int(b_share),
               **consumer)
    return out


SCENARIO = Scenario("scale_1_2_1", run)
