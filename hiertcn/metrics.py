"""Ranking metrics over the full catalogue.

Tie policy (pessimistic): the target's rank is 1 + the number of *other* items whose
score is >= the target's score. A model that scores everything equal therefore ranks
every target last, and ties never flatter a model (popularity and kNN baselines have
many tied zero scores).
"""

from __future__ import annotations

import numpy as np

CUTOFFS_RECALL = (5, 10, 20)
CUTOFFS_MRR = (10, 20)
CUTOFFS_NDCG = (20,)


def ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """scores (N, n_items), targets (N,) item indices -> (N,) int ranks, 1 = best."""
    target_scores = scores[np.arange(len(targets)), targets][:, None]  # (N, 1)
    return (scores >= target_scores).sum(axis=1)  # counts the target itself once


def metrics_from_ranks(r: np.ndarray) -> dict[str, float]:
    r = np.asarray(r, dtype=np.float64)
    if len(r) == 0:
        raise ValueError("no events to evaluate")
    out = {}
    for k in CUTOFFS_RECALL:
        out[f"recall@{k}"] = float(np.mean(r <= k))
    for k in CUTOFFS_MRR:
        out[f"mrr@{k}"] = float(np.mean(np.where(r <= k, 1.0 / r, 0.0)))
    for k in CUTOFFS_NDCG:
        # one relevant item: DCG = 1/log2(1 + rank), ideal DCG = 1
        out[f"ndcg@{k}"] = float(np.mean(np.where(r <= k, 1.0 / np.log2(1.0 + r), 0.0)))
    return out
