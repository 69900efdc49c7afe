"""The issue's targets, met or not, and the results file."""

from __future__ import annotations

import json
import time
from pathlib import Path

FUZZ_KEYS = ("malformed", "dlq", "by_reason", "good", "good_answered", "worker_restarts")


def targets(results: dict) -> dict:
    """The issue's targets, met or not, per scenario run."""
    out = {}
    for name, r in results.items():
        out[f"{name}: 0 lost, 0 applied twice"] = (r["lost"] == 0 and r["applied_twice"] == 0
                                                   and r["state_lost"] == 0)
        if "state_mismatches" in r:
            what = ("the state rebuilt from the changelog equals the one before"
                    if name == "rocksdb_wipe" else "final state equals the uninterrupted run")
            out[f"{name}: {what}"] = r["state_mismatches"] == 0
    for name in ("scale_1_2_1", "scale_churn"):
        if name in results:
            out[f"{name}: no clicks skipped by the consumer (0 offset gaps)"] = (
                results[name]["offset_gaps"] == 0)
    if "poison" in results:
        r = results["poison"]
        out["poison: 100% of malformed in the DLQ, reasons right"] = (
            r["dlq"] == r["malformed"] and r["dlq_reasons_match"])
        out["poison: worker alive throughout"] = r["worker_restarts"] == 0 and not r["agent_crashes"]
    if "fuzz" in results:
        r = results["fuzz"]
        out["fuzz: every malformed event and bad row in the DLQ, at its offset, reason right"] = (
            r["dlq_right"] and r["dlq"] >= r["malformed"])
        out["fuzz: every good event answered, worker alive"] = (
            r["good_answered"] == r["good"] and r["worker_restarts"] == 0)
    if "broker_restart" in results:
        out["broker_restart: worker resumed by itself"] = results["broker_restart"]["worker_restarts"] == 0
    if "burst" in results:
        r = results["burst"]
        out["burst: lag drained"] = r["drain_s"] is not None
        out["burst: memory bounded (peak RSS < 1.5x before the burst)"] = (
            r["rss_peak_vs_before"] is not None and r["rss_peak_vs_before"] < 1.5)
    return out


FUZZ_KEYS = ("malformed", "dlq", "by_reason", "good", "good_answered", "worker_restarts")


def write(path: Path, results: dict, command: str, sizes, seconds: float) -> dict:
    """benchmarks/results/reliability.json: every scenario's figures and the targets.
    A run of some scenarios (`--only`) replaces theirs and keeps the others' figures;
    `runs` says which command, sizes and day measured each scenario."""
    this_run = {"command": command, "sizes": vars(sizes), "measured": time.strftime("%Y-%m-%d"),
                "seconds": round(seconds, 1)}
    runs = {name: this_run for name in results}
    if path.exists():
        old = json.loads(path.read_text())
        earlier = old.get("runs") or {name: {"command": old.get("command"), "sizes": old.get("sizes")}
                                      for name in old.get("scenarios", {})}
        runs = {**earlier, **runs}
        results = {**old.get("scenarios", {}), **results}
    report = {"scenarios": results, "command": command, "sizes": vars(sizes),
              "seconds": round(seconds, 1), "runs": runs, "targets": targets(results)}
    if "fuzz" in results:
        report["fuzz"] = {k: results["fuzz"][k] for k in FUZZ_KEYS}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report
