"""`python -m benchmarks.lifecycle.hot_cost`: the hot path's per-event cost in its
quickest form (benchmarks/streambench/hot_path.py's synthetic batches at session
lengths 1/10/50 and a few MovieLens stream batches, no Kafka, no profiles), to compare
the worker before and after a change to its rows; prints one JSON line."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from benchmarks.streambench.common import BATCH, SESSION_LENS, build_export, load_messages
from benchmarks.streambench.hot_path import HotPath, movielens_batches, time_session_lengths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.lifecycle.hot_cost",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="timed batches per session length")
    ap.add_argument("--stream-batches", type=int, default=3,
                    help="200-event MovieLens batches timed")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hot-cost-"))
    try:
        hp = HotPath(build_export(work))
        prepared = {n: hp.prepare(n) for n in SESSION_LENS}
        times = time_session_lengths(hp, prepared, args.reps)
        stream, _ = movielens_batches(hp, load_messages(), args.stream_batches)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per_event = {str(n): round(statistics.median(times[str(n)]) / BATCH * 1000, 4)
                 for n in SESSION_LENS}
    print(json.dumps({"per_event_ms_by_session_len": per_event,
                      "movielens_ms_per_event": stream["ms_per_event"],
                      "movielens_ms_per_event_one_thread": stream["ms_per_event_one_thread"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
