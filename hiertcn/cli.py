"""`hiertcn prepare | train | evaluate | export | bench | data` (also `python -m hiertcn`).

Every command prints one line and exits 2 on a bad option or data file; the resolved
configuration is logged at start and saved next to what the command writes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from hiertcn import bench
from hiertcn.accuracy import options as accuracy_options
from hiertcn.checkpoint import CHECKPOINT_FILE, export, load_checkpoint, save_checkpoint
from hiertcn.data import datasets
from hiertcn.data.cache import load_splits
from hiertcn.data.loaders import FORMATS
from hiertcn.data.sessions import SessionConfig
from hiertcn.data.splits import SPLITS, SplitConfig
from hiertcn.errors import ConfigError, DataError, HierTCNError
from hiertcn.evaluate import evaluate
from hiertcn.item_vectors import cooccurrence_vectors
from hiertcn.losses import LOSSES, LossConfig
from hiertcn.model import KNOBS, ModelConfig, knob_problem
from hiertcn.models import NEURAL_MODELS, TRAIN_DEFAULTS, build_model, model_config
from hiertcn.train import PRESETS, TrainConfig, count_parameters, fit

DEFAULT_DATA = Path(__file__).resolve().parent.parent / "data" / "movielens.csv.gz"
log = logging.getLogger("hiertcn")


# ---- shared option groups ------------------------------------------------------------

def add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="interaction log (default: the shipped MovieLens)")
    g.add_argument("--format", choices=FORMATS, default=None,
                   help="file format (default: detected from the file)")
    g.add_argument("--cache-dir", type=Path, default=Path(".cache/hiertcn"),
                   help="where pre-built session tensors are kept (default: %(default)s)")
    d = SessionConfig()
    g.add_argument("--gap-s", type=int, default=d.gap_s,
                   help="inactivity gap in seconds that ends a session (default: %(default)s)")
    g.add_argument("--max-session-len", type=int, default=d.max_session_len,
                   help="longer sessions are cut into pieces (default: %(default)s)")
    g.add_argument("--min-item-count", type=int, default=d.min_item_count,
                   help="drop items seen fewer times (default: %(default)s)")
    g.add_argument("--min-sessions-per-user", type=int, default=d.min_sessions_per_user,
                   help="drop users with fewer sessions (default: %(default)s)")
    g.add_argument("--keep-repeats", action="store_true",
                   help="keep consecutive clicks on the same item (default: drop them)")
    s = SplitConfig()
    g.add_argument("--split", choices=SPLITS, default=s.kind,
                   help="'user': 80/10/10 by user, the paper's protocol; 'time': the last "
                        "period is held out (default: %(default)s)")
    g.add_argument("--split-seed", type=int, default=s.seed, help="which users go where")


def data_configs(args) -> tuple[SessionConfig, SplitConfig]:
    return (SessionConfig(gap_s=args.gap_s, max_session_len=args.max_session_len,
                          drop_repeats=not args.keep_repeats,
                          min_item_count=args.min_item_count,
                          min_sessions_per_user=args.min_sessions_per_user),
            SplitConfig(kind=args.split, seed=args.split_seed))


def load_data(args):
    sessions, splits = data_configs(args)
    return load_splits(args.data, args.format, sessions, splits, args.cache_dir), sessions, splits


TRAIN_HELP = {
    "bptt_sessions": "HierTCN: how many sessions before each batch the high level's "
                     "gradient still reaches (truncated backprop; 0: the batch's own) ",
    "lr_decay": "factor of the step decay at --lr-decay-epochs ",
}


def add_train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    d = TrainConfig()
    for f in fields(TrainConfig):
        if f.name in ("loss", "max_seconds", "lr_decay_epochs"):
            continue
        g.add_argument("--" + f.name.replace("_", "-"), type=type(getattr(d, f.name)),
                       default=None, help=TRAIN_HELP.get(f.name, "") +
                       f"(default: {getattr(d, f.name)}, or the model's own)")
    g.add_argument("--lr-decay-epochs", type=int, nargs="*", default=None, metavar="EPOCH",
                   help="multiply the learning rate by --lr-decay after each of these epochs "
                        "(default: none)")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="authors: HierTCN trained as the released code (32 queues x 10 "
                        "sessions, lr 1e-2 / 5 at epochs 60, 120, no dropout, untied output "
                        "with item bias); options given still win")
    g.add_argument("--loss", choices=LOSSES, default="softmax",
                   help="softmax over all items, or sampled max-margin (default: %(default)s)")
    g.add_argument("--max-seconds", type=float, default=None,
                   help="stop training after this many seconds")


def train_config(args) -> TrainConfig:
    """Options given on the command line > the model's defaults > TrainConfig's."""
    names = {f.name for f in fields(TrainConfig)} - {"loss"}
    given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    preset = preset_settings(args)["train"]
    return TrainConfig(loss=LossConfig(kind=args.loss),
                       **{**TRAIN_DEFAULTS.get(getattr(args, "model", ""), {}), **preset,
                          **given})


def preset_settings(args) -> dict:
    """The --preset's settings, {"train": {...}, "model": {...}}; HierTCN's only."""
    if getattr(args, "preset", None) is None:
        return {"train": {}, "model": {}}
    if args.model not in HIERTCN_KINDS:
        raise ConfigError(f"--preset {args.preset}: trains HierTCN, not {args.model}: drop "
                          f"it, or train --model hiertcn")
    return PRESETS[args.preset]


KNOB_HELP = {  # ModelConfig's knobs, as `hiertcn train --help` explains them
    "item_dim": "item-embedding size, also the user embedding's",
    "channels": "TCN width",
    "kernel_size": "TCN kernel size",
    "levels": "TCN residual blocks, the i-th with dilation 2^i",
    "gru_hidden": "high-level GRU units per layer",
    "gru_layers": "high-level GRU layers",
    "dropout": "dropout in every TCN block",
}
HIERTCN_KINDS = ("hiertcn", "hiertcn_low")


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model sizes (hiertcn and hiertcn_low)")
    d = ModelConfig(n_items=1)
    for name in KNOBS:
        g.add_argument(option(name), metavar=type(getattr(d, name)).__name__.upper(),
                       default=None, help=f"{KNOB_HELP[name]} (default: {getattr(d, name)})")
    g.add_argument("--untied-output", action=argparse.BooleanOptionalAction, default=None,
                   help="score against own output item vectors plus a per-item bias "
                        "(released code) instead of the input table (default: tied)")


def model_sizes(args) -> dict:
    """The model knobs given on the command line, checked; each problem is an error
    naming its option."""
    defaults = ModelConfig(n_items=1)
    sizes = {}
    for name in KNOBS:
        raw = getattr(args, name)
        if raw is None:
            continue
        value = _parse(raw, type(getattr(defaults, name)))
        problem = knob_problem(name, value)
        if problem:
            raise ConfigError(f"{option(name)}: {problem}")
        sizes[name] = value
    if args.untied_output is not None:
        sizes["untied_output"] = args.untied_output
    if sizes and args.model not in HIERTCN_KINDS:
        raise ConfigError(f"{option(next(iter(sizes)))}: sizes HierTCN, not {args.model}: "
                          f"drop it, or train --model hiertcn")
    return sizes


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse(raw: str, kind: type):
    """int or float of `raw`; `raw` itself when it is not one (the check names it)."""
    try:
        return kind(raw)
    except ValueError:
        return raw


# ---- commands ------------------------------------------------------------------------

def cmd_prepare(args) -> None:
    parts, _, _ = load_data(args)
    for name, part in parts.items():
        print(f"{name:5s} {part.summary()}")


def cmd_train(args) -> None:
    sizes = {**preset_settings(args)["model"], **model_sizes(args)}
    config = train_config(args)
    parts, sess_cfg, split_cfg = load_data(args)
    n_items = parts["train"].n_items
    item_dim = model_config(args.model, n_items, **sizes).item_dim
    vectors = initial_item_vectors(args, parts["train"], item_dim)
    model = build_model(args.model, n_items, vectors, args.item_vectors is not None, **sizes)
    resolved = {"model": args.model, "model_config": model.config.to_dict(),
                "train": config.to_dict(), "session_config": sess_cfg.to_dict(),
                "split_config": split_cfg.to_dict(), "data": str(args.data),
                "params": count_parameters(model)}
    log.info("resolved config: %s", json.dumps(resolved))
    result = fit(model, parts["train"], parts["val"], config, name=args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(resolved, indent=2))
    (out / "curve.json").write_text(json.dumps(result.curve, indent=2))
    save_checkpoint(out / CHECKPOINT_FILE, model, parts["train"].item_ids,
                    step=result.best_epoch, session=sess_cfg,
                    extra={k: v for k, v in resolved.items()
                           if k not in ("model_config", "session_config")})
    print(f"best epoch {result.best_epoch}: val " + format_metrics(result.best_val))
    print(f"checkpoint: {out / CHECKPOINT_FILE}")


def cmd_evaluate(args) -> None:
    model, ckpt = load_checkpoint(args.checkpoint)
    # evaluate on the sessions and split it was trained for, as far as recorded
    recorded = ckpt.get("session_config", {})
    for name in ("gap_s", "max_session_len", "min_item_count", "min_sessions_per_user"):
        setattr(args, name, recorded.get(name, getattr(args, name)))
    args.keep_repeats = not recorded.get("drop_repeats", not args.keep_repeats)
    if "split_config" in ckpt:
        args.split = ckpt["split_config"]["kind"]
        args.split_seed = ckpt["split_config"]["seed"]
    parts, _, _ = load_data(args)
    if list(parts["test"].item_ids) != ckpt["item_ids"]:
        raise DataError(f"{args.data} with these options gives another item catalogue than "
                        f"the checkpoint was trained on: use the same data options")
    print("test " + format_metrics(evaluate(model, parts["test"])))


def cmd_export(args) -> None:
    out = export(args.checkpoint, args.out)
    print(f"export written to {out}: " + (out / "meta.json").read_text().replace("\n", " "))


def cmd_bench(args) -> None:
    bench.main(args)  # `bench training`; `bench accuracy` is hiertcn.accuracy.options.main


def cmd_data(args) -> None:
    if args.action == "list":
        root = datasets.cache_root(args.cache)
        for s in datasets.DATASETS.values():
            print(f"{s.name}: {s.what}\n  source: {s.source}\n  terms: {s.terms}\n"
                  f"  real sessions: {'yes' if s.real_sessions else 'no'}; "
                  f"fetch: {'shipped' if s.artifact is None else root / s.name}")
        return
    if not args.names:
        raise ConfigError(f"data fetch: name a data set: {', '.join(datasets.DATASETS)}")
    for name in args.names:
        datasets.spec(name)  # every name checked before anything is downloaded
    for name in args.names:
        print(f"{name}: {datasets.fetch(name, args.cache)}")


def initial_item_vectors(args, train, dim: int) -> torch.Tensor | None:
    """(n_items, dim) from --item-vectors FILE (to be frozen), else --item-init cooc;
    None for --item-init random."""
    if args.item_vectors:
        return load_item_vectors(args.item_vectors, train.item_ids, dim)
    if args.item_init == "cooc":
        return torch.from_numpy(cooccurrence_vectors(train, dim))
    return None


def load_item_vectors(path: Path, item_ids: np.ndarray, dim: int) -> torch.Tensor:
    """A .npz with `ids` (N,) and `vectors` (N, D): frozen item vectors, as the
    Pinterest variant of the released code uses."""
    try:
        npz = np.load(path, allow_pickle=False)
        ids, vectors = [str(i) for i in npz["ids"]], npz["vectors"].astype(np.float32)
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"cannot read item vectors from {path} (a .npz with 'ids' and "
                        f"'vectors' is expected): {err}") from None
    row = {item: i for i, item in enumerate(ids)}
    missing = [i for i in item_ids if i not in row]
    if missing:
        raise DataError(f"{path} has no vector for {len(missing)} items of the data, "
                        f"e.g. {missing[0]!r}")
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise DataError(f"{path} has vectors of shape {vectors.shape[1:]}, the model's "
                        f"item table takes ({dim},): set --item-dim to match")
    return torch.from_numpy(vectors[[row[i] for i in item_ids]])


def format_metrics(m: dict) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in m.items() if k != "events") + \
        f" ({m.get('events', 0)} events)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hiertcn", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare", help="sessionise, split and cache a data file")
    add_data_options(p)
    p.set_defaults(run=cmd_prepare)

    p = sub.add_parser("train", help="train a model, early-stopped on validation MRR@20")
    add_data_options(p)
    add_train_options(p)
    add_model_options(p)
    p.add_argument("--model", choices=NEURAL_MODELS, default="hiertcn",
                   help="hiertcn_low: HierTCN without the high level (default: %(default)s)")
    p.add_argument("--item-vectors", type=Path, default=None,
                   help=".npz with ids and vectors: load item vectors frozen")
    p.add_argument("--item-init", choices=("cooc", "random"), default="cooc",
                   help="start item vectors from training co-occurrence (PPMI + SVD) or "
                        "at random (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("runs/hiertcn"),
                   help="run folder for checkpoint, config and curve (default: %(default)s)")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("evaluate", help="metrics on the test split (the only reader of it); "
                                        "session and split options as recorded in training")
    add_data_options(p)
    p.add_argument("--checkpoint", type=Path, default=Path("runs/hiertcn"),
                   help="a run folder of `hiertcn train --out`, or a checkpoint file, of "
                        "any model (default: %(default)s)")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("export", help="write what the stream worker loads (HierTCN only)")
    p.add_argument("--checkpoint", type=Path, default=Path("runs/hiertcn"),
                   help="a run folder or checkpoint file of hiertcn or hiertcn_low "
                        "(default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("artifacts/export"),
                   help="export folder (default: %(default)s)")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("bench", help="accuracy and training benchmarks -> benchmarks/results")
    which = p.add_subparsers(dest="which", required=True, metavar="BENCHMARK")
    accuracy_options.add_parser(which).set_defaults(run=accuracy_options.main)
    t = which.add_parser("training", help="events/s and peak memory per neural model, one "
                                          "thread, fresh process per figure -> training.json")
    t.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    t.set_defaults(run=cmd_bench)

    p = sub.add_parser("data", help="list the named data sets, or fetch them into a local "
                                     "cache (checked by sha256, never committed)")
    p.add_argument("action", choices=("list", "fetch"))
    p.add_argument("names", nargs="*", metavar="NAME", help="data sets to fetch")
    p.add_argument("--cache", type=Path, default=None,
                   help=f"cache folder (default: ${datasets.CACHE_ENV}, else "
                        f"{datasets.DEFAULT_CACHE} under the current directory)")
    p.set_defaults(run=cmd_data)

    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed, for results files
    try:
        args.run(args)
    except HierTCNError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
