"""The work of one job (hiertcn.accuracy.plan), run in a child process with one torch
thread. Each job reads its fold from the data cache the prepare job built, so the
children share nothing but files; results come back as plain values and numpy arrays.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from hiertcn.accuracy.grids import SIMPLE, is_neural
from hiertcn.accuracy.plan import Job, Plan, Source
from hiertcn.data.cache import load_splits
from hiertcn.data.sessions import SessionConfig, Sessions
from hiertcn.evaluate import evaluate, user_ranks
from hiertcn.item_vectors import cached_cooccurrence_vectors
from hiertcn.models import build_model, model_config
from hiertcn.stats import pooled, user_sums
from hiertcn.train import TrainConfig, fit

CURVE_KEYS = ("epoch", "train_s", "loss", "recall@20", "mrr@20")
log = logging.getLogger("hiertcn.accuracy.job")


def init_worker() -> None:
    """Pool initializer: one thread per child, so `workers` children share the cores;
    the child's job starts and the trainer's epoch lines go to stderr, as the parent's."""
    logging.basicConfig(level=logging.WARNING, datefmt="%H:%M:%S",
                        format="%(asctime)s child %(process)d %(message)s")
    for name in ("hiertcn.train", log.name):
        logging.getLogger(name).setLevel(logging.INFO)
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def run(plan: Plan, source: Source, job: Job, config: dict | None) -> dict:
    """Do `job`; `config` is the model's configuration (tune: the trial's, fit: the
    tuned one; None for prepare)."""
    t0 = time.perf_counter()
    log.info("start %s%s", job.key, f" {config}" if config else "")
    if job.kind == "prepare":
        out = prepare(plan, source, job.fold)
    elif job.kind == "tune":
        out = tune(plan, source, job.model, config)
    else:
        out = fit_and_test(plan, source, job.model, job.fold, config)
    return {"job": job.key, **out, "wall_s": time.perf_counter() - t0}


def fold_parts(plan: Plan, source: Source, fold: int) -> dict[str, Sessions]:
    return load_splits(source.path, source.fmt, SessionConfig(),
                       plan.split_config(source.name, fold), plan.cache_dir)


def item_vectors(plan: Plan, train: Sessions, model: str) -> torch.Tensor:
    dim = model_config(model, train.n_items).item_dim
    return torch.from_numpy(cached_cooccurrence_vectors(train, dim, plan.cache_dir))


def prepare(plan: Plan, source: Source, fold: int) -> dict:
    parts = fold_parts(plan, source, fold)
    neural = [m for m in plan.models if is_neural(m)]
    if neural:
        item_vectors(plan, parts["train"], neural[0])
    return {"parts": {name: {"users": p.n_users, "sessions": p.n_sessions,
                             "events": p.n_events, "items": p.n_items}
                      for name, p in parts.items()}}


def tuning_users(plan: Plan, train: Sessions) -> Sessions:
    """The training users tuning trains on: `tune_users` of them, seeded, or all."""
    if not plan.tune_users or plan.tune_users >= train.n_users:
        return train
    rng = np.random.default_rng(plan.seed)
    return train.select_users(np.sort(rng.choice(train.n_users, plan.tune_users,
                                                 replace=False)))


def tune(plan: Plan, source: Source, model: str, config: dict) -> dict:
    parts = fold_parts(plan, source, 0)
    train = tuning_users(plan, parts["train"])
    if is_neural(model):
        vectors = item_vectors(plan, parts["train"], model)  # fold 0's: training data only
        _, result = train_neural(plan, model, config, train, parts["val"], vectors)
        return {"val": result.best_val, **_fit_record(result)}
    recommender = SIMPLE[model](**config["params"]).fit(train)
    return {"val": evaluate(recommender, parts["val"], progress=False), "epochs": 0}


def fit_and_test(plan: Plan, source: Source, model: str, fold: int, config: dict) -> dict:
    parts = fold_parts(plan, source, fold)
    t0 = time.perf_counter()
    if is_neural(model):
        vectors = item_vectors(plan, parts["train"], model)
        recommender, result = train_neural(plan, model, config, parts["train"],
                                           parts["val"], vectors)
        record = {"val": result.best_val, **_fit_record(result)}
    else:
        recommender = SIMPLE[model](**config["params"]).fit(parts["train"])
        record = {"epochs": 0}
    t1 = time.perf_counter()
    sums, counts = user_sums(user_ranks(recommender, parts["test"]))
    test = parts["test"]
    return {**record, "test": pooled(sums, counts), "sums": sums, "counts": counts,
            "users": int(len(counts)), "events": int(counts.sum()),
            "sessions": int(np.sum(test.scored)), "fit_s": t1 - t0,
            "score_s": time.perf_counter() - t1}


def train_neural(plan: Plan, model: str, config: dict, train: Sessions, val: Sessions,
                 vectors: torch.Tensor):
    """A fresh `model` with `config`, trained with early stopping on `val`."""
    torch.manual_seed(plan.seed)
    net = build_model(model, train.n_items, vectors, **config["model"])
    settings = TrainConfig(**{**config["train"], "epochs": plan.epochs,
                              "patience": plan.patience, "seed": plan.seed,
                              "max_seconds": plan.time_limit_s})
    result = fit(net, train, val, settings, name=model, progress=False)
    return net.eval(), result


def _fit_record(result) -> dict:
    return {"best_epoch": result.best_epoch, "epochs": len(result.curve),
            "stopped": result.stopped, "events_per_s": result.events_per_s,
            "curve": [{k: c[k] for k in CURVE_KEYS} for c in result.curve]}
