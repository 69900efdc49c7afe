"""`hiertcn bench accuracy --status`: how far a run with these settings has come, read
from its journal alone (no data fetched, no child started), so a run that spans
sessions can be checked before it is resumed, or while it runs from another shell.

Validation figures of the tuning trials and test figures of the finished fits are
aggregates over users, as the results file holds them; nothing per user is printed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hiertcn.accuracy.journal import Journal
from hiertcn.accuracy.plan import Job, Plan, jobs

KINDS = ("prepare", "tune", "fit")
SHOWN_LEFT = 8  # jobs named in the "left" line; the rest are counted


def summary(plan: Plan, journal_root: Path | None = None) -> str:
    todo = jobs(plan)
    journal = Journal(plan, journal_root)
    done = journal.load({j.key for j in todo})
    lines = [f"journal {journal.folder}: {len(done)} of {len(todo)} jobs done"]
    for ds in plan.datasets:
        mine = [j for j in todo if j.dataset == ds]
        counts = ", ".join(f"{k} {sum(j.key in done for j in mine if j.kind == k)}/"
                           f"{sum(j.kind == k for j in mine)}" for k in KINDS)
        lines.append(f"{ds}: {counts}")
        lines += [f"  {m}: {text}" for m in plan.models
                  if (text := _model_line(m, [j for j in mine if j.model == m], done))]
    left = [j.key for j in todo if j.key not in done]
    if left:
        more = f" (and {len(left) - SHOWN_LEFT} more)" if len(left) > SHOWN_LEFT else ""
        lines.append("left, in the plan's order: " +
                     ", ".join(left[:SHOWN_LEFT]) + more)
    else:
        lines.append("every job is done: the same command without --status writes the results")
    return "\n".join(lines)


def _model_line(model: str, mine: list[Job], done: dict[str, dict]) -> str:
    tunes = [done[j.key] for j in mine if j.kind == "tune" and j.key in done]
    n_tunes = sum(j.kind == "tune" for j in mine)
    fits = [done[j.key] for j in mine if j.kind == "fit" and j.key in done]
    n_fits = sum(j.kind == "fit" for j in mine)
    parts = []
    if tunes:
        best = max(tunes, key=lambda r: r["val"]["mrr@20"])
        parts.append(f"tuning {len(tunes)}/{n_tunes}, best validation MRR@20 "
                     f"{best['val']['mrr@20']:.4f} (trial {best['trial']})")
    if fits:
        mrr = np.mean([f["test"]["mrr@20"] for f in fits])
        recall = np.mean([f["test"]["recall@20"] for f in fits])
        parts.append(f"folds {len(fits)}/{n_fits}, test MRR@20 {mrr:.4f} Recall@20 "
                     f"{recall:.4f} (mean over the folds done)")
    return "; ".join(parts)
