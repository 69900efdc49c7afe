"""cProfiles of process_batch (phase 1 of the stream benchmark): the MovieLens batches
(what limits the worker) and synthetic ones, written to stream_profile.txt beside the
results file, with a summary (top functions, shares of the pieces the notes talk about)
for the results file."""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from pathlib import Path

from benchmarks.streambench.common import BATCH


def write_profiles(hp, batches: list, prepared: tuple, movielens: dict, path: Path) -> dict:
    """Profile up to 3 MovieLens batches (state carried over) and 5 synthetic batches of
    `prepared` (session length 10); the report goes to `path`, the summary
    is returned as {"movielens": ..., "synthetic": ...}."""
    sections, tops = [], {}
    n_prof = min(len(batches), 3)
    table: dict = {}
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    for events in batches[:n_prof]:
        prof.enable()
        result = hp.process(events, table)
        prof.disable()
        hp.write(table, result)
    wall = time.perf_counter() - t0
    text, tops["movielens"] = profile_report(
        prof, n_prof, wall, f"the MovieLens stream in event-time order, {n_prof} batches of "
        f"{BATCH} events ({movielens['mean_users_per_batch']} users, "
        f"{movielens['mean_model_calls_per_batch']} model calls per batch on average)")
    sections.append(text)
    users, table, last, ts = prepared
    synth = [hp.events_for(users, last, ts)[0] for _ in range(5)]
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for events in synth:
        hp.process(events, table)
    prof.disable()
    wall = time.perf_counter() - t0
    text, tops["synthetic"] = profile_report(
        prof, len(synth), wall, f"synthetic batches of {BATCH} distinct users at session "
        "length 10 (one model round per batch)")
    sections.append(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "cProfile of stream.worker.recommend.process_batch (state load from the user_state "
        "row, StreamModel step, faiss top-20 over the MovieLens catalogue), full-size "
        f"HierTCN, torch threads {hp.default_threads}.\n\n" + "\n\n".join(sections))
    return tops


def profile_report(prof: cProfile.Profile, n_batches: int, wall: float,
                   what: str) -> tuple[str, list]:
    out = io.StringIO()
    out.write(f"######## {what}\nwall time under the profiler: {wall:.3f} s "
              f"({wall / n_batches * 1000:.2f} ms/batch, "
              f"{wall / n_batches / BATCH * 1000:.3f} ms/event)\n\n"
              "== top 15 by cumulative time ==\n")
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(15)
    out.write("== top 15 by own (total) time ==\n")
    stats.sort_stats("tottime").print_stats(15)
    # the summary: the 8 biggest functions by cumulative time below process_batch
    raw = stats.stats  # (file, line, func) -> (cc, nc, tt, ct, callers)
    total = max(ct for (_, _, _, ct, _) in raw.values())
    rows = sorted(((ct, tt, nc, func, Path(file).name, line)
                   for (file, line, func), (_, nc, tt, ct, _) in raw.items()), reverse=True)
    top = [f"{func} ({file}:{line}): {ct / n_batches * 1000:.2f} ms/batch cumulative "
           f"({ct / total:.0%}), own {tt / n_batches * 1000:.2f} ms, "
           f"{nc / n_batches:.0f} calls/batch"
           for ct, tt, nc, func, file, line in rows[:9] if func != "<module>"]
    # shares of process_batch's time of the pieces the notes talk about
    pieces = {"torch.einsum (CausalConv1d.step)": lambda f, fn: fn == "<built-in method torch.einsum>",
              "torch linear (nn.Linear)": lambda f, fn: fn == "<built-in method torch._C._nn.linear>",
              "torch.cat": lambda f, fn: fn == "<built-in method torch.cat>",
              "faiss search (StreamModel.top_k)": lambda f, fn: fn == "top_k",
              "StreamModel.unpack": lambda f, fn: fn == "unpack" and f.endswith("inference.py"),
              "StreamModel.pack": lambda f, fn: fn == "pack" and f.endswith("inference.py"),
              # the key of earlier results; now the agent's load: one row unpacked
              "UserState.from_rows": lambda f, fn: fn == "from_row"}
    shares = {label: round(sum(ct for (f, _, fn), (_, _, _, ct, _) in raw.items()
                               if match(f, fn)) / total, 3)
              for label, match in pieces.items()}
    return out.getvalue(), {"top": top, "share_of_process_batch": shares}
