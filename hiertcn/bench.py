"""`hiertcn bench training`: benchmarks/results/training.json.

Per neural model, training events/s over one epoch of the whole training split, and
peak memory (process RSS and tensor memory) over one epoch of the users with the
longest histories, each in a fresh process, one thread, one run. (The accuracy
benchmark, `hiertcn bench accuracy`, is hiertcn/accuracy/.)
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from hiertcn.accuracy.options import command_line
from hiertcn.data.cache import load_splits
from hiertcn.item_vectors import cached_cooccurrence_vectors
from hiertcn.models import TRAIN_DEFAULTS, build_model
from hiertcn.train import TrainConfig, count_parameters, fit

log = logging.getLogger("hiertcn.bench")
DATA = Path(__file__).resolve().parent.parent / "data" / "movielens.csv.gz"
LONG_HISTORY_USERS = 32  # the training users with the most events, for the memory figure


def _splits():
    return load_splits(DATA)


def _init_vectors(train):
    return torch.from_numpy(cached_cooccurrence_vectors(train, 128))


def training_job(name: str, subset: str, shape: dict | None = None) -> dict:
    """One epoch, one thread; returns speed and memory. Runs in a child process.
    `shape`: TrainConfig fields over the model's own (e.g. its batch size)."""
    torch.set_num_threads(1)
    parts = _splits()
    train = parts["train"]
    if subset == "long":
        events = np.diff(train.session_offsets[train.user_offsets])
        train = train.select_users(np.sort(np.argsort(-events)[:LONG_HISTORY_USERS]))
    model = build_model(name, train.n_items, _init_vectors(parts["train"]))
    val = parts["val"].select_users(np.arange(2))  # validation is not what is measured
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # torch alone ~0.7 GB
    config = TrainConfig(epochs=1, **{**TRAIN_DEFAULTS.get(name, {}), **(shape or {})})
    cpu0 = time.process_time()  # every thread's: a figure that contention leaves alone
    result = fit(model, train, val, config, name=name, progress=False)
    cpu_s = time.process_time() - cpu0  # validation of 2 users included: ~1%
    return {"params": count_parameters(model), "events_per_s": result.events_per_s,
            "events_per_cpu_s": result.events / cpu_s,
            "peak_tensor_mb": result.peak_tensor_mb,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_training_mb": before_mb, "events": int(train.n_events),
            "events_per_update": result.events / max(result.updates, 1)}


def run_training(out: Path, command: str) -> dict:
    _init_vectors(_splits()["train"])  # before the children: they only load it
    models = {}
    ctx = mp.get_context("spawn")
    for name in ("hiertcn", "gru4rec", "hrnn", "tcn"):
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:  # fresh RSS
            speed = pool.submit(training_job, name, "all").result()
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            memory = pool.submit(training_job, name, "long").result()
        models[name] = {"params": speed["params"], "events_per_s": speed["events_per_s"],
                        "events_per_cpu_s": speed["events_per_cpu_s"],
                        "peak_rss_mb": memory["peak_rss_mb"],
                        "training_rss_mb": memory["peak_rss_mb"] - memory["rss_before_training_mb"],
                        "peak_tensor_mb": memory["peak_tensor_mb"],
                        "long_history_events": memory["events"]}
        log.info("%s: %.0f events/s, peak RSS %.0f MB, peak tensors %.0f MB", name,
                 speed["events_per_s"], memory["peak_rss_mb"], memory["peak_tensor_mb"])
    h = models["hiertcn"]
    report = {"models": models,
              "ratios": {"speed_vs_gru4rec": h["events_per_s"] / models["gru4rec"]["events_per_s"],
                         "speed_vs_hrnn": h["events_per_s"] / models["hrnn"]["events_per_s"],
                         "tensor_memory_vs_tcn": h["peak_tensor_mb"] / models["tcn"]["peak_tensor_mb"],
                         "rss_vs_tcn": h["peak_rss_mb"] / models["tcn"]["peak_rss_mb"],
                         "training_rss_vs_tcn": h["training_rss_mb"] / models["tcn"]["training_rss_mb"]},
              "setup": f"one epoch, one CPU thread, fresh process per figure; memory on the "
                       f"{LONG_HISTORY_USERS} training users with the longest histories; "
                       f"training_rss_mb = peak RSS minus RSS before training (torch's "
                       f"import alone holds ~0.7 GB)",
              "command": command}
    out.mkdir(parents=True, exist_ok=True)
    (out / "training.json").write_text(json.dumps(report, indent=2))
    return report


def main(args) -> None:
    """`hiertcn bench training`."""
    print(json.dumps(run_training(args.out, command_line(args))["ratios"], indent=2))
