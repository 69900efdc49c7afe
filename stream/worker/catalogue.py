"""The live catalogue: the `items` topic as this worker has read it, and bringing a
loaded model up to date with it.

The mirror (item id -> latest vector, or None once retired) is rebuilt from the
compacted topic at every start, so it is not per-user state and needs no table. Each
change gets a sequence number; a model remembers the number it was brought up to, so
a model loaded later (a swap) gets the whole catalogue and a model already serving
only what is new.

Threads: `record` and `update` of a serving model run on the event loop, between
micro-batches; `update` of a model being loaded runs in the loader thread, on a model
no batch uses yet. The lock guards the mirror only, never a model.

A model whose item table was trained (not frozen) refuses item vectors: they come
from another space than its own (hiertcn/live_items.py). Counted per change as
`refused`, logged once per model version.
"""

from __future__ import annotations

import logging
import threading
import weakref

import numpy as np

from hiertcn.inference import StreamModel
from hiertcn.live_items import accepts_item_vectors, retire_items, upsert_items
from stream.worker import metrics

log = logging.getLogger(__name__)


class Catalogue:
    def __init__(self):
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[int, np.ndarray | None]] = {}  # id -> (seq, vector)
        self._seq = 0
        self._applied: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> seq
        self._refused_logged: set[str] = set()

    def __len__(self) -> int:
        return len(self._latest)

    def record(self, updates: list[tuple[str, np.ndarray | None]]) -> None:
        with self._lock:
            for item, vector in updates:
                self._seq += 1
                self._latest[item] = (self._seq, vector)

    def update(self, model: StreamModel) -> None:
        """Apply to `model` every change it has not seen."""
        with self._lock:
            since = self._applied.get(model, 0)
            seq = self._seq
            changes = [(item, v) for item, (s, v) in self._latest.items() if s > since]
        if changes:
            self._apply(model, changes)
        with self._lock:
            self._applied[model] = seq

    def _apply(self, model: StreamModel, changes) -> None:
        if not accepts_item_vectors(model):
            metrics.ITEM_UPDATES.labels(outcome="refused").inc(len(changes))
            if model.version not in self._refused_logged:
                self._refused_logged.add(model.version)
                log.warning("model %s trained its own item table: item vectors from the "
                            "items topic are refused for it (%d so far); live items need "
                            "a model trained with --item-vectors", model.version, len(changes))
            return
        retired = [item for item, v in changes if v is None]
        dim = model.model.config.item_dim
        fits = [(item, v) for item, v in changes if v is not None and v.shape == (dim,)]
        wrong = len(changes) - len(retired) - len(fits)
        if wrong:
            metrics.ITEM_UPDATES.labels(outcome="wrong_dim").inc(wrong)
            log.warning("%d item vectors not of the model's %d dims: skipped", wrong, dim)
        if retired:
            metrics.ITEM_UPDATES.labels(outcome="retired").inc(retire_items(model, retired))
        if fits:
            new = upsert_items(model, [item for item, _ in fits], np.stack([v for _, v in fits]))
            metrics.ITEM_UPDATES.labels(outcome="added").inc(new)
            metrics.ITEM_UPDATES.labels(outcome="updated").inc(len(fits) - new)
