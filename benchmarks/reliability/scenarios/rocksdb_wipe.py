"""Fault scenario `rocksdb_wipe`: the worker's local RocksDB deleted and the worker
restarted: the `user_state` rows are rebuilt from the changelog, equal to those before."""

from __future__ import annotations

import shutil
import time

from stream.tools.harness import read_topic

from benchmarks.reliability.audit import local_state, mismatches, outcome, table_state
from benchmarks.reliability.events import clicks
from benchmarks.reliability.lab import Lab, Scenario, Sizes, timeout_for


def run(lab: Lab, sizes: Sizes) -> dict:
    """Delete the worker's local RocksDB and restart: rebuilt from the changelog."""
    events = clicks(sizes.wipe_events)
    w = lab.worker()
    lab.send(events)
    lab.wait_answered(events, timeout_for(len(events)), alive=[w])
    time.sleep(1.5)
    w.stop()
    before = local_state(lab.work / "w1")
    t0 = time.monotonic()
    w = lab.worker()  # same store: the baseline restart
    intact_s = time.monotonic() - t0
    w.stop()
    shutil.rmtree(lab.work / "w1")
    t0 = time.monotonic()
    w = lab.worker()
    wiped_s = time.monotonic() - t0
    w.stop()
    after = local_state(lab.work / "w1")
    differ = mismatches(after, before)
    records = len(read_topic(lab.bootstrap, f"{lab.app_id}-user_state-changelog", timeout=120))
    out = outcome(lab, events, table_state(lab.bootstrap, lab.app_id), None)
    out.update(recovery_s=round(wiped_s, 2), restart_intact_s=round(intact_s, 2),
               recovery_vs_intact_restart=round(wiped_s / intact_s, 2),
               changelog_records=records, keys_restored=len(after),
               state_mismatches=len(differ), mismatch_examples=differ[:3],
               users_before=len(before),
               users_after=len(after))
    return out


SCENARIO = Scenario("rocksdb_wipe", run)
