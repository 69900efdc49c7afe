"""Finished jobs of an accuracy run, kept on disk so that a run stopped part-way (a
session that ends, a machine restarted) goes on where it stopped instead of starting
again: the full benchmark takes longer than a working session here.

One JSON file per finished job, under a folder named by the plan's fingerprint (every
setting that changes a job's result; not the worker count, the bootstrap or the cache
folder), so a run with other settings never picks up these results. Each entry
records the commit it was made at; the report lists them, so a run resumed across a
code change says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np

from hiertcn.accuracy.plan import Plan
from hiertcn.data.cache import CACHE_VERSION

log = logging.getLogger("hiertcn.accuracy")
NOT_RESULT = ("workers", "bootstrap", "cache_dir")  # settings that leave job results alone


def fingerprint(plan: Plan) -> str:
    settings = {k: v for k, v in asdict(plan).items() if k not in NOT_RESULT}
    text = json.dumps({"plan": settings, "cache": CACHE_VERSION}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def commit() -> str | None:
    """The checkout's commit (with "+changes" when its tracked files differ), or None
    outside a git checkout."""
    here = Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "."], cwd=here,
                               timeout=10).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+changes" if dirty else "")


class Journal:
    def __init__(self, plan: Plan, root: Path | None = None):
        """`root`: where the plans' folders go (default CACHE_DIR/accuracy-journal); a
        folder in the checkout lets a run span sessions on machines that do not last."""
        root = Path(plan.cache_dir) / "accuracy-journal" if root is None else Path(root)
        self.folder = root / fingerprint(plan)
        self.commit = commit()
        self._commits: set[str] = set()  # of the entries loaded and saved

    def load(self, keys: set[str]) -> dict[str, dict]:
        """The finished jobs among `keys`, by key."""
        done = {}
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else ():
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                log.warning("accuracy journal: %s unreadable, its job runs again", path)
                continue
            if entry.get("key") in keys:
                done[entry["key"]] = _arrays(entry["result"])
                self._commits.add(entry.get("commit") or "unknown")
        return done

    def save(self, key: str, result: dict) -> None:
        """Written whole or not at all (a stop while writing leaves no half entry)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
        path = self.folder / f"{name}.json"
        tmp = path.with_suffix(".partial")
        tmp.write_text(json.dumps({"key": key, "commit": self.commit,
                                   "result": _lists(result)}))
        tmp.replace(path)
        self._commits.add(self.commit or "unknown")

    def commits(self) -> list[str]:
        """The commits the results of this run were made at (loaded and saved)."""
        return sorted(self._commits)


# per-user arrays travel as lists; every other value is already plain
def _lists(result: dict) -> dict:
    out = dict(result)
    if "sums" in out:
        out["sums"] = {m: v.tolist() for m, v in out["sums"].items()}
        out["counts"] = out["counts"].tolist()
    return out


def _arrays(result: dict) -> dict:
    out = dict(result)
    if "sums" in out:
        out["sums"] = {m: np.asarray(v, np.float64) for m, v in out["sums"].items()}
        out["counts"] = np.asarray(out["counts"], np.int64)
    return out
