"""The model export, loaded once: when partitions are first assigned (so /ready/ waits
for it), or at the first batch, whichever comes first."""

from __future__ import annotations

import logging

from hiertcn.accel import describe
from hiertcn.inference import StreamModel
from stream.worker import metrics

log = logging.getLogger(__name__)


class ModelHolder:
    """Loads the export once, at the first batch (or earlier via `get`)."""

    def __init__(self, export_dir, threads: int, device: str = "auto"):
        self.export_dir = export_dir
        self.threads = threads
        self.device = device
        self.model: StreamModel | None = None

    def get(self) -> StreamModel:
        if self.model is None:
            # per-event model calls are small: extra threads only hand work back and
            # forth (measured 5x slower with 2 threads on 2 cores)
            import faiss
            import torch
            torch.set_num_threads(self.threads)
            faiss.omp_set_num_threads(self.threads)
            self.model = StreamModel.load(self.export_dir, self.device)
            log.info("loaded model %s from %s (%d items) on %s, top-K by %s",
                     self.model.version, self.export_dir, len(self.model.item_ids),
                     describe(self.model.device), self.model.search_backend)
            metrics.MODEL_INFO.info({"version": self.model.version})
        return self.model
