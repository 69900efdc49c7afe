"""The models the worker serves, and how they change while it runs.

At start (when partitions are first assigned, so /ready/ waits for it; or at the first
batch) the holder reads the control topics to their end (stream/worker/feeds.py): the
deployment in force, if one was ever published, names the current model (and a
candidate on canary); otherwise the worker serves `export_dir`. Then it follows them.

Why a compacted `models` topic and not a pointer file watched in the export folder:
the topic reaches every worker of the group at once, wherever it runs (a file is seen
by the processes of one host, or of one shared volume with its own caching); its one
partition orders the announcements, so every worker ends on the same deployment; and
compaction keeps the latest one for ever, so a worker that starts or restarts later
serves what the others serve, with no state of its own. The export itself still lives
in a folder every worker can read; the topic says which one.

A new deployment is loaded in the loader thread (torch and faiss reads take seconds:
never on the event loop), checked (files, shapes, one step and one search), brought up
to date with the live catalogue, and only then installed, by a callback on the event
loop. The agent's batch work is synchronous on that loop (stream/worker/agents.py), so
the install falls between two micro-batches, never inside one: each batch is served
by the models of one `Route` snapshot. A broken export is refused with one log line
and `hiertcn_model_load_failures_total`; the models serving keep serving. A withdrawn
deployment (its tombstone, `hiertcn-stream models withdraw`) brings `export_dir` back.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hiertcn.accel import describe
from hiertcn.inference import BatchState, StreamModel
from hiertcn.live_items import accepts_item_vectors, make_live
from stream.config import StreamConfig
from stream.records import Deployment
from stream.worker import metrics, recommend
from stream.worker.canary import Route
from stream.worker.catalogue import Catalogue
from stream.worker.feeds import ControlFeed

log = logging.getLogger(__name__)

EXPORT_FILES = ("meta.json", "model.pt", "items.faiss", "item_ids.json")  # what load reads


class ModelHolder:
    def __init__(self, config: StreamConfig):
        self.config = config
        self.model: StreamModel | None = None  # the current model: every user off canary
        self.candidate: StreamModel | None = None
        self.share = 0.0
        self.catalogue = Catalogue()
        self._prepared: dict[str, StreamModel] = {}  # loader thread's: version -> model
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="model-loader")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._feed: ControlFeed | None = None

    def get(self) -> StreamModel:
        """The current model; the first call loads the deployment in force (blocking)."""
        if self.model is None:
            self._start()
        return self.model

    def route(self) -> Route:
        """The models of the next batch: one snapshot, taken between batches."""
        self.get()
        return Route(self.model, self.candidate, self.share)

    # ------------------------------------------------------------------ start

    def _start(self) -> None:
        # per-event model calls are small: extra threads only hand work back and
        # forth (measured 5x slower with 2 threads on 2 cores)
        import faiss
        import torch
        torch.set_num_threads(self.config.threads)
        faiss.omp_set_num_threads(self.config.threads)
        deployment = None
        if self.config.bootstrap_servers:
            self._feed = ControlFeed(self.config, self._on_deployment, self._on_items)
            deployment, items = self._feed.catch_up()
            self.catalogue.record(items)
        models = self._prepare(deployment) if deployment is not None else None
        if models is None:  # none published, or it does not load: the configured export
            models = {"current": self._load(str(self.config.export_dir), None)}
            deployment = None
        self._install(deployment, models)
        if self._feed is not None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a tool, a test): nothing to follow with
                return
            self._feed.start()

    # ------------------------------------------------------------------ loader thread

    def _on_deployment(self, deployment: Deployment | None) -> None:
        """From the feed's thread: load in the loader thread, install on the loop. None:
        the deployment was withdrawn, the configured export serves again."""
        self._loader.submit(self._load_and_install, deployment)

    def _load_and_install(self, deployment: Deployment | None) -> None:
        models = self._prepare(deployment) if deployment is not None else self._own_export()
        if models is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._install, deployment, models)

    def _prepare(self, deployment: Deployment) -> dict[str, StreamModel] | None:
        """{"current", "candidate"?} loaded and checked (a version already loaded is
        reused), or None after one log line and a count, if any of them fails."""
        wanted = {"current": deployment.current}
        if deployment.candidate is not None and deployment.candidate.version != deployment.current.version:
            wanted["candidate"] = deployment.candidate
        models = {}
        for role, ref in wanted.items():
            model = self._prepared.get(ref.version)
            if model is None:
                try:
                    model = self._load(ref.location, ref.version)
                except Exception as exc:
                    metrics.MODEL_LOAD_FAILURES.inc()
                    log.error("refused model %s (%s) from %s: %s; the models serving keep "
                              "serving", ref.version, role, ref.location, _why(exc))
                    return None
            models[role] = model
        self._prepared = {m.version: m for m in models.values()}
        return models

    def _own_export(self) -> dict[str, StreamModel] | None:
        """{"current": the configured export}, or None after one log line and a count."""
        try:
            model = self._load(str(self.config.export_dir), None)
        except Exception as exc:
            metrics.MODEL_LOAD_FAILURES.inc()
            log.error("deployment withdrawn, but the configured export %s does not load: "
                      "%s; the models serving keep serving", self.config.export_dir, _why(exc))
            return None
        self._prepared = {model.version: model}
        return {"current": model}

    def _load(self, location: str, version: str | None) -> StreamModel:
        missing = [name for name in EXPORT_FILES if not (Path(location) / name).is_file()]
        if missing:  # the plainest cause first, before torch's or faiss's own words
            raise FileNotFoundError(f"no {', '.join(missing)} there")
        model = StreamModel.load(Path(location), self.config.device)
        if version is not None and model.version != version:
            raise ValueError(f"the export there is version {model.version}")
        check_export(model)
        if accepts_item_vectors(model):
            make_live(model)  # ids = item rows, so the catalogue can grow and shrink it
        self.catalogue.update(model)  # not serving yet: safe in this thread
        return model

    # ------------------------------------------------------------------ event loop

    def _on_items(self, updates) -> None:
        """From the feed's thread: record and apply on the loop, between batches."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._apply_items, updates)

    def _apply_items(self, updates) -> None:
        self.catalogue.record(updates)
        for model in (self.model, self.candidate):
            if model is not None:
                self.catalogue.update(model)

    def _install(self, deployment: Deployment | None, models: dict[str, StreamModel]) -> None:
        old = (self.model, self.candidate, self.share)
        current, candidate = models["current"], models.get("candidate")
        for model in models.values():
            self.catalogue.update(model)  # what arrived while it was loading
        self.model, self.candidate = current, candidate
        self.share = deployment.canary_share if deployment and candidate else 0.0
        metrics.MODEL_INFO.info({"version": current.version})
        metrics.CANARY_SHARE.set(self.share)
        serving = {m.version for m in models.values()}
        fresh = getattr(recommend, "_fresh_blobs", None)  # an lru_cache keyed by model:
        if fresh is not None:  # cleared, so that swapped-out models can be freed
            fresh.cache_clear()
        for gone in {m.version for m in old[:2] if m is not None} - serving:
            metrics.forget_version(gone)
        if old[0] is not None and current.session_policy != old[0].session_policy:
            log.info("model %s was trained under another session policy (%s, was %s): its "
                     "users' sessions are cut by it (unless the worker's configuration "
                     "overrides it)", current.version, current.session_policy,
                     old[0].session_policy)
        if old[0] is None:
            log.info("serving model %s (%d items) on %s, top-K by %s%s", current.version,
                     len(current.item_ids), describe(current.device), current.search_backend,
                     _canary_text(candidate, self.share))
        elif (old[0], old[1], old[2]) != (current, candidate, self.share):
            metrics.MODEL_SWAPS.inc()
            log.info("model swapped between batches: %s -> %s%s", old[0].version,
                     current.version, _canary_text(candidate, self.share))


def check_export(model: StreamModel) -> None:
    """Refuse an export whose parts do not fit together, or that cannot answer: the
    index, the item ids and the model's item table agree, and one step and one search
    run (wrong weights' shapes fail here, not on the first batch)."""
    c = model.model.config
    n, d = model.index.ntotal, getattr(model.index, "d", None)
    if not n == len(model.item_ids) == c.n_items:
        raise ValueError(f"index of {n} items, {len(model.item_ids)} item ids, a model of "
                         f"{c.n_items}")
    # an untied output's index rows are [output vector; bias] (hiertcn/checkpoint.py)
    width = c.item_dim + 1 if c.untied_output else c.item_dim
    if d is not None and d != width:  # torch search (no faiss index) has no d
        raise ValueError(f"index of {d} dims, the model's scoring vectors have {width}")
    batch = BatchState(model, model.fresh(1))
    emb = batch.step_many([0], [[0]])  # (1, D)
    model.top_k(emb, 1)


def _why(exc: Exception) -> str:
    """One line about a failed load: the error's type and first line (paths and
    shapes, never user data: an export holds none)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _canary_text(candidate: StreamModel | None, share: float) -> str:
    return "" if candidate is None else f", candidate {candidate.version} on {share:.2%} of users"
