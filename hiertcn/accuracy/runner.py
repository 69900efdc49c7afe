"""`hiertcn bench accuracy`: run the plan's jobs in child processes, then write the
results (hiertcn.accuracy.report), the learning curves (hiertcn.accuracy.plots) and
print the table (hiertcn.accuracy.table).

Children are spawned (a fresh interpreter: no forked torch threads), `workers` of
them, one torch thread each. A job is submitted as soon as the jobs it needs are done:
a model's folds start when its tuning trials are all back, while other models are
still tuning. Every finished job is logged with its figures and kept in the run's
journal (hiertcn.accuracy.journal): a run started again with the same settings skips
the jobs already done.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

from hiertcn.accuracy import estimate as timing
from hiertcn.accuracy import jobs as work
from hiertcn.accuracy.journal import Journal
from hiertcn.accuracy.grids import trial_configs
from hiertcn.accuracy.plan import Job, Plan, Source, jobs
from hiertcn.accuracy.plots import write_curves
from hiertcn.accuracy.report import build_report, runs_record
from hiertcn.data import datasets
from hiertcn.data.loaders import load_interactions

log = logging.getLogger("hiertcn.accuracy")
# read by the BLAS and OpenMP libraries when a child loads them: one thread each, so
# `workers` children (the kNN baselines' and the item vectors' numpy too) share the cores
ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def sources(plan: Plan) -> dict[str, Source]:
    """Each data set's events file, fetched (checked by sha256) in this process before
    any child starts; with `max_users`, a seeded sample of that many users."""
    out = {}
    for name in plan.datasets:
        spec = datasets.spec(name)
        src = Source(name, str(datasets.fetch(name)), spec.fmt, spec.real_sessions)
        out[name] = subset(src, plan) if plan.max_users else src
    return out


def subset(src: Source, plan: Plan) -> Source:
    """`plan.max_users` users of `src` (drawn with the seed), as a generic events file
    in the cache folder."""
    path = Path(plan.cache_dir) / "subsets" / f"{src.name}-{plan.max_users}u-s{plan.seed}.csv"
    if not path.exists():
        frame = load_interactions(src.path, src.fmt)
        users = np.unique(frame["user"].to_numpy())
        rng = np.random.default_rng(plan.seed)
        chosen = rng.choice(users, min(plan.max_users, len(users)), replace=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        frame[frame["user"].isin(chosen)].to_csv(tmp, index=False)
        tmp.replace(path)
    return Source(src.name, str(path), "generic", src.real_sessions)


def run(plan: Plan, out: Path, command: str, probe_s: float, fresh: bool = False,
        journal_root: Path | None = None) -> dict:
    """The whole benchmark: probe and plan, every job not in the journal (all of them
    when `fresh`), then the results files."""
    t0 = time.perf_counter()
    srcs = sources(plan)
    todo = jobs(plan)
    journal = Journal(plan, journal_root)
    done = {} if fresh else journal.load({j.key for j in todo})
    if done:
        log.info("accuracy: resuming, %d of %d jobs already done (journal %s)", len(done),
                 len(todo), journal.folder)
    planned = make_plan(plan, srcs, todo, probe_s)
    log.info("accuracy: %d jobs on %d workers, estimated wall time %.1f h (every fit to "
             "the epoch cap: %.1f h)", len(todo), plan.workers,
             planned["typical"]["wall_s"] / 3600, planned["upper"]["wall_s"] / 3600)
    results = execute(plan, srcs, todo, journal, dict(done))
    summary = {**plan_summary(plan, todo, planned),
               "resumed": {"jobs": len(done), "journal": str(journal.folder),
                           "commits": journal.commits()}}
    report = build_report(plan, srcs, results, command, time.perf_counter() - t0, summary)
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "accuracy_runs.json").write_text(json.dumps(runs_record(results), indent=1) + "\n")
    write_curves(results, out / "accuracy_curves.png")
    return report


def make_plan(plan: Plan, srcs: dict[str, Source], todo: list[Job], probe_s: float) -> dict:
    """The timing probe of every data set (in children, as the jobs run), then the
    estimate (hiertcn.accuracy.estimate)."""
    with children(plan.workers) as pool:
        futures = {ds: pool.submit(timing.probe, plan, srcs[ds], probe_s) for ds in plan.datasets}
        probed = {ds: f.result() for ds, f in futures.items()}
    return {**timing.estimate(plan, todo, probed), "probe": probed}


def plan_summary(plan: Plan, todo: list[Job], planned: dict) -> dict:
    """What the results file records of the plan: job counts and the estimates."""
    kinds = [j.kind for j in todo]
    return {"jobs": {k: kinds.count(k) for k in ("prepare", "tune", "fit")},
            "folds_per_dataset": {ds: plan.n_folds(ds) for ds in plan.datasets},
            "estimated_wall_s": round(planned["typical"]["wall_s"]),
            "estimated_wall_s_epoch_cap": round(planned["upper"]["wall_s"]),
            "estimate": f"timing probe on fold 0, fits at {planned['typical']['epochs']} "
                        f"epochs (typical) or at the cap of {planned['upper']['epochs']}"}


def print_plan(plan: Plan, todo: list[Job], planned: dict) -> None:
    """`--plan`: every job with its estimated seconds, then the totals."""
    typical, upper = planned["typical"], planned["upper"]
    for job in todo:
        print(f"{job.key:48s} ~{typical['job_s'][job.key]:8.0f} s "
              f"(<= {upper['job_s'][job.key]:.0f} s)")
    print(f"{len(todo)} jobs on {plan.workers} workers: estimated wall time "
          f"{typical['wall_s'] / 3600:.1f} h ({typical['cpu_s'] / 3600:.1f} CPU-hours) with "
          f"fits stopping at {typical['epochs']} epochs; {upper['wall_s'] / 3600:.1f} h if "
          f"every fit runs to the cap of {upper['epochs']} epochs")


def execute(plan: Plan, srcs: dict[str, Source], todo: list[Job], journal: Journal,
            done: dict[str, dict]) -> dict[str, dict]:
    """Every job's result by key, each job submitted once all it needs are done; `done`
    holds those finished before (from the journal), every new one is journalled."""
    running: dict[Future, tuple[Job, dict | None]] = {}
    waiting = [j for j in todo if j.key not in done]
    with children(plan.workers) as pool:
        while waiting or running:
            ready = [j for j in waiting if all(k in done for k in j.needs)]
            if not ready and not running:
                raise RuntimeError(f"jobs wait on jobs not in the plan: {waiting[0].key}")
            for job in ready:
                waiting.remove(job)
                config = job_config(plan, job, done)
                future = pool.submit(work.run, plan, srcs[job.dataset], job, config)
                running[future] = job, config  # recorded as trained
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job, config = running.pop(future)
                result = future.result()  # a child's error stops the run here
                done[job.key] = {**result, "kind": job.kind, "dataset": job.dataset,
                                 "model": job.model, "fold": job.fold, "trial": job.trial,
                                 "config": config}
                journal.save(job.key, done[job.key])
                log.info("[%d/%d] %s", len(done), len(todo), describe(done[job.key]))
    return done


@contextlib.contextmanager
def children(workers: int):
    """A pool of `workers` spawned children, each with one BLAS/OpenMP/torch thread;
    this process's environment is restored when the pool is gone."""
    saved = {k: os.environ.get(k) for k in ONE_THREAD}
    os.environ.update({k: "1" for k in ONE_THREAD})
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                 initializer=work.init_worker) as pool:
            yield pool
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def job_config(plan: Plan, job: Job, done: dict[str, dict]) -> dict | None:
    """The configuration a job trains: its trial's, or for a fit the best tuned one
    (highest validation MRR@20; ties: the earlier trial, so the defaults first)."""
    if job.kind == "prepare":
        return None
    configs = trial_configs(job.model, plan.trials, plan.seed)
    if job.kind == "tune":
        return configs[job.trial]
    return configs[best_trial(job, done)]


def best_trial(job: Job, done: dict[str, dict]) -> int:
    trials = [done[k] for k in job.needs if k.startswith("tune ")]
    if not trials:
        return 0
    scores = [t["val"]["mrr@20"] for t in trials]
    return trials[int(np.argmax(scores))]["trial"]


def describe(r: dict) -> str:
    """One log line per finished job."""
    head = r["job"]
    if r["kind"] == "prepare":
        p = r["parts"]
        return (f"{head}: train {p['train']['users']} / val {p['val']['users']} / test "
                f"{p['test']['users']} users, {p['train']['items']} items ({r['wall_s']:.0f} s)")
    stop = f", {r['epochs']} epochs ({r['stopped']} stop)" if r.get("stopped") else ""
    if r["kind"] == "tune":
        return (f"{head}: val mrr@20 {r['val']['mrr@20']:.4f} recall@20 "
                f"{r['val']['recall@20']:.4f}{stop} ({r['wall_s']:.0f} s)")
    return (f"{head}: test recall@20 {r['test']['recall@20']:.4f} mrr@20 "
            f"{r['test']['mrr@20']:.4f} on {r['users']} users{stop} ({r['wall_s']:.0f} s)")
