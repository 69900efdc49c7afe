"""Fault scenario `fuzz`: a generated corpus of malformed events (stream/tools/fuzz.py:
bad JSON, wrong types, huge and tiny values, odd unicode, duplicate keys, NaN/Infinity,
deep nesting, oversized, key mismatches, tombstones) among good clicks and odd but
valid ones, plus corrupted `user_state` rows written into the table's changelog before
the worker starts. Every malformed event and every first event of a corrupted-row
user must reach the DLQ at its source offset with the right reason, every other event
must be answered, and the worker must never exit."""

from __future__ import annotations

from benchmarks.reliability.lab import Lab, Scenario, Sizes, log
from stream.tools.fuzz_run import run_scenario


def run(lab: Lab, sizes: Sizes, seed: int = 0) -> dict:
    malformed = sizes.malformed
    out = run_scenario(lab.bootstrap, lab.export_dir, lab.work, malformed_n=malformed,
                       good_n=2 * malformed, bad_rows=max(34, malformed // 30),
                       odd_n=max(60, malformed // 16), users=max(50, malformed // 20),
                       seed=seed, log=log)
    # audit.outcome's keys, so the shared targets read this scenario too: nothing is
    # applied twice here by construction (one worker, never interrupted)
    out.update(lost=out["good"] - out["good_answered"], applied_twice=0, state_lost=0,
               recovery_s=0.0)
    return out


SCENARIO = Scenario("fuzz", run)
