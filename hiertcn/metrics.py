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


def event_values(r: np.ndarray) -> dict[str, np.ndarray]:
    """Per-event values of every metric for ranks (N,) (1 = best): a hit for Recall@K,
    1/rank within K for MRR@K, the DCG gain for NDCG@K (one relevant item: DCG =
    1/log2(1 + rank), ideal DCG = 1). Their means are `metrics_from_ranks`; their
    per-user sums are what hiertcn.stats bootstraps."""
    r = np.asarray(r, dtype=np.float64)
    out = {}
    for k in CUTOFFS_RECALL:
        out[f"recall@{k}"] = (r <= k).astype(np.float64)
    for k in CUTOFFS_MRR:
        out[f"mrr@{k}"] = np.where(r <= k, 1.0 / r, 0.0)
    for k in CUTOFFS_NDCG:
        out[f"ndcg@{k}"] = np.where(r <= k, 1.0 / np.log2(1.0 + r), 0.0)
    return out


def metrics_from_ranks(r: np.ndarray) -> dict[str, float]:
    if len(r) == 0:
        raise ValueError("no events to evaluate")
    return {name: float(np.mean(v)) for name, v in event_values(r).items()}
