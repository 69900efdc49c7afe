"""What the history costs a row: bytes per user at a bound of 50 and 500 events, from
real histories (the test users' first halves, as the rebuild arm's rows hold them)."""

from __future__ import annotations

import numpy as np

from stream.worker import history, rows
from stream.worker.recommend import UserState


def row_growth(table: dict[str, bytes], bounds=(50, 500)) -> dict:
    """Per bound, the mean history bytes of the users whose rows hold that many events
    once the bound applies, and the row without its history, for scale."""
    states = [UserState.from_row(row) for row in table.values()]
    full = [history.sessions(st.history) for st in states]
    out = {}
    for bound in bounds:
        # the same histories kept to this bound, by the appends the worker makes
        blobs = [history.encode(h, bound) for h in full]
        at_bound = [len(b) for b in blobs if history.count(b) == bound]
        out[f"history_bytes_at_{bound}_events"] = (round(float(np.mean(at_bound)), 1)
                                                   if at_bound else None)
        out[f"users_with_{bound}_events"] = len(at_bound)
    bare = [len(row) - len(st.history) - rows.HISTORY_LEN.size
            for row, st in zip(table.values(), states)]
    out["row_bytes_without_history"] = round(float(np.mean(bare)), 1)
    out["bytes_per_event"] = (round(out["history_bytes_at_500_events"] / 500, 2)
                              if out.get("history_bytes_at_500_events") else None)
    return out
