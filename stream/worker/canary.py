"""Canary routing: which loaded model serves which user, and one batch split by model.

A user is on the candidate when a stable hash of the user id falls below the share:
`blake2b(user id, 8 bytes) mod 10,000 < share * 10,000`. Stable: the same user meets
the same model on every event, on every worker and after every restart (Python's
`hash` is salted per process; blake2b is not), so a user's state is written by one
version for as long as the share stands, and raising the share only moves users from
the current model to the candidate (a user below 5% is below 10%). The share has a
resolution of 1/10,000.

The batch is split by user before the pure step (stream/worker/recommend.py), which
then runs once per model with that model's users only: the step knows nothing of
canaries, and a user's events stay in order within its group. `merge` puts the
results back into one `BatchResult` for the agent to write and publish.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from hashlib import blake2b

from hiertcn.inference import StreamModel
from stream.worker.recommend import BatchResult, Incoming

BUCKETS = 10_000


def bucket(user_id: str) -> int:
    """The user's bucket in [0, BUCKETS), the same in every process."""
    digest = blake2b(user_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def on_candidate(user_id: str, share: float) -> bool:
    return bucket(user_id) < round(share * BUCKETS)


@dataclass(frozen=True)
class Route:
    """The models a batch is served by: a snapshot, taken once per batch."""
    current: StreamModel
    candidate: StreamModel | None = None
    share: float = 0.0

    def split(self, events: list[Incoming]) -> list[tuple[StreamModel, list[Incoming]]]:
        """[(model, its users' events in batch order)], current first; a model with
        no user in the batch is left out."""
        if self.candidate is None or self.share <= 0.0:
            return [(self.current, events)]
        cut = round(self.share * BUCKETS)
        seen: dict[str, bool] = {}
        groups: tuple[list, list] = ([], [])
        for ev in events:
            to_candidate = seen.get(ev.user_id)
            if to_candidate is None:
                to_candidate = seen[ev.user_id] = bucket(ev.user_id) < cut
            groups[to_candidate].append(ev)
        return [(m, evs) for m, evs in zip((self.current, self.candidate), groups) if evs]


def merge(results: list[BatchResult]) -> BatchResult:
    """One result from the per-model ones: users are disjoint, so states and
    expiries just join; outputs keep each group's order (so each user's), their
    embedding rows moved past the groups before."""
    if len(results) == 1:
        return results[0]
    merged = BatchResult({}, [], [], Counter())
    for part in results:
        for o in part.outputs:
            o.embedding_row += len(merged.embeddings)
        merged.states.update(part.states)
        merged.outputs += part.outputs
        merged.embeddings += list(part.embeddings)
        merged.counts.update(part.counts)
        merged.top_k_s += part.top_k_s
        merged.expired |= part.expired
        merged.rejected += part.rejected
    return merged
