"""The fault scenarios of benchmarks/reliability/ (one module each in scenarios/),
small: kill -9 and restart, a wiped RocksDB, a broker stopped and started again, scaling
1 -> 2 -> 1 (once, and over and over), poison traffic and a 10x burst. Each prints its
figures; the full-size run (`python -m benchmarks.reliability`) writes
benchmarks/results/reliability.json."""

from __future__ import annotations

import json

import pytest

from benchmarks.reliability.lab import SMALL, Lab
from benchmarks.reliability.scenarios import (broker_restart, burst, kill9, poison,
                                              rocksdb_wipe, scale_1_2_1, scale_churn)

pytestmark = pytest.mark.integration
SIZES = SMALL


@pytest.fixture
def lab(kafka_bootstrap, tmp_path, export_dir, request):
    lab = Lab(kafka_bootstrap, tmp_path, export_dir, request.node.name[5:20],
              figures=tmp_path)
    yield lab
    lab.close()


def report(name: str, figures: dict) -> dict:
    print(f"{name}: {json.dumps(figures)}")
    return figures


def nothing_lost_nor_doubled(r: dict) -> None:
    assert r["lost"] == 0, f"{r['lost']} clicks never got a recommendation"
    assert r["applied_twice"] == 0 and r["state_lost"] == 0, r
    assert r.get("reference_ok", True), f"the uninterrupted reference run itself was off: {r}"
    assert r.get("state_mismatches", 0) == 0, (
        f"{r['state_mismatches']} users' state differs: {r.get('mismatch_examples')}; {r}")


# A restarted worker's consumer can stop fetching, rarely and under CPU contention
# (healed by /health, see Lab.heal). One rerun keeps CI from flaking on it; a rerun shows
# as "R" in the report, and the full-size benchmark does not retry. (The scaling tests
# have none: the clicks Faust's consumer lost across a rebalance are fixed in
# stream/worker/faust_fixes.py, and the offset gaps that caused it are asserted to be 0.)
UPSTREAM_FLAKE = pytest.mark.flaky(reruns=1)


@UPSTREAM_FLAKE
def test_kill9_three_times_loses_nothing_and_applies_nothing_twice(lab):
    r = report("kill9", kill9.run(lab, SIZES))
    nothing_lost_nor_doubled(r)
    assert r["kills"] == SIZES.kills and "state_mismatches" in r
    # at-least-once output: what the killed worker had applied but not committed is
    # answered again, from the state that already holds it
    assert r["recommended"] >= r["sent"]


def test_wiped_rocksdb_is_rebuilt_from_the_changelog(lab):
    r = report("rocksdb_wipe", rocksdb_wipe.run(lab, SIZES))
    nothing_lost_nor_doubled(r)
    assert r["users_after"] == r["users_before"] > 0
    assert r["recovery_s"] > 0 and r["changelog_records"] >= r["keys_restored"]


def test_broker_stopped_and_started_again_the_worker_resumes_by_itself(tmp_path, export_dir):
    from stream.tools import localkafka
    broker = localkafka.start(tmp_path / "kafka")  # its own: this one gets stopped
    lab = Lab(broker.bootstrap, tmp_path / "lab", export_dir, "broker", broker=broker)
    try:
        r = broker_restart.run(lab, SIZES)
    finally:
        lab.close()
        lab.broker.stop()  # the restarted one
    report("broker_restart", r)
    nothing_lost_nor_doubled(r)
    assert r["worker_restarts"] == 0 and r["outage_s"] >= SIZES.outage_s
    assert r["recovery_s"] is not None


def no_clicks_skipped(r: dict) -> None:
    assert r["offset_gaps"] == 0, (
        f"Faust's consumer skipped offsets {r['offset_gaps']} times (see the workers' "
        f"'are missing' log lines): clicks can be lost in a rebalance; {r}")


def test_scaling_1_2_1_under_load_loses_and_doubles_nothing(lab):
    r = report("scale_1_2_1", scale_1_2_1.run(lab, SIZES))
    nothing_lost_nor_doubled(r)
    no_clicks_skipped(r)
    assert r["second_worker_events"] > 0, "the second worker took partitions"


def test_scaling_in_and_out_again_and_again_skips_no_click(lab):
    r = report("scale_churn", scale_churn.run(lab, SIZES))
    nothing_lost_nor_doubled(r)
    no_clicks_skipped(r)
    assert r["churns"] == SIZES.churns


def test_poison_traffic_all_in_the_dlq_worker_never_restarts(lab):
    r = report("poison", poison.run(lab, SIZES))
    nothing_lost_nor_doubled(r)
    assert r["dlq"] == r["malformed"] == SIZES.malformed and r["dlq_reasons_match"]
    assert r["worker_restarts"] == 0 and r["agent_crashes"] == 0


def test_burst_lag_grows_then_drains_with_bounded_memory(lab, tmp_path):
    r = report("burst", burst.run(lab, SIZES))
    nothing_lost_nor_doubled(r)
    assert r["peak_lag"] > r["lag_before_burst"], "the burst outran the worker"
    assert r["drain_s"] is not None, "the lag drained"
    # a backlog waits in Kafka, not in the worker: take() bounds what is in memory
    assert r["rss_peak_vs_before"] < 1.5, r
    assert (tmp_path / "reliability_burst.png").stat().st_size > 0
