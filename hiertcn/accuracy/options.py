"""`hiertcn bench accuracy` options -> a `Plan`; precedence: an option given > --quick's
setting > the plan's default. Every bad value is one ConfigError line naming it."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path

from hiertcn.accuracy import progress, runner, table, tries
from hiertcn.accuracy.grids import MODELS
from hiertcn.accuracy.plan import DATASETS, QUICK_USERS, Plan, check_paths, jobs
from hiertcn.data import datasets
from hiertcn.train import PRESETS

log = logging.getLogger("hiertcn.accuracy")
PROBE_S = 1.5  # seconds of training per configuration in the timing probe
QUICK = {"datasets": ("movielens-small",), "models": ("hiertcn", "gru4rec", "sknn", "pop"),
         "folds": 2, "trials": 1, "epochs": 1, "bootstrap": 200, "max_users": QUICK_USERS,
         "single_split": ()}
QUICK_PROBE_S = 0.2


NUMBERS = (  # option, type, help with {} for the default
    ("--folds", int, "K of the K-fold over users, every user a test user once (default: {})"),
    ("--test-share", float, "test users of a single split, a share of all users (default: "
                            "{:.4f} = 1/7: 522 filtered MovieLens-1M test users)"),
    ("--trials", int, "configurations each model tries from its own grid (learning rate, "
                      "batch shape, dropout), its defaults first (default: {})"),
    ("--tune-users", int, "tuning trains on this many of fold 0's training users, drawn "
                          "with --seed; 0: all of them (default: {})"),
    ("--epochs", int, "epoch cap per fit; early stopping on validation MRR@20 usually ends "
                      "sooner (default: {})"),
    ("--patience", int, "epochs without a better validation MRR@20 before a fit stops "
                        "(default: {})"),
    ("--time-limit", float, "seconds per fit, a safety net; the results say whether it "
                            "ended any fit (default: {:.0f})"),
    ("--bootstrap", int, "paired bootstrap replicates over test users for the lifts' 95%% "
                         "CIs (default: {})"),
    ("--seed", int, "users to folds, tuning draws, initialisation (default: {})"),
    ("--workers", int, "child processes running jobs, one torch thread each (default: {}, "
                       "this machine's cores)"),
)
_FIELD = {"--time-limit": "time_limit_s"}  # option -> Plan field where the names differ
_ATTR = {field: flag[2:].replace("-", "_") for flag, field in _FIELD.items()}


def add_parser(sub) -> argparse.ArgumentParser:
    d = Plan()
    p = sub.add_parser(
        "accuracy", help="every model, cross-validated over users, tuned on validation, "
                         "lifts with bootstrap CIs -> accuracy.json",
        description="Accuracy benchmark: for each data set and fold, every model tuned on "
                    "validation with the same number of configurations, early-stopped on "
                    "validation MRR@20, scored once on test users; paired bootstrap CIs of "
                    "HierTCN's lifts. Jobs run in child processes, one thread each.")
    p.add_argument("--datasets", nargs="+", metavar="NAME", default=None,
                   help=f"named data sets ({', '.join(datasets.DATASETS)}); fetched and "
                        f"checked first (default: {' '.join(DATASETS)})")
    p.add_argument("--models", nargs="+", metavar="NAME", default=None,
                   help=f"models to compare (default: all: {' '.join(MODELS)})")
    p.add_argument("--single-split", nargs="*", metavar="NAME", default=None,
                   help=f"data sets that get one user split instead of K folds, with "
                        f"--test-share of the users as test (default: "
                        f"{' '.join(d.single_split)}; give none for K-fold everywhere)")
    for flag, kind, text in NUMBERS:
        field = _FIELD.get(flag, flag[2:].replace("-", "_"))
        p.add_argument(flag, type=kind, default=None, metavar=kind.__name__.upper(),
                       help=text.format(getattr(d, field)))
    p.add_argument("--quick", action="store_true",
                   help=f"a CI-sized run of the same code: {QUICK_USERS} users of the "
                        f"shipped MovieLens, 2 folds, 1 epoch, 1 trial, models "
                        f"{' '.join(QUICK['models'])}; options given still win")
    p.add_argument("--plan", action="store_true",
                   help="print the jobs and the estimated wall time (from a short timing "
                        "probe on fold 0 of each data set) without running them")
    p.add_argument("--status", action="store_true",
                   help="print how far a run with these settings has come (jobs done and "
                        "left, the best validation figure of each model's tuning, test "
                        "figures of the folds done), read from its journal; runs nothing")
    p.add_argument("--try", dest="try_spec", metavar="CONFIG", default=None,
                   help="train one more tuning trial per data set, validation only, beside "
                        "the run's own trials (read from its journal): a preset ("
                        + ", ".join(PRESETS) + ") or JSON '{\"train\": {...}, \"model\": "
                        "{...}}' over the tuned configuration; -> accuracy_tries.json")
    p.add_argument("--try-models", nargs="+", metavar="NAME", default=["hiertcn"],
                   help="the models --try trains (default: hiertcn)")
    p.add_argument("--fresh", action="store_true",
                   help="run every job again instead of resuming: by default a run goes on "
                        "where a stopped run with the same settings stopped (finished jobs "
                        "are kept under the --journal folder)")
    p.add_argument("--journal", type=Path, default=None, metavar="DIR",
                   help="folder of finished jobs, one subfolder per plan's settings; point "
                        "it into the checkout and commit it to resume a run that takes "
                        "longer than a machine lasts (default: CACHE_DIR/accuracy-journal)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                   help="folder for accuracy.json and accuracy_runs.json (default: %(default)s)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help=f"data and item-vector cache (default: {d.cache_dir})")
    return p


def plan_from_args(args) -> Plan:
    """Options given > --quick's settings > Plan's defaults; ConfigError on a bad one."""
    chosen = dict(QUICK) if args.quick else {}
    for f in fields(Plan):
        value = getattr(args, _ATTR.get(f.name, f.name), None)
        if value is not None:
            chosen[f.name] = tuple(value) if isinstance(value, list) else value
    if "cache_dir" in chosen:
        chosen["cache_dir"] = str(chosen["cache_dir"])
    for name in (*chosen.get("datasets", ()), *chosen.get("single_split", ())):
        datasets.spec(name)  # an unknown name is a one-line ConfigError
    return Plan(**chosen)


def main(args) -> None:
    plan = plan_from_args(args)
    check_paths(args.out)
    if args.status:
        print(progress.summary(plan, args.journal))
        return
    if args.try_spec is not None:
        tries.run(plan, args.try_spec, tuple(args.try_models), args.out, args.journal)
        print(f"\nresults: {args.out / 'accuracy_tries.json'}")
        return
    probe_s = QUICK_PROBE_S if args.quick else PROBE_S
    if args.plan:
        todo = jobs(plan)
        runner.print_plan(plan, todo, runner.make_plan(plan, runner.sources(plan), todo,
                                                       probe_s))
        return
    report = runner.run(plan, args.out, command_line(args), probe_s, fresh=args.fresh,
                        journal_root=args.journal)
    print(table.markdown(report))
    print(f"\nresults: {args.out / 'accuracy.json'}")


def command_line(args) -> str:
    """The command as typed, for the results file."""
    prog = "hiertcn" if sys.argv[0].endswith("hiertcn") else "python -m hiertcn"
    return " ".join([prog, *getattr(args, "argv", sys.argv[1:])])
