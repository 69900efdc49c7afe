"""benchmarks/results/lifecycle.json, written by parts: this package's rollout arms,
and the swap, canary and catalogue figures of another. Each part replaces its own keys
and leaves the others' as they are (read, merge, write); `commands` records the
command behind each part, `command` all of them."""

from __future__ import annotations

import json
import time
from pathlib import Path

from hiertcn.errors import DataError

PART = "rollout"
KEYS = ("users", "arms", "rebuild_ms_per_user", "arms_definition", "rollout")


def merge(path: Path, figures: dict, command: str) -> dict:
    """`figures` (this part's keys) into the file at `path`; returns what was written."""
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            raise DataError(f"{path} is not JSON: fix or remove it, then run again") from None
    for key in KEYS:
        data.pop(key, None)
    data.update(figures)
    commands = data.get("commands") or {}
    commands[PART] = command
    data["commands"] = commands
    data["command"] = " ; ".join(commands[k] for k in sorted(commands))
    measured = data.get("measured") or {}
    measured[PART] = time.strftime("%Y-%m-%d")
    data["measured"] = measured
    path.write_text(json.dumps(data, indent=2) + "\n")
    return data


def targets(arms: dict) -> dict:
    """The issue's targets for the rollout, met or not."""
    base, rebuilt, reset = arms["no_rollout"], arms["rebuild"], arms["reset"]
    out = {}
    for metric in ("recall@20", "mrr@20"):
        gap = (base[metric] - rebuilt[metric]) / base[metric] if base[metric] else 0.0
        out[f"rebuild within 2% of no_rollout on {metric} (gap {gap:.2%})"] = gap <= 0.02
        out[f"rebuild above reset on {metric}"] = rebuilt[metric] > reset[metric]
    return out
