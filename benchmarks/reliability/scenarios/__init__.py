"""The fault scenarios, in the order `python -m benchmarks.reliability` runs them.

Each module has a `run(lab, sizes) -> dict` and its SCENARIO; a new scenario is its
module plus one line in SCENARIOS.
"""

from benchmarks.reliability.lab import Scenario
from benchmarks.reliability.scenarios import (broker_restart, burst, fuzz, kill9, poison,
                                              rocksdb_wipe, scale_1_2_1, scale_churn)

SCENARIOS: list[Scenario] = [
    kill9.SCENARIO,
    rocksdb_wipe.SCENARIO,
    broker_restart.SCENARIO,
    scale_1_2_1.SCENARIO,
    scale_churn.SCENARIO,
    poison.SCENARIO,
    fuzz.SCENARIO,
    burst.SCENARIO,
]
