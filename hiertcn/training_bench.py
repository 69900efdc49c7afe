"""`python -m hiertcn.training_bench truncation | speed`: HierTCN's training settings
measured on the shipped MovieLens (user split), one CPU thread, one run each.

- truncation: validation MRR@20 / Recall@20 per epoch for each truncation length
  (`bptt_sessions`), each output choice and batch shape asked for, the same epochs and
  seed -> benchmarks/results/truncation.json.
- speed: training events/s at equal events per update (each model's batch shaped to
  about the same events per Adam step), and peak tensor memory of HierTCN against the
  flat TCN at equal B on the longest-history users -> the "equal_events_per_update" and
  "equal_b_memory" entries of benchmarks/results/training.json (other keys kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from hiertcn.bench import LONG_HISTORY_USERS, _init_vectors, _splits, run_training, training_job
from hiertcn.models import TRAIN_DEFAULTS, build_model
from hiertcn.train import TrainConfig, fit

log = logging.getLogger("hiertcn.training_bench")
RESULTS = Path("benchmarks/results")
SPEED_MODELS = ("hiertcn", "gru4rec", "hrnn", "tcn")
EVENTS_PER_UPDATE = (64, 256)  # the equal-events points
EQUAL_B = 16  # queues (HierTCN) or whole histories (flat TCN) for the memory figure


def truncation(shapes: list[str], bptts: list[int], untied: list[bool], epochs: int,
               lr: float, seed: int) -> dict:
    parts = _splits()
    vectors = _init_vectors(parts["train"])
    runs = []
    for shape in shapes:
        B, S = map(int, shape.split("x"))
        for tie in untied:
            for P in bptts:
                torch.manual_seed(seed)
                model = build_model("hiertcn", parts["train"].n_items, vectors,
                                    untied_output=tie)
                config = TrainConfig(epochs=epochs, lr=lr, batch_size=B, sessions_per_batch=S,
                                     bptt_sessions=P, patience=epochs, seed=seed)
                result = fit(model, parts["train"], parts["val"], config, progress=False)
                runs.append({"shape": shape, "bptt_sessions": P, "untied_output": tie,
                             "best_epoch": result.best_epoch,
                             "best_val": {k: result.best_val[k] for k in ("mrr@20", "recall@20")},
                             "curve": [{k: c[k] for k in ("epoch", "train_s", "loss", "mrr@20",
                                                          "recall@20")} for c in result.curve],
                             "events_per_s": result.events_per_s})
                log.info("%s P=%d untied=%s: best val mrr@20 %.4f recall@20 %.4f (epoch %d), "
                         "%.0f events/s", shape, P, tie, result.best_val["mrr@20"],
                         result.best_val["recall@20"], result.best_epoch, result.events_per_s)
    return {"runs": runs, "setup": f"{epochs} epochs, lr {lr}, seed {seed}, no early stop, "
                                   f"one CPU thread, validation split (37 users)"}


def equal_event_shapes(train, events: int) -> dict[str, dict]:
    """Each model's batch shaped to about `events` events per Adam step on `train`:
    GRU4Rec and HRNN take one event per slot, HierTCN B x S sessions (S its own), the
    flat TCN B whole histories (at least one: on MovieLens one history is ~200
    events). What each reaches is measured: the slot walkers' epoch tails fall short."""
    session, history = train.n_events / train.n_sessions, train.n_events / train.n_users
    S = TRAIN_DEFAULTS["hiertcn"]["sessions_per_batch"]
    return {"hiertcn": {"batch_size": max(1, round(events / (S * session))),
                        "sessions_per_batch": S},
            "gru4rec": {"batch_size": events}, "hrnn": {"batch_size": events},
            "tcn": {"batch_size": max(1, round(events / history))}}


def _child(name: str, subset: str, shape: dict) -> dict:
    """`training_job` in a fresh process, so its figures are its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(training_job, name, subset, shape).result()


def speed(out: Path, command: str) -> dict:
    """training.json as `hiertcn bench training` writes it (each model at its tuned
    config), plus per model "equal_events_per_update" and "equal_b_memory"."""
    report = run_training(out, command)
    train = _splits()["train"]
    for name in SPEED_MODELS:
        entry = {}
        for events in EVENTS_PER_UPDATE:
            shape = equal_event_shapes(train, events)[name]
            r = _child(name, "all", shape)
            entry[str(events)] = {**shape, "events_per_update": r["events_per_update"],
                                  "events_per_s": r["events_per_s"],
                                  "events_per_cpu_s": r["events_per_cpu_s"]}
            log.info("%s at ~%d events/update %s: %.0f events/update, %.0f events/s", name,
                     events, shape, r["events_per_update"], r["events_per_s"])
        report["models"][name]["equal_events_per_update"] = entry
    S = TRAIN_DEFAULTS["hiertcn"]["sessions_per_batch"]
    for name, shape in (("hiertcn", {"batch_size": EQUAL_B, "sessions_per_batch": S}),
                        ("tcn", {"batch_size": EQUAL_B})):
        r = _child(name, "long", shape)
        report["models"][name]["equal_b_memory"] = {**shape,
                                                    "peak_tensor_mb": r["peak_tensor_mb"]}
    models, ratios = report["models"], report["ratios"]
    for events in map(str, EVENTS_PER_UPDATE):
        h = models["hiertcn"]["equal_events_per_update"][events]
        for other in ("gru4rec", "hrnn"):
            o = models[other]["equal_events_per_update"][events]
            ratios[f"speed_vs_{other}_at_{events}_events_per_update"] = \
                h["events_per_s"] / o["events_per_s"]
            ratios[f"cpu_speed_vs_{other}_at_{events}_events_per_update"] = \
                h["events_per_cpu_s"] / o["events_per_cpu_s"]
    ratios["tensor_memory_vs_tcn_at_equal_b"] = (
        models["hiertcn"]["equal_b_memory"]["peak_tensor_mb"]
        / models["tcn"]["equal_b_memory"]["peak_tensor_mb"])
    report["setup"] += (f"; equal_events_per_update: one epoch per point, the batch shaped "
                        f"to ~{'/'.join(map(str, EVENTS_PER_UPDATE))} events per Adam step "
                        f"(events_per_update: what it reached; events_per_cpu_s: per CPU-second of "
                        f"the process, all threads, which the shared machine's load leaves "
                        f"alone); equal_b_memory: B = {EQUAL_B} "
                        f"on the {LONG_HISTORY_USERS} longest-history users")
    (out / "training.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    p = argparse.ArgumentParser(prog="python -m hiertcn.training_bench")
    sub = p.add_subparsers(dest="which", required=True)
    t = sub.add_parser("truncation")
    t.add_argument("--shapes", nargs="+", default=["4x2"], help="BxS batch shapes")
    t.add_argument("--bptt", type=int, nargs="+", default=[0, 2, 8])
    t.add_argument("--untied", type=int, nargs="+", default=[0], help="0 tied, 1 untied")
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, default=RESULTS / "truncation.json")
    sp = sub.add_parser("speed")
    sp.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = "python -m hiertcn.training_bench " + " ".join(sys.argv[1:] if argv is None
                                                             else argv)
    if args.which == "truncation":
        report = truncation(args.shapes, args.bptt, [bool(u) for u in args.untied],
                            args.epochs, args.lr, args.seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**report, "command": command}, indent=1))
    else:
        print(json.dumps(speed(args.out, command)["ratios"], indent=2))


if __name__ == "__main__":
    main()
