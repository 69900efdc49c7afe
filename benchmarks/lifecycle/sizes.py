"""What the history costs a row: bytes per user at 50 and 500 events, from real
MovieLens clicks (the test users' first halves with their session boundaries, as the
rebuild arm's rows hold them, pooled and cut into histories of exactly that many
events: no test user has 500 clicks before the rollout)."""

from __future__ import annotations

import numpy as np

from stream.worker import history, rows
from stream.worker.recommend import UserState


def row_growth(table: dict[str, bytes], bounds=(50, 500)) -> dict:
    """Per bound, the mean bytes of a history of that many events; the mean row
    without its history, for scale."""
    states = [UserState.from_row(row) for row in table.values()]
    pooled = [s for st in states for s in history.sessions(st.history) if s]
    out = {}
    for bound in bounds:
        blobs = [history.encode(h, bound) for h in _cut(pooled, bound)]
        out[f"history_bytes_at_{bound}_events"] = round(float(np.mean(list(map(len, blobs)))), 1)
        out[f"histories_measured_at_{bound}"] = len(blobs)
    bare = [len(row) - len(st.history) - rows.HISTORY_LEN.size
            for row, st in zip(table.values(), states)]
    out["row_bytes_without_history"] = round(float(np.mean(bare)), 1)
    out["bytes_per_event"] = round(out[f"history_bytes_at_{bounds[-1]}_events"] / bounds[-1], 2)
    return out


def _cut(sessions: list[list[str]], size: int) -> list[list[list[str]]]:
    """Consecutive whole sessions (the last one cut) of exactly `size` clicks each."""
    out, current, n = [], [], 0
    for session in sessions:
        take = session[:size - n]
        current.append(take)
        n += len(take)
        if n == size:
            out.append(current)
            current, n = [], 0
    return out
