"""The concurrent workload's schedule (pure: no Kafka, no clock): many users replaying
their own real click sequences at once, interleaved, at an offered rate.

    hist = histories(load_events(DATA))
    sched = build(hist, users=10000, rate=500, duration_s=60)
    sched.sends   # [Send(at, key, value, event_id)], by `at` (seconds after the start)

Each user's timeline is their history in its real order with every gap capped at
`max_gap_s` (default 1 h, above the 30 min session gap, so a session end is still a
session end), replayed in a loop (after the last click the user comes back `max_gap_s`
later and starts again), and joined at a random point of that loop: a user "already
there" when the run starts, so the offered load is the same at the start and at the end
of a run (no ramp while users arrive or go quiet).

Two clocks:
- event time (the click's `ts`, what the worker's session logic and sweep see): the
  timeline itself, from `base_ts`: gaps below the cap are the real ones. Capping is what
  keeps every user's event time moving at one speed: with months between visits left
  in, one user's clock would run ahead of the others', and the worker's sweep (its clock
  is the latest event time seen) would close or expire everyone else's sessions;
- wall time (`at`, when to send): event time x one scale for all users, chosen so that
  exactly rate x duration clicks fall in [0, duration] (the first rate x duration of the
  timeline); without a rate, the scale is `time_scale` and the clicks are those that fall
  inside the duration.

More users than the data has: user u is reused as "u#1", "u#2", ..., each with its own
random start point in its loop (so copies are not in step) and its own event ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from stream.records import encode_click

DEFAULT_MAX_GAP_S = 3600.0  # above the 30 min session gap: a session end stays one
DEFAULT_BASE_TS = 1_700_000_000  # event time of the timeline's 0 (2023-11-14)


class Send(NamedTuple):
    at: float  # seconds after the start of sending
    key: bytes  # the user id, as every producer keys clicks
    value: bytes  # click JSON (stream.records.encode_click), ts in event time
    event_id: str


@dataclass(frozen=True)
class Histories:
    """Every user's clicks in their real order, as flat arrays grouped user by user:
    user i's clicks are [starts[i], starts[i + 1])."""
    users: list[str]
    starts: np.ndarray  # (U + 1,) int
    items: np.ndarray  # (E,) object: item ids
    ts: np.ndarray  # (E,) int64: event time, seconds
    rows: np.ndarray  # (E,) object: the data row's event id suffix ("<row>")


def histories(events) -> Histories:
    """From stream.tools.replay.load_events (event-time order, same-second clicks in file
    order): the clicks grouped by user, each user's in that order."""
    clicks = events[events["event"] == "click"]
    order = np.argsort(clicks["user"].to_numpy(dtype=object).astype(str), kind="stable")
    users = clicks["user"].to_numpy(dtype=object)[order]
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    ids = clicks["event_id"].to_numpy(dtype=object)[order]
    return Histories(users=[str(u) for u in users[bounds[:-1]]], starts=bounds,
                     items=clicks["item"].to_numpy(dtype=object)[order],
                     ts=clicks["ts"].to_numpy(dtype=np.int64)[order],
                     rows=np.array([str(e).rsplit(":", 1)[-1] for e in ids], dtype=object))


@dataclass
class Schedule:
    sends: list[Send]
    info: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.info["duration_s"]


@dataclass(frozen=True)
class _Loops:
    """Per source user: position of each click inside one loop (capped gaps, from 0),
    and the loop's period (its span + one capped gap back to the start)."""
    pos: np.ndarray  # (E,) int64
    period: np.ndarray  # (U,) int64


def _loops(h: Histories, max_gap_s: float) -> _Loops:
    gaps = np.diff(h.ts, prepend=h.ts[:1]).astype(np.int64)
    gaps[h.starts[:-1]] = 0  # a user's first click starts their loop
    gaps = np.minimum(np.maximum(gaps, 0), int(max_gap_s))  # late rows never go back
    cum = np.cumsum(gaps)
    pos = cum - np.repeat(cum[h.starts[:-1]], np.diff(h.starts))
    span = pos[h.starts[1:] - 1]
    return _Loops(pos=pos, period=span + int(max_gap_s))


def _copies(h: Histories, users: int, loops: _Loops, rng) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(source user index, id, start phase in the loop) of each simulated user."""
    n = len(h.users)
    src = np.arange(users) % n
    ids = [h.users[s] if j < n else f"{h.users[s]}#{j // n}" for j, s in enumerate(src)]
    phase = (rng.random(users) * loops.period[src]).astype(np.int64)
    return src, ids, phase


def _window(h: Histories, loops: _Loops, src, phase, horizon: int):
    """Every click of every simulated user with timeline position in [0, horizon]:
    (position, user index, flat click index, lap), in no particular order."""
    pos, user, click, lap = [], [], [], []
    for j, (s, ph) in enumerate(zip(src, phase)):
        a, b = h.starts[s], h.starts[s + 1]
        p, period = loops.pos[a:b], loops.period[s]
        for k in range(int((horizon + ph) // period) + 1):
            v = p + (k * period - ph)
            lo, hi = np.searchsorted(v, 0, "left"), np.searchsorted(v, horizon, "right")
            if hi > lo:
                pos.append(v[lo:hi])
                user.append(np.full(hi - lo, j))
                click.append(np.arange(a + lo, a + hi))
                lap.append(np.full(hi - lo, k))
    if not pos:
        return (np.zeros(0, np.int64),) * 4
    return tuple(np.concatenate(x) for x in (pos, user, click, lap))


def build(h: Histories, users: int, rate: float | None, duration_s: float, *,
          max_gap_s: float = DEFAULT_MAX_GAP_S, time_scale: float | None = None,
          seed: int = 0, base_ts: int = DEFAULT_BASE_TS) -> Schedule:
    """The schedule of `users` simulated users for `duration_s` wall seconds.

    `rate` (events/s): exactly round(rate x duration_s) clicks, the wall clock scaled to
    fit them into the duration; None: the wall clock is event time x `time_scale`."""
    if users < 1 or duration_s <= 0 or max_gap_s < 1:
        raise ValueError("users >= 1, duration_s > 0 and max_gap_s >= 1 are needed")
    if rate is None and not time_scale:
        raise ValueError("give a rate or a time_scale")
    rng = np.random.default_rng(seed)
    loops = _loops(h, max_gap_s)
    src, ids, phase = _copies(h, users, loops, rng)
    counts = np.diff(h.starts)[src]
    per_s = float(np.sum(counts / loops.period[src]))  # clicks per timeline second
    if rate is not None:
        want = max(1, int(round(rate * duration_s)))
        horizon = int(1.5 * want / per_s) + 1
        while True:
            pos, user, click, lap = _window(h, loops, src, phase, horizon)
            if len(pos) >= want:
                break
            horizon *= 2
    else:
        horizon = int(duration_s / time_scale)
        pos, user, click, lap = _window(h, loops, src, phase, horizon)
        want = len(pos)
    # by timeline position; a user's ties in their own order (lap, then click)
    order = np.lexsort((click, lap, user, pos))[:want]
    pos, user, click, lap = pos[order], user[order], click[order], lap[order]
    if rate is not None:
        last = int(pos[-1]) if len(pos) else 0
        scale = duration_s / last if last > 0 else 0.0  # wall s per event-time s
    else:
        scale = float(time_scale)
    sends = []
    for v, j, c, k in zip(pos.tolist(), user.tolist(), click.tolist(), lap.tolist()):
        uid = ids[j]
        eid = f"{uid}:{h.rows[c]}" + (f"~{k}" if k else "")
        sends.append(Send(v * scale, uid.encode(),
                          encode_click(uid, h.items[c], base_ts + v, "click", eid), eid))
    active = len(set(user.tolist()))
    info = {"users": users, "source_users": len(h.users),
            "reused_users": max(0, users - len(h.users)),
            "users_with_clicks_in_run": active, "events": len(sends),
            "duration_s": duration_s,
            "offered_events_per_s": round(len(sends) / duration_s, 1),
            "max_gap_s": max_gap_s,
            "wall_s_per_event_s": scale,
            "event_time_span_s": int(pos[-1]) if len(pos) else 0,
            "laps_beyond_first": int(np.sum(lap > 0)), "seed": seed, "base_ts": base_ts}
    if users > len(h.users):
        info["note"] = (f"{users} users from {len(h.users)} in the data: each reused as "
                        f"'<uid>#<k>' with its own start point in its replay loop")
    return Schedule(sends, info)
