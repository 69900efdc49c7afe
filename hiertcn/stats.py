"""Per-user metrics and the paired bootstrap of a relative lift over test users.

A model's metric is pooled over test events (as `hiertcn.evaluate.evaluate` reports
it): for user u with E_u scored events, `sums[u]` adds up the per-event values
(a hit for Recall@K, 1/rank within K for MRR@K, the DCG gain for NDCG@K), and the
metric is sum(sums) / sum(E). Events of one user are not independent, so the unit of
resampling is the user: each bootstrap replicate draws n test users with replacement
and recomputes both models' pooled metrics on the same draw (paired). For the ratio
of two models on the same users the event counts cancel:

    lift = m_a / m_b - 1 = sum(a_sums[draw]) / sum(b_sums[draw]) - 1.

`lift_ci` reports the mean of the replicates' lifts and the 2.5 / 97.5 percentiles.
Seeded; one vectorised gather per chunk of replicates.
"""

from __future__ import annotations

import numpy as np

from hiertcn.metrics import CUTOFFS_MRR, CUTOFFS_NDCG, CUTOFFS_RECALL, event_values

METRICS = (*(f"recall@{k}" for k in CUTOFFS_RECALL), *(f"mrr@{k}" for k in CUTOFFS_MRR),
           *(f"ndcg@{k}" for k in CUTOFFS_NDCG))
_CHUNK_CELLS = 1 << 22  # replicates x users gathered at once: ~32 MB of float64


def user_sums(ranks_by_user: list[np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({metric: (n_users,) sum of per-event values}, (n_users,) events) from each
    user's ranks, users in the given order."""
    counts = np.array([len(r) for r in ranks_by_user], dtype=np.int64)
    if len(counts) == 0 or counts.sum() == 0:
        raise ValueError("no events to evaluate")
    user = np.repeat(np.arange(len(counts)), counts)
    values = event_values(np.concatenate(ranks_by_user))
    return {m: np.bincount(user, weights=v, minlength=len(counts)) for m, v in values.items()}, \
        counts


def pooled(sums: dict[str, np.ndarray], counts: np.ndarray) -> dict[str, float]:
    """Each metric's mean over all events of all users."""
    total = float(np.sum(counts))
    return {m: float(np.sum(s)) / total for m, s in sums.items()}


def lift_ci(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> dict:
    """Relative lift of model a over model b, both (n_users,) per-user sums of one
    metric on the same users in the same order: {"mean": mean over replicates,
    "ci95": [2.5th, 97.5th percentile]}; None values where b's total is 0 (no lift
    is defined against a model that scored nothing)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired per-user values of equal length expected, got "
                         f"{a.shape} and {b.shape}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    lifts = bootstrap_lifts(a, b, n_boot, seed)
    lifts = lifts[np.isfinite(lifts)]
    if len(lifts) == 0:
        return {"mean": None, "ci95": [None, None]}
    lo, hi = np.percentile(lifts, [2.5, 97.5])
    return {"mean": float(np.mean(lifts)), "ci95": [float(lo), float(hi)]}


def bootstrap_lifts(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot,) lifts sum(a[draw]) / sum(b[draw]) - 1, each draw n users with
    replacement; inf or nan where a draw's b sums to 0."""
    rng = np.random.default_rng(seed)
    n = len(a)
    step = max(1, _CHUNK_CELLS // n)
    out = np.empty(n_boot)
    with np.errstate(divide="ignore", invalid="ignore"):
        for lo in range(0, n_boot, step):
            draw = rng.integers(0, n, size=(min(step, n_boot - lo), n))  # (R, n) users
            out[lo:lo + len(draw)] = a[draw].sum(axis=1) / b[draw].sum(axis=1) - 1.0
    return out
