"""`hiertcn bench accuracy --try CONFIG`: one more tuning trial outside the drawn ones.

Tuning gives every model the same number of configurations, drawn from its grid, so a
configuration someone wants to know about (the authors' 32 queues x 10 sessions at
1e-2, say) may never be drawn. A try trains it exactly as a tuning trial trains (fold
0's tuning users, early-stopped on fold 0's validation MRR@20, one thread in a child)
and sets it beside the run's own trials of that model, read from the run's journal.
Validation only, never test: a try cannot change the reported figures, and it does not
enter the run's tuning (that would give one model more trials than the others); it
informs the next grid. Results: accuracy_tries.json in --out, one entry per data set,
model and configuration, a later try of the same replacing the earlier.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from hiertcn.accuracy import jobs as work
from hiertcn.accuracy.grids import default_config, is_neural
from hiertcn.accuracy.journal import Journal
from hiertcn.accuracy.plan import Plan, jobs
from hiertcn.accuracy.runner import best_trial, children, sources
from hiertcn.errors import ConfigError
from hiertcn.models import NEURAL_MODELS, model_config
from hiertcn.train import PRESETS, TrainConfig

SECTIONS = ("train", "model")
VAL_SHOWN = ("mrr@20", "recall@20")
CURVE_SHOWN = ("epoch", "train_s", *VAL_SHOWN)


def parse(spec: str) -> dict:
    """A preset's name (hiertcn.train.PRESETS) or a JSON object with "train" and/or
    "model" settings; ConfigError (one line) otherwise."""
    if spec in PRESETS:
        return {k: dict(v) for k, v in PRESETS[spec].items()}
    try:
        config = json.loads(spec)
    except ValueError:
        raise ConfigError(f"--try {spec!r}: neither a preset ({', '.join(PRESETS)}) nor "
                          f"JSON like '{{\"train\": {{\"lr\": 0.01}}}}'") from None
    if not isinstance(config, dict) or not config or set(config) - set(SECTIONS) or \
            not all(isinstance(v, dict) for v in config.values()):
        raise ConfigError(f"--try: a JSON object with \"train\" and/or \"model\" objects "
                          f"expected, got {spec!r}")
    return config


def check_keys(model: str, config: dict) -> None:
    """Every setting named must be one the model's trainer or config has."""
    known = {"train": {f.name for f in fields(TrainConfig)},
             "model": {f.name for f in fields(model_config(model, 1))}}
    for section, values in config.items():
        unknown = sorted(set(values) - known[section])
        if unknown:
            raise ConfigError(f"--try: {model} has no {section} setting "
                              f"{', '.join(unknown)}; it has {', '.join(sorted(known[section]))}")


def over(base: dict, change: dict) -> dict:
    """`change`'s settings over `base`'s, section by section."""
    return {s: {**base.get(s, {}), **change.get(s, {})} for s in SECTIONS}


def tuned(plan: Plan, done: dict[str, dict], dataset: str, model: str) -> dict | None:
    """The run's tuned trial of `model` on `dataset`, chosen as the run chooses it for its
    fits (hiertcn.accuracy.runner.best_trial) among the trials in its journal; None
    before any."""
    fit = next(j for j in jobs(plan) if j.kind == "fit" and j.dataset == dataset
               and j.model == model and j.fold == 0)
    finished = tuple(k for k in fit.needs if k.startswith("tune ") and k in done)
    if not finished:
        return None
    trial = best_trial(replace(fit, needs=finished), done)
    return next(done[k] for k in finished if done[k]["trial"] == trial)


def run(plan: Plan, spec: str, models: tuple[str, ...], out: Path,
        journal_root: Path | None) -> list[dict]:
    change = parse(spec)
    for m in models:
        if not is_neural(m):
            raise ConfigError(f"--try-models: {m} is not a neural model; choose from "
                              f"{', '.join(NEURAL_MODELS)}")
        check_keys(m, change)
    done = Journal(plan, journal_root).load({j.key for j in jobs(plan) if j.kind == "tune"})
    srcs = sources(plan)
    wanted = []
    for ds in plan.datasets:
        for m in models:
            best = tuned(plan, done, ds, m)
            base = best["config"] if best else default_config(m)  # tuned, else shipped
            wanted.append((ds, m, over(base, change), best))
    path = out / "accuracy_tries.json"
    with children(plan.workers) as pool:
        futures = [(pool.submit(work.tune, plan, srcs[ds], m, config), ds, m, config, best)
                   for ds, m, config, best in wanted]
        entries = []
        for future, ds, m, config, best in futures:
            entry = record(ds, m, spec, config, future.result(), best)
            entries.append(entry)
            save(path, entry)  # each as it comes: a stopped run keeps the tries done
            print(line(entry), flush=True)
    return entries


def record(dataset: str, model: str, spec: str, config: dict, result: dict,
           best: dict | None) -> dict:
    val = {k: result["val"][k] for k in VAL_SHOWN}
    entry = {"dataset": dataset, "model": model, "try": spec, "config": config, "val": val,
             "best_epoch": result.get("best_epoch"), "epochs": result.get("epochs"),
             "stopped": result.get("stopped"), "events_per_s": result.get("events_per_s"),
             "curve": [{k: c[k] for k in CURVE_SHOWN if k in c}
                       for c in result.get("curve", [])]}
    if best is not None:
        entry["tuned"] = {"trial": best["trial"], "config": best["config"],
                          "val": {k: best["val"][k] for k in VAL_SHOWN}}
        entry["vs_tuned"] = {k: val[k] / best["val"][k] - 1 if best["val"][k] else None
                             for k in val}
    return entry


def save(path: Path, entry: dict) -> None:
    kept = json.loads(path.read_text())["tries"] if path.exists() else []
    same = (entry["dataset"], entry["model"], json.dumps(entry["config"], sort_keys=True))
    kept = [e for e in kept if (e["dataset"], e["model"],
                                json.dumps(e["config"], sort_keys=True)) != same]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps({"about": __doc__.split("\n\n")[0].strip(),
                               "tries": kept + [entry]}, indent=1, default=_plain) + "\n")
    tmp.replace(path)


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def line(e: dict) -> str:
    text = (f"{e['dataset']} {e['model']} try {e['try']}: validation MRR@20 "
            f"{e['val']['mrr@20']:.4f}, Recall@20 {e['val']['recall@20']:.4f} "
            f"({e['epochs']} epochs, {e['stopped']})")
    if "tuned" in e:
        t = e["tuned"]
        text += (f"; the run's tuned trial {t['trial']}: {t['val']['mrr@20']:.4f}, "
                 f"{t['val']['recall@20']:.4f} (MRR@20 {e['vs_tuned']['mrr@20']:+.1%})")
    return text
