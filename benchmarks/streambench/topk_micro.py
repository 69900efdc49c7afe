"""Micro-benchmark of the top-K lists of one 200-event batch: the per-item Python loop
that `StreamModel.top_k` used to run (`loop_rows`, kept here as the reference) against
the vectorised `ranked_rows`, and the recommendation encoding of both forms. Both
implementations run in the same process, alternating, on the same faiss answers;
the figures are medians over many reps.

    python -m benchmarks.streambench.topk_micro [--export DIR] [--reps 200]

Without --export: a random IndexFlatIP of the full-size model's shape (3,496 items,
dim 128). Exclude sets of size s per row: half from the row's own top 2s results (a
session's clicks sit near the user's embedding), half anywhere in the catalogue.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import faiss
import numpy as np

from hiertcn.inference import Ranked, ranked_rows
from stream.records import encode_recommendation

BATCH, K, DIM, N_ITEMS = 200, 20, 128, 3496


def loop_rows(idx, scores, k, exclude, item_ids) -> list[list[tuple[str, float]]]:
    """The former `StreamModel.top_k` after its search, verbatim."""
    out = []
    for row in range(len(idx)):
        skip = exclude[row] if exclude else ()
        hits = [(item_ids[i], float(s)) for i, s in zip(idx[row], scores[row])
                if i >= 0 and i not in skip]
        out.append(hits[:k])
    return out


def catalogue(export: str | None, rng) -> tuple[faiss.Index, list[str]]:
    if export:
        index = faiss.read_index(str(Path(export) / "items.faiss"))
        return index, json.loads((Path(export) / "item_ids.json").read_text())
    index = faiss.IndexFlatIP(DIM)
    index.add(rng.standard_normal((N_ITEMS, DIM)).astype(np.float32))
    return index, [str(i * 7 + 1) for i in range(N_ITEMS)]


def excludes(idx_full: np.ndarray, size: int, ntotal: int, rng) -> list[frozenset]:
    out = []
    for row in idx_full:
        near = rng.choice(row[:max(2 * size, 1)], size // 2, replace=False)
        far = rng.choice(ntotal, size - len(near), replace=False)
        picked = set(near.tolist()) | set(far.tolist())
        while len(picked) < size:  # a far pick that was also near
            picked.add(int(rng.integers(ntotal)))
        out.append(frozenset(picked))
    return out


def elapsed_ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def encoder(rows):
    return lambda: [encode_recommendation("u42", "u42:17", 1.5e9, 3, r, "m", 1.25)
                    for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", help="a model export dir (items.faiss, item_ids.json)")
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    index, item_ids = catalogue(args.export, rng)
    ids = np.empty(len(item_ids), dtype=object)
    ids[:] = item_ids
    emb = rng.standard_normal((BATCH, index.d)).astype(np.float32)
    _, ranking = index.search(emb, 200)
    print(f"index {type(index).__name__} ntotal={index.ntotal} d={index.d}, batch {BATCH}, "
          f"k={K}, reps={args.reps}, faiss threads {faiss.omp_get_max_threads()}, "
          f"load {os.getloadavg()[0]:.2f}")
    for size in (0, 10, 50):
        exclude = excludes(ranking, size, index.ntotal, rng)
        m = min(K + size, index.ntotal)
        scores, idx = index.search(emb, m)
        old = loop_rows(idx, scores, K, exclude, item_ids)
        new = ranked_rows(idx, scores, K, exclude, ids, index.ntotal)
        assert [list(r) for r in new] == old  # same items, order, float scores
        steps = {"search": lambda: index.search(emb, m),
                 "build_old": lambda: loop_rows(idx, scores, K, exclude, item_ids),
                 "build_new": lambda: ranked_rows(idx, scores, K, exclude, ids, index.ntotal),
                 "encode_old": encoder(old), "encode_new": encoder(new)}
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.reps):  # alternating, so drift and load hit both alike
            for name, fn in steps.items():
                times[name].append(elapsed_ms(fn))
        med = {name: statistics.median(v) for name, v in times.items()}
        whole = (med["search"] + med["build_old"]) / (med["search"] + med["build_new"])
        print(f"exclude {size:>2} (search k={m}): "
              + ", ".join(f"{name} {v:.3f} ms" for name, v in med.items())
              + f" | build old/new {med['build_old'] / med['build_new']:.1f}x"
              + f", search+build old/new {whole:.2f}x"
              + f", encode old/new {med['encode_old'] / med['encode_new']:.2f}x")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
