"""The plan's wall time, from a short timing probe (`hiertcn bench accuracy --plan`).

The probe (one child per data set, one thread, as the jobs run) prepares fold 0,
then times, on fold 0's own data:
- each neural model's training at every configuration the run will try: events per
  second over `probe_s` seconds of updates after one warm-up update (batch building
  included: the trainer's prefetch thread shares the same core);
- each model's scoring (ranks over the full catalogue) on validation users;
- each non-neural model's fit on the whole training part.
Per job: a neural fit is `epochs` x (training events / events per second + validation
events / scoring speed) plus the test scoring; a fit's configuration is the tuning's
choice, unknown beforehand, so its speed is the mean over the model's trials. Two
figures: at TYPICAL_EPOCHS (where early stopping ended fits so far) and at the epoch
cap (an upper bound, short of the time limit). Other folds are taken to cost what
fold 0 does. Wall time: the jobs list-scheduled on `workers` cores, each job
submitted when the jobs it needs are done, as the runner does.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from hiertcn.accuracy import jobs as work
from hiertcn.accuracy.grids import SIMPLE, is_neural, trial_configs
from hiertcn.accuracy.plan import Job, Plan, Source
from hiertcn.evaluate import user_ranks
from hiertcn.models import build_model
from hiertcn.train import TrainConfig, train_step

# epochs a fit ran before early stopping in the earlier benchmark on the shipped
# MovieLens (15 fits, best epoch + patience 3: 3 to 16 epochs, mean 7.9)
TYPICAL_EPOCHS = 8


def probe(plan: Plan, source: Source, probe_s: float) -> dict:
    """Timings of one data set's fold 0 (a child process job)."""
    t0 = time.perf_counter()
    work.prepare(plan, source, 0)
    parts = work.fold_parts(plan, source, 0)
    prepare_s = time.perf_counter() - t0
    train, val = parts["train"], parts["val"]
    out = {"prepare_s": prepare_s, "models": {},
           "events": {k: int(p.n_events) for k, p in parts.items()},
           "tune_events": int(work.tuning_users(plan, train).n_events)}
    for model in plan.models:
        configs = trial_configs(model, plan.trials, plan.seed)
        if is_neural(model):
            vectors = work.item_vectors(plan, train, model)
            nets = [_net(plan, model, c, train, vectors) for c in configs]
            speeds = [train_speed(net, train, c, probe_s) for net, c in zip(nets, configs)]
            out["models"][model] = {"train_events_per_s": speeds,
                                    "score_events_per_s": score_speed(nets[0].eval(), val,
                                                                      probe_s)}
        else:
            t1 = time.perf_counter()
            rec = SIMPLE[model](**configs[0]["params"]).fit(train)
            out["models"][model] = {"fit_s": time.perf_counter() - t1,
                                    "score_events_per_s": score_speed(rec, val, probe_s)}
    return out


def _net(plan: Plan, model: str, config: dict, train, vectors):
    torch.manual_seed(plan.seed)
    return build_model(model, train.n_items, vectors, **config["model"])


def train_speed(net, train, config: dict, seconds: float) -> float:
    """Training events per second of `net` at `config`, after one warm-up update."""
    settings = TrainConfig(**config["train"])
    optim = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=settings.lr)
    extra = {"context_sessions": settings.bptt_sessions} if settings.bptt_sessions else {}
    batches = net.train_batches(train, settings.batch_size, settings.sessions_per_batch,
                                np.random.default_rng(0), **extra)
    net.train()
    carry, events, steps, t0 = None, 0, 0, None
    for batch in batches:
        _, n, carry = train_step(net, batch, carry, settings, optim)
        if t0 is None:  # the first update pays one-off costs: not timed
            t0 = time.perf_counter()
            continue
        events, steps = events + n, steps + 1
        if steps >= 2 and time.perf_counter() - t0 >= seconds:
            break
    return events / max(time.perf_counter() - t0, 1e-9) if t0 is not None else 0.0


@torch.no_grad()
def score_speed(model, sessions, seconds: float) -> float:
    """Scored events per second of `model` over users of `sessions`, ranks included."""
    t0 = time.perf_counter()
    events = sum(len(r) for r in user_ranks(model, sessions, max_seconds=seconds))
    return events / max(time.perf_counter() - t0, 1e-9)


def job_seconds(plan: Plan, job: Job, probed: dict, epochs: int) -> float:
    """Estimated seconds of `job`, with neural fits running `epochs` epochs."""
    p = probed[job.dataset]
    if job.kind == "prepare":
        return p["prepare_s"]
    m, ev = p["models"][job.model], p["events"]
    score = 1.0 / max(m["score_events_per_s"], 1e-9)
    if "fit_s" in m:  # non-neural: one fit, then scoring
        share = p["tune_events"] / max(ev["train"], 1) if job.kind == "tune" else 1.0
        return m["fit_s"] * share + (ev["val"] if job.kind == "tune" else ev["test"]) * score
    speeds = m["train_events_per_s"]
    n = min(epochs, plan.epochs)
    if job.kind == "tune":
        return n * (p["tune_events"] / max(speeds[job.trial], 1e-9) + ev["val"] * score)
    per_epoch = float(np.mean([ev["train"] / max(s, 1e-9) for s in speeds]))
    return min(n * per_epoch, plan.time_limit_s) + n * ev["val"] * score + ev["test"] * score


def schedule(todo: list[Job], seconds: dict[str, float], workers: int) -> float:
    """Wall seconds of `todo` on `workers` cores: each job released when the jobs it
    needs finish, started in release order (ties: list order) on the first free core."""
    free = [0.0] * workers
    finish: dict[str, float] = {}
    left = list(range(len(todo)))
    while left:
        ready = [(max((finish[k] for k in todo[i].needs), default=0.0), i) for i in left
                 if all(k in finish for k in todo[i].needs)]
        release, i = min(ready)
        core = int(np.argmin(free))
        start = max(release, free[core])
        free[core] = finish[todo[i].key] = start + seconds[todo[i].key]
        left.remove(i)
    return max(finish.values(), default=0.0)


def estimate(plan: Plan, todo: list[Job], probed: dict) -> dict:
    """{"typical": {...}, "upper": {...}} each with per-job seconds, CPU and wall."""
    out = {}
    for name, epochs in (("typical", TYPICAL_EPOCHS), ("upper", plan.epochs)):
        seconds = {j.key: job_seconds(plan, j, probed, epochs) for j in todo}
        out[name] = {"epochs": min(epochs, plan.epochs), "job_s": seconds,
                     "cpu_s": sum(seconds.values()),
                     "wall_s": schedule(todo, seconds, plan.workers)}
    return out
