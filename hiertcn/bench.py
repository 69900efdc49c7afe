"""`hiertcn bench accuracy | training | all`: the figures in benchmarks/results/.

- accuracy.json: every model on the shipped MovieLens, user split, test metrics as
  mean and std over seeds; models are selected on validation only (early stopping),
  the test split is read once per run at the end. Also learning_curves.png.
- training.json: per neural model, training events/s over one epoch of the whole
  training split, and peak memory (process RSS and tensor memory) over one epoch of
  the users with the longest histories, each in a fresh process, one thread, one run.

Each (model, seed) job runs in its own process: its peak RSS is its own, and two
jobs share the machine's two cores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from hiertcn.baselines.popular import MostPopular
from hiertcn.baselines.item_knn import ItemKNN
from hiertcn.baselines.session_knn import SKNN, VSKNN
from hiertcn.data.cache import load_splits
from hiertcn.evaluate import evaluate
from hiertcn.item_vectors import cooccurrence_vectors
from hiertcn.models import NEURAL_MODELS, TRAIN_DEFAULTS, build_model
from hiertcn.train import TrainConfig, count_parameters, fit

log = logging.getLogger("hiertcn.bench")
DATA = Path(__file__).resolve().parent.parent / "data" / "movielens.csv.gz"
NEURAL = NEURAL_MODELS
LONG_HISTORY_USERS = 32  # the training users with the most events, for the memory figure
TRAIN_BUDGET_S = 420  # training seconds per (model, seed): the same budget for every model


def _splits():
    return load_splits(DATA)


def _init_vectors(train):
    """Computed once per training split and kept on disk: the dense PPMI + SVD would
    otherwise dominate every job's time and its peak RSS."""
    key = hashlib.sha256(np.ascontiguousarray(train.items).tobytes()).hexdigest()[:16]
    path = Path(".cache/hiertcn") / f"cooc-vectors-{key}.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, cooccurrence_vectors(train, 128))
    return torch.from_numpy(np.load(path))


def accuracy_job(name: str, seed: int, epochs: int | None) -> dict:
    """Train on train, early-stop on val, score test. Runs in a child process."""
    torch.set_num_threads(1)
    parts = _splits()
    torch.manual_seed(seed)
    model = build_model(name, parts["train"].n_items, _init_vectors(parts["train"]))
    config = TrainConfig(seed=seed, max_seconds=TRAIN_BUDGET_S, **TRAIN_DEFAULTS.get(name, {}),
                         **({"epochs": epochs} if epochs else {}))
    t0 = time.perf_counter()
    result = fit(model, parts["train"], parts["val"], config, name=name, progress=False)
    test = evaluate(model.eval(), parts["test"], progress=False)
    return {"model": name, "seed": seed, "test": test, "val": result.best_val,
            "best_epoch": result.best_epoch, "curve": result.curve,
            "params": count_parameters(model), "fit_s": time.perf_counter() - t0}


def simple_baselines(parts) -> dict:
    out = {}
    for name, model in (("pop", MostPopular()), ("item_knn", ItemKNN()), ("sknn", SKNN()),
                        ("vsknn", VSKNN())):
        model.fit(parts["train"])
        out[name] = evaluate(model, parts["test"], progress=False)
    return out


def run_accuracy(seeds: list[int], epochs: int | None, out: Path, command: str) -> dict:
    parts = _splits()
    _init_vectors(parts["train"])  # before the children: they only load it
    jobs = [(name, seed) for seed in seeds for name in NEURAL]
    results = []
    with ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(accuracy_job, name, seed, epochs): (name, seed)
                   for name, seed in jobs}
        for done, fut in enumerate(futures, 1):
            r = fut.result()
            log.info("[%d/%d] %s seed %d: test recall@20 %.4f mrr@20 %.4f (best epoch %d)",
                     done, len(jobs), r["model"], r["seed"], r["test"]["recall@20"],
                     r["test"]["mrr@20"], r["best_epoch"])
            results.append(r)
    models = {name: _mean_std([r["test"] for r in results if r["model"] == name])
              for name in NEURAL}
    for name, metrics in simple_baselines(parts).items():
        models[name] = _mean_std([metrics] * len(seeds))  # deterministic: std 0
    report = {"dataset": "movielens-latest-small (shipped data/movielens.csv.gz)",
              "split": "user 80/10/10, test users never seen in training",
              "seeds": seeds, "events_scored": results[0]["test"]["events"],
              "models": models,
              "params": {n: next(r["params"] for r in results if r["model"] == n) for n in NEURAL},
              "best_epochs": {n: [r["best_epoch"] for r in results if r["model"] == n]
                              for n in NEURAL},
              "command": command}
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy.json").write_text(json.dumps(report, indent=2))
    (out / "accuracy_runs.json").write_text(json.dumps(results, indent=1))
    plot_curves([r for r in results if r["seed"] == seeds[0]], out / "learning_curves.png")
    return report


def _mean_std(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if k != "events"]
    out = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    out["std"] = {k: float(np.std([r[k] for r in runs])) for k in keys}
    return out


def plot_curves(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        ax.plot([c["train_s"] for c in r["curve"]], [c["recall@20"] for c in r["curve"]],
                marker="o", markersize=3, label=r["model"])
    ax.set_xlabel("training time (s, one CPU thread)")
    ax.set_ylabel("validation Recall@20")
    ax.set_title("Learning curves on MovieLens (user split)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


def markdown_table(report: dict) -> str:
    cols = ("recall@5", "recall@10", "recall@20", "mrr@10", "mrr@20", "ndcg@20")
    lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, m in report["models"].items():
        cells = [f"{m[c]:.4f} ± {m['std'][c]:.4f}" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(args) -> None:
    command = "hiertcn " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("hiertcn") \
        else "python -m hiertcn " + " ".join(sys.argv[1:])
    if args.which in ("accuracy", "all"):
        print(markdown_table(run_accuracy(args.seeds, args.epochs, args.out, command)))
    if args.which in ("training", "all"):
        print(json.dumps(run_training(args.out, command)["ratios"], indent=2))
