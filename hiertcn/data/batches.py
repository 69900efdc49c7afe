"""The queue-based mini-batch generator (HierTCN paper, section on training efficiency).

B user queues. Each new user's sessions go, in order, to the shortest queue; every
batch pops S sessions from the front of every queue. A queue is one long stream of
users, so the high-level GRU state is carried from batch to batch and reset exactly
where a user changes (`Batch.reset`). Compared with padding every user's whole
history (the flat TCN), a batch holds only B x S sessions, whatever the history length.

`Prefetcher` builds batches on a background thread into a bounded queue, so the
trainer never waits on numpy padding.

`Batch` lives here, with the data that fills it; the model imports it from here.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from hiertcn.data.sessions import Sessions


@dataclass
class Batch:
    """S consecutive sessions of each of B users (queues), as `queue_batches` makes them."""

    items: torch.Tensor  # (B, S, T) long, -1 = padding
    reset: torch.Tensor  # (B, S) bool: a new user starts here, so h restarts from zero
    valid: torch.Tensor  # (B, S) bool: the session exists (queues run dry at the end)

    @property
    def mask(self) -> torch.Tensor:
        return self.items >= 0  # (B, S, T)


def queue_batches(sessions: Sessions, n_queues: int, sessions_per_batch: int,
                  rng: np.random.Generator) -> Iterator[Batch]:
    users = deque(rng.permutation(sessions.n_users).tolist())
    queues = [deque() for _ in range(n_queues)]  # entries: (session index, first of user)
    while users or any(queues):
        while users and min(map(len, queues)) < sessions_per_batch:
            u = users.popleft()
            shortest = min(queues, key=len)
            shortest.extend((s, s == sessions.user_offsets[u]) for s in sessions.user_sessions(u))
        popped = [[q.popleft() for _ in range(min(sessions_per_batch, len(q)))] for q in queues]
        yield _pad(sessions, popped, sessions_per_batch)


def _pad(sessions: Sessions, popped: list[list[tuple[int, bool]]], S: int) -> Batch:
    lengths = sessions.session_lengths()
    T = max(int(lengths[s]) for q in popped for s, _ in q)
    items = np.full((len(popped), S, T), -1, dtype=np.int64)
    reset = np.zeros((len(popped), S), dtype=bool)
    valid = np.zeros((len(popped), S), dtype=bool)
    for b, q in enumerate(popped):
        for j, (s, first) in enumerate(q):
            sess = sessions.session(s)
            items[b, j, :len(sess)] = sess
            reset[b, j], valid[b, j] = first, True
    return Batch(items=torch.from_numpy(items), reset=torch.from_numpy(reset),
                 valid=torch.from_numpy(valid))


class Prefetcher:
    """Iterate `make()` on a daemon thread, at most `depth` items ahead."""

    _DONE = object()

    def __init__(self, make: Callable[[], Iterable], depth: int = 8):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self.waits = 0  # how often the consumer found the queue empty
        self._thread = threading.Thread(target=self._run, args=(make,), daemon=True)
        self._thread.start()

    def _run(self, make):
        try:
            for item in make():
                self._queue.put(item)
        except BaseException as err:  # re-raised in the consumer, never swallowed
            self._error = err
        self._queue.put(self._DONE)

    def __iter__(self):
        while True:
            if self._queue.empty():
                self.waits += 1
            item = self._queue.get()
            if item is self._DONE:
                if self._error is not None:
                    raise self._error
                return
            yield item
