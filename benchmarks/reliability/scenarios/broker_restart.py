"""Fault scenario `broker_restart`: the broker stopped for `outage_s` mid-stream and
started again on the same data and port (the lab's own broker); the worker resumes by
itself."""

from __future__ import annotations

import time

from benchmarks.reliability.audit import outcome, reference_state, table_state
from benchmarks.reliability.events import clicks
from benchmarks.reliability.lab import Lab, Scenario, Sizes, log, timeout_for


def run(lab: Lab, sizes: Sizes) -> dict:
    """Stop the broker for `outage_s` mid-stream and start it again on the same data
    and port; the worker is never restarted. `lab.broker` is that broker, and after
    the run the restarted one."""
    from stream.tools import localkafka
    broker = lab.broker
    n = int(sizes.rate * (2 * sizes.phase_s + sizes.outage_s))
    events = clicks(n)
    w = lab.worker()
    pid = w.proc.pid
    lab.send(events, rate=lambda t: sizes.rate)
    time.sleep(sizes.phase_s)
    before = len(lab.answers.answered())
    broker.stop()
    stopped = time.monotonic()
    log(f"  broker stopped after {before} answers; down for {sizes.outage_s:g}s")
    time.sleep(sizes.outage_s)
    port = int(broker.bootstrap.rsplit(":", 1)[1])
    broker = lab.broker = localkafka.start(broker.dir, port)
    back = time.monotonic()
    log(f"  broker back after {back - stopped:.1f}s")
    lab.wait_answered(events, timeout_for(n), alive=[w])
    first = lab.answers.first_after(back)
    alive = w.proc.poll() is None and w.proc.pid == pid
    time.sleep(1.5)
    w.stop()
    reference = reference_state(lab, n, timeout_for(n))
    out = outcome(lab, events, table_state(lab.bootstrap, lab.app_id), reference)
    out.update(recovery_s=round(first - back, 2) if first else None,
               outage_s=round(back - stopped, 1), worker_restarts=0 if alive else 1,
               broker_keeps_data="on disk (KRaft log dirs), kept across the restart")
    return out


SCENARIO = Scenario("broker_restart", run, own_broker=True)
