"""Fault scenarios against the real local broker and real RocksDB: nothing lost,
nothing applied twice.

    python -m benchmarks.reliability                    # all seven, full size (~25 min)
    python -m benchmarks.reliability --only kill9,poison --events 20000

Each scenario runs workers as ops run them (`python -m stream.cli worker`, through
stream/tools/harness.py), replays MovieLens clicks, breaks something, and then checks,
from the outputs and from the `user_state` table's changelog:
- lost: clicks without a recommendation;
- applied_twice / state_lost: per user, events applied to the state (the state counts
  them) above / below the events sent for that user;
- state_mismatches: users whose final `user_state` row differs from an uninterrupted
  worker's over the same clicks topic (where the scenario says so).
Figures go to benchmarks/results/reliability.json (and a lag plot for the burst).
`tests/test_reliability.py` runs the same scenarios, small.

Layout: lab.py (a scenario's world: topics, workers, sizes), clients.py (the sender and
the readers), events.py (clicks and malformed events), audit.py (the `user_state` rows
read back and compared), scenarios/ (one module each, listed in scenarios/__init__.py),
report.py (the targets), __main__.py (the command line).
"""
