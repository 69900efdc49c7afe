"""The issue's targets, met or not, and the results file."""

from __future__ import annotations

import json
from pathlib import Path


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
    if "broker_restart" in results:
        out["broker_restart: worker resumed by itself"] = results["broker_restart"]["worker_restarts"] == 0
    if "burst" in results:
        r = results["burst"]
        out["burst: lag drained"] = r["drain_s"] is not None
        out["burst: memory bounded (peak RSS < 1.5x before the burst)"] = (
            r["rss_peak_vs_before"] is not None and r["rss_peak_vs_before"] < 1.5)
    return out


def write(path: Path, results: dict, command: str, sizes, seconds: float) -> dict:
    """benchmarks/results/reliability.json: every scenario's figures and the targets."""
    report = {"scenarios": results, "command": command, "sizes": vars(sizes),
              "seconds": round(seconds, 1), "targets": targets(results)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report
