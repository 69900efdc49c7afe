"""The queue-based mini-batch generator (HierTCN paper, section on training efficiency).

B user queues. Users join in passes, each pass a fresh random order of all users;
each user's sessions go, in order, to the shortest queue whenever a queue holds fewer
than S. Every batch pops S sessions from the front of every queue. A queue is one long
stream of users, so the high-level GRU state is carried from batch to batch and reset
exactly where a user changes (`Batch.reset`). Compared with padding every user's whole
history (the flat TCN), a batch holds only B x S sessions, whatever the history length.

Balance: the stream never drains. As in the authors' loader (an "epoch" is a fixed
number of batches, the state carried over), the queues are refilled from the next pass
when one pass runs out, so every batch is B x S sessions wide and no epoch ends with
updates on one long-history user alone (the shipped MovieLens has a user with 488 of
the 3,934 training sessions: at B = 32, S = 10 that user is 49 batches, the other users
fill the other queues for about 12, so a draining batcher ended each epoch with ~37
updates on that one user). `Endless` tells the trainer to cut the stream into epochs of
ceil(sessions / (B x S)) batches, every session once per epoch on average, and to keep
the carried state across the cut.

Truncated backprop (`context`): each batch can also carry the P session slots of every
queue just before its own (`Batch.context`); the model re-runs its GRU over them from
the state carried P slots back, so the gradient of every session's loss reaches at
least P earlier sessions, while the loss and the TCN stay on the batch's own B x S.

`Prefetcher` builds batches on a background thread into a bounded queue, so the
trainer never waits on numpy padding.

`Batch` lives here, with the data that fills it; the model imports it from here.
"""

from __future__ import annotations

import math
import queue
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from hiertcn.data.sessions import Sessions

Slot = tuple[int, bool] | None  # (session index, first of its user), None: an empty slot


@dataclass
class Batch:
    """S consecutive sessions of each of B users (queues), as `queue_batches` makes them."""

    items: torch.Tensor  # (B, S, T) long, -1 = padding
    reset: torch.Tensor  # (B, S) bool: a new user starts here, so h restarts from zero
    valid: torch.Tensor  # (B, S) bool: the session exists
    # the P slots of each queue before these (B, P, T'): GRU only, no loss; None: P = 0
    context: Batch | None = None

    @property
    def mask(self) -> torch.Tensor:
        return self.items >= 0  # (B, S, T)


@dataclass
class Endless:
    """A batch stream that runs across epochs: `per_epoch` batches make an epoch, and
    the carried state goes on across the cut (`hiertcn.train.fit`)."""

    batches: Iterator[Batch]
    per_epoch: int

    def __iter__(self):
        return self.batches


def epoch_batches(sessions: Sessions, n_queues: int, sessions_per_batch: int) -> int:
    """Batches per epoch: every training session once, on average."""
    return math.ceil(sessions.n_sessions / (n_queues * sessions_per_batch))


def queue_batches(sessions: Sessions, n_queues: int, sessions_per_batch: int,
                  rng: np.random.Generator, context: int = 0) -> Iterator[Batch]:
    """Endless full-width batches (see the module docstring); `context` = P. Nothing
    when there are no sessions."""
    if sessions.n_sessions == 0:
        return
    S = sessions_per_batch
    users = _passes(sessions.n_users, rng)
    queues: list[deque[Slot]] = [deque() for _ in range(n_queues)]
    history = [deque([None] * context, maxlen=context) for _ in range(n_queues)]
    while True:
        while min(map(len, queues)) < S:
            u = next(users)
            shortest = min(queues, key=len)
            shortest.extend((s, s == sessions.user_offsets[u]) for s in sessions.user_sessions(u))
        popped = [[q.popleft() for _ in range(S)] for q in queues]
        ctx = _pad(sessions, [list(h) for h in history], context) if context else None
        for h, slots in zip(history, popped):
            h.extend(slots)
        yield _pad(sessions, popped, S, ctx)


def user_batch(sessions: Sessions, u: int) -> Batch:
    """All of user u's sessions as one batch of one queue (evaluation)."""
    ss = sessions.user_sessions(u)
    return _pad(sessions, [[(s, s == ss.start) for s in ss]], len(ss))


def _passes(n_users: int, rng: np.random.Generator) -> Iterator[int]:
    while True:
        yield from rng.permutation(n_users).tolist()


def _pad(sessions: Sessions, popped: list[list[Slot]], S: int,
         context: Batch | None = None) -> Batch:
    lengths = sessions.session_lengths()
    T = max([int(lengths[slot[0]]) for q in popped for slot in q if slot], default=1)
    items = np.full((len(popped), S, T), -1, dtype=np.int64)
    reset = np.zeros((len(popped), S), dtype=bool)
    valid = np.zeros((len(popped), S), dtype=bool)
    for b, q in enumerate(popped):
        for j, slot in enumerate(q):
            if slot is None:
                continue
            s, first = slot
            sess = sessions.session(s)
            items[b, j, :len(sess)] = sess
            reset[b, j], valid[b, j] = first, True
    return Batch(items=torch.from_numpy(items), reset=torch.from_numpy(reset),
                 valid=torch.from_numpy(valid), context=context)


class Prefetcher:
    """Iterate `make()` on a daemon thread, at most `depth` items ahead. `close()` ends
    the thread early (an endless stream never ends it)."""

    _DONE = object()

    def __init__(self, make: Callable[[], Iterable], depth: int = 8):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self.waits = 0  # how often the consumer found the queue empty
        self._thread = threading.Thread(target=self._run, args=(make,), daemon=True)
        self._thread.start()

    def _run(self, make):
        try:
            for item in make():
                if self._stop.is_set():
                    break
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

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a put on a full queue
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
