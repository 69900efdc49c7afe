"""The accuracy benchmark's protocol: folds over users, filters fitted on training users
only, the paired bootstrap of lifts, the tuning budget, the plan, the CLI, and a
CI-sized run of the same runner (`hiertcn bench accuracy --quick`) end to end."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from hiertcn.accuracy.estimate import schedule
from hiertcn.accuracy.grids import MODELS, default_config, grid, trial_configs
from hiertcn.accuracy.plan import Job, Plan, jobs
from hiertcn.cli import build_parser, cmd_bench, main
from hiertcn.data.cache import build_splits
from hiertcn.data.sessions import SessionConfig
from hiertcn.data.splits import SplitConfig, user_parts
from hiertcn.errors import ConfigError
from hiertcn.metrics import metrics_from_ranks
from hiertcn.models import build_model
from hiertcn.stats import lift_ci, pooled, user_sums
from hiertcn.train import TrainConfig, fit

torch.set_num_threads(1)


# ------------------------------------------------------------------ folds over users

@pytest.mark.parametrize("n_users, folds", [(103, 5), (10, 2), (7, 7)])
def test_folds_make_every_user_a_test_user_exactly_once(n_users, folds):
    tested = np.concatenate([user_parts(n_users, SplitConfig(folds=folds, fold=k))["test"]
                             for k in range(folds)])
    assert sorted(tested) == list(range(n_users))


@pytest.mark.parametrize("fold", range(5))
def test_no_user_is_in_two_parts_and_validation_comes_from_the_training_side(fold):
    parts = user_parts(200, SplitConfig(folds=5, fold=fold, val_frac=0.1))
    train, val, test = (set(parts[k]) for k in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(range(200))
    assert len(test) == 40 and len(val) == 20  # the fold, and 10% of all users


def test_single_split_has_the_test_share_asked_for():
    parts = user_parts(700, SplitConfig(test_frac=1 / 7))
    assert len(parts["test"]) == 100 and len(parts["val"]) == 70


def test_bad_fold_settings_are_config_errors():
    for bad in ({"folds": 0}, {"folds": 5, "fold": 5}, {"folds": 2, "val_frac": 0.6},
                {"folds": 3, "kind": "time"}):
        with pytest.raises(ConfigError):
            SplitConfig(**bad)


# ------------------------------------------------------------------------- filters

CONFIG = SplitConfig(folds=2, fold=0, val_frac=0.2, seed=3)
USERS = [f"u{k}" for k in range(10)]


def log(extra_test_rows=()) -> pd.DataFrame:
    """Every user: two sessions of a, b, c (two hours apart), then `extra_test_rows`."""
    rows = []
    for u in USERS:
        for s in range(2):
            rows += [(u, item, 7200 * s + t) for t, item in enumerate(["a", "b", "c"])]
    return pd.DataFrame(rows + list(extra_test_rows), columns=["user", "item", "ts"])


def parts_of(frame):
    return build_splits(frame, SessionConfig(), CONFIG)


def test_an_item_only_test_users_click_is_not_in_the_catalogue():
    test_users = [USERS[i] for i in user_parts(10, CONFIG)["test"]]
    extra = [(u, "test-only", 100 + t) for u in test_users for t in range(5)]
    parts = parts_of(log(extra))
    assert "test-only" not in parts["train"].item_ids
    assert list(parts["test"].item_ids) == list(parts["train"].item_ids)


def test_item_counts_come_from_training_users_only():
    ids = user_parts(10, CONFIG)
    train_user, test_users = USERS[ids["train"][0]], [USERS[i] for i in ids["test"]]
    def clicks(user, n, t0=20_000):  # "rare" n times, never twice in a row
        return [(user, item, t0 + 2 * t + k) for t in range(n)
                for k, item in enumerate(("rare", "a"))]

    # 4 training clicks (under min_item_count 5) and 10 test clicks: dropped
    rare = clicks(train_user, 4) + [row for u in test_users for row in clicks(u, 2)]
    assert "rare" not in parts_of(log(rare))["train"].item_ids
    # the same item with 5 training clicks stays, whatever the test users do
    assert "rare" in parts_of(log(rare + clicks(train_user, 1, 30_000)))["train"].item_ids


def test_test_users_data_never_changes_the_training_part():
    test_users = [USERS[i] for i in user_parts(10, CONFIG)["test"]]
    before = parts_of(log())
    after = parts_of(log([(u, f"x{t % 3}", 50_000 + t) for u in test_users for t in range(30)]))
    for field in ("items", "session_offsets", "user_offsets", "user_ids", "item_ids"):
        assert np.array_equal(getattr(before["train"], field), getattr(after["train"], field))


def test_removing_a_rare_item_drops_the_repeat_it_leaves_and_short_users():
    rows = [("v", "a", 0), ("v", "rare", 1), ("v", "a", 2), ("v", "b", 3), ("v", "a", 9000)]
    rows += [(u, item, 9000 * s + t) for u in USERS for s in range(2)
             for t, item in enumerate("ab")]
    frame = pd.DataFrame(rows, columns=["user", "item", "ts"])
    config = SplitConfig(folds=2, fold=0, seed=0)
    n = len(set(frame["user"]))
    users = sorted(set(frame["user"]))
    parts = build_splits(frame, SessionConfig(min_item_count=5), config)
    part = next(name for name, ids in user_parts(n, config).items() if users.index("v") in ids)
    s = parts[part]
    v = list(s.user_ids).index("v")
    first = s.session(s.user_sessions(v)[0])
    # a, rare, a, b -> a, a, b without "rare" -> a, b: the new repeat goes too
    assert [s.item_ids[i] for i in first] == ["a", "b"]


# ------------------------------------------------------------------------ bootstrap

def ranks_per_user(seed: int, n_users: int = 80, good: bool = False) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 8 if good else 60, size=rng.integers(3, 30)) for _ in range(n_users)]


def test_per_user_sums_pool_to_the_evaluators_metrics():
    ranks = ranks_per_user(0)
    sums, counts = user_sums(ranks)
    expected = metrics_from_ranks(np.concatenate(ranks))
    got = pooled(sums, counts)
    assert got == pytest.approx({k: expected[k] for k in got})
    assert counts.tolist() == [len(r) for r in ranks]


def test_identical_models_have_lift_zero_and_a_ci_containing_zero():
    sums, _ = user_sums(ranks_per_user(1))
    ci = lift_ci(sums["recall@20"], sums["recall@20"], 1000, seed=0)
    assert ci["mean"] == 0 and ci["ci95"][0] <= 0 <= ci["ci95"][1]


def test_a_clearly_better_model_has_its_whole_ci_above_zero():
    good, _ = user_sums(ranks_per_user(2, good=True))
    bad, _ = user_sums(ranks_per_user(2))
    ci = lift_ci(good["mrr@20"], bad["mrr@20"], 2000, seed=0)
    assert ci["ci95"][0] > 0.5 and ci["ci95"][0] < ci["mean"] < ci["ci95"][1]


def test_a_uniform_lift_is_exact_and_the_bootstrap_is_seeded():
    b = np.random.default_rng(3).random(50)
    assert lift_ci(1.25 * b, b, 500, seed=0)["ci95"] == pytest.approx([0.25, 0.25])
    noisy = b + np.random.default_rng(4).random(50)
    assert lift_ci(noisy, b, 500, seed=7) == lift_ci(noisy, b, 500, seed=7)
    assert lift_ci(noisy, b, 500, seed=7) != lift_ci(noisy, b, 500, seed=8)


def test_no_lift_against_a_model_that_scored_nothing():
    assert lift_ci(np.ones(5), np.zeros(5), 200, seed=0) == {"mean": None, "ci95": [None, None]}


# -------------------------------------------------------------------- tuning budget

def test_every_model_gets_the_same_number_of_configurations_its_defaults_first():
    for model in MODELS:
        configs = trial_configs(model, 4, seed=0)
        assert configs[0] == default_config(model)
        assert len(configs) == min(4, len(grid(model)))
        assert all(c in grid(model) for c in configs[1:])
        assert len({json.dumps(c, sort_keys=True) for c in configs}) == len(configs)
        assert configs == trial_configs(model, 4, seed=0)


def test_neural_grids_span_learning_rate_batch_shape_and_dropout():
    for model in ("hiertcn", "gru4rec", "hrnn", "tcn", "sasrec"):
        points = grid(model)
        assert len({p["train"]["lr"] for p in points}) > 1
        assert len({p["train"]["batch_size"] for p in points}) > 1
        assert len({p["model"]["dropout"] for p in points}) > 1
    assert {"batch_size": 32, "sessions_per_batch": 10}.items() <= \
        grid("hiertcn")[-1]["train"].items()


def test_fits_wait_for_their_fold_and_every_tuning_trial_of_their_model():
    plan = Plan(datasets=("movielens-small",), models=("hiertcn", "pop"), folds=3, trials=3)
    todo = jobs(plan)
    keys = [j.key for j in todo]
    fits = [j for j in todo if j.kind == "fit" and j.model == "hiertcn"]
    assert len(fits) == 3 and sum(j.kind == "tune" for j in todo) == 3  # pop: one config
    for job in fits:
        assert f"prepare movielens-small fold {job.fold}" in job.needs
        assert {k for k in job.needs if k.startswith("tune")} == \
            {f"tune movielens-small hiertcn trial {t}" for t in range(3)}
        assert all(keys.index(k) < keys.index(job.key) for k in job.needs)


def test_the_wall_time_schedule_respects_cores_and_dependencies():
    a, b, c = Job("prepare", "x", 0), Job("prepare", "x", 1), Job("prepare", "x", 2)
    assert schedule([a, b, c], {a.key: 1, b.key: 1, c.key: 1}, workers=2) == 2
    d = Job("fit", "x", 0, "m", 0, (a.key, b.key))
    assert schedule([a, b, d], {a.key: 1, b.key: 3, d.key: 5}, workers=2) == 8


def test_fit_says_why_it_stopped():
    rows = [(f"u{u}", f"i{(u + s + t) % 7}", 7200 * s + t)
            for u in range(6) for s in range(3) for t in range(4)]
    parts = build_splits(pd.DataFrame(rows, columns=["user", "item", "ts"]),
                         SessionConfig(min_item_count=1), SplitConfig(folds=3))
    train, val = parts["train"], parts["test"]
    model = build_model("gru4rec", train.n_items, hidden=8, item_dim=8)
    assert fit(model, train, val, TrainConfig(epochs=1), progress=False).stopped == "epochs"
    timed = fit(model, train, val, TrainConfig(epochs=3, max_seconds=1e-9), progress=False)
    assert timed.stopped == "time" and len(timed.curve) == 1


# ------------------------------------------------------------------------------ CLI

@pytest.mark.parametrize("bad, named", [
    (["--folds", "1"], "--folds"), (["--models", "hiertcn", "nope"], "--models"),
    (["--datasets", "nope"], "nope"), (["--tune-users", "1"], "--tune-users"),
    (["--test-share", "0.7"], "--test-share"), (["--workers", "0"], "--workers")])
def test_bad_options_are_one_line_errors(bad, named, capsys, tmp_path):
    assert main(["bench", "accuracy", *bad, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and named in err and "\n" not in err


def test_bench_training_is_still_there():
    args = build_parser().parse_args(["bench", "training", "--out", "x"])
    assert args.run is cmd_bench and str(args.out) == "x"


def test_plan_prints_jobs_and_an_estimate_and_runs_nothing(capsys, tmp_path):
    out = tmp_path / "results"
    assert main(["bench", "accuracy", "--quick", "--plan", "--models", "hiertcn", "pop",
                 "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    text = capsys.readouterr().out
    assert "fit movielens-small hiertcn fold 1" in text and "estimated wall time" in text
    assert not (out / "accuracy.json").exists()


def test_quick_run_writes_every_key_with_sane_values(tmp_path, capsys):
    """The CI-sized run of the benchmark's own code: 100 users, 2 folds, 1 epoch."""
    out = tmp_path / "results"
    assert main(["bench", "accuracy", "--quick", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "| hiertcn |" in capsys.readouterr().out
    report = json.loads((out / "accuracy.json").read_text())
    assert set(report) == {"command", "protocol", "datasets"}
    assert "bench accuracy --quick" in report["command"]
    protocol = report["protocol"]
    assert protocol["folds"] == 2 and protocol["bootstrap"] == 200
    assert protocol["plan"]["jobs"] == {"prepare": 2, "tune": 0, "fit": 8}
    assert protocol["wall_s"] > 0 and protocol["time_limit_bound"] is False
    assert protocol["reduced"]["epochs"] == {"this_run": 1, "full": 30}
    assert protocol["reduced"]["datasets"]["this_run"] == ["movielens-small"]
    d = report["datasets"]["movielens-small"]
    assert set(d) == {"users", "events", "sessions", "real_sessions", "models", "lift"}
    assert d["real_sessions"] is False and 20 < d["users"] < 100 and d["events"] > d["users"]
    assert set(d["models"]) == {"hiertcn", "gru4rec", "sknn", "pop"}
    for m in d["models"].values():
        assert set(m) == {"recall@20", "mrr@20", "ndcg@20", "recall@10", "mrr@10", "epochs",
                          "tuning_trials"}
        assert 0 < m["mrr@10"] <= m["mrr@20"] <= m["recall@20"] <= 1
        assert m["recall@10"] <= m["recall@20"] and m["tuning_trials"] == 1
    assert d["models"]["hiertcn"]["epochs"] == 1 and d["models"]["pop"]["epochs"] == 0
    assert set(d["lift"]) == {"hiertcn_vs_best_neural", "hiertcn_vs_best_overall",
                              "hiertcn_vs_best_recurrent_or_tcn", "hiertcn_vs_each"}
    neural = d["lift"]["hiertcn_vs_best_neural"]
    assert set(neural) == {"recall@20", "mrr@20"} and neural["mrr@20"]["against"] == "gru4rec"
    each = d["lift"]["hiertcn_vs_each"]
    assert set(each) == {"gru4rec", "sknn", "pop"}  # every baseline run, hiertcn_low never
    assert each["gru4rec"] == d["lift"]["hiertcn_vs_best_recurrent_or_tcn"]  # the only one
    for lift in (*neural.values(), *d["lift"]["hiertcn_vs_best_overall"].values(),
                 *(v for by_metric in each.values() for v in by_metric.values())):
        lo, hi = lift["ci95"]
        assert lo <= lift["mean"] <= hi
    runs = json.loads((out / "accuracy_runs.json").read_text())
    fits = [r for r in runs if r["kind"] == "fit"]
    assert sorted((r["model"], r["fold"]) for r in fits) == \
        sorted((m, k) for m in d["models"] for k in (0, 1))
    assert sum(r["users"] for r in fits if r["model"] == "pop") == d["users"]
    assert (out / "accuracy_curves.png").stat().st_size > 10_000
    # started again with the same settings, its journal moved (--journal: as a checkout
    # carries it to another machine): every job comes from the journal, the figures
    # are the same; a lost entry is the only job run again
    shutil.move(tmp_path / "cache" / "accuracy-journal", tmp_path / "kept")
    journal = next((tmp_path / "kept").iterdir())
    entries = sorted(journal.glob("*.json"))
    assert len(entries) == 10
    entries[0].unlink()
    capsys.readouterr()
    assert main(["bench", "accuracy", "--quick", "--status", "--journal", str(tmp_path / "kept"),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    status = capsys.readouterr().out
    assert "9 of 10 jobs done" in status and "left, in the plan's order: " in status
    assert "folds 2/2" in status and "folds 1/2" in status  # the lost one is the 1 of 2
    assert not (tmp_path / "cache" / "accuracy-journal").exists()  # --status ran nothing
    assert main(["bench", "accuracy", "--quick", "--out", str(out), "--journal",
                 str(tmp_path / "kept"), "--cache-dir", str(tmp_path / "cache")]) == 0
    again = json.loads((out / "accuracy.json").read_text())
    assert again["protocol"]["plan"]["resumed"]["jobs"] == 9
    assert again["datasets"] == report["datasets"]
    assert len(list(journal.glob("*.json"))) == 10  # the lost job ran and was journalled again


def test_a_try_trains_one_more_trial_on_validation_beside_the_runs_own(tmp_path, capsys):
    """--try: the authors' preset over a finished run's tuning, validation only; the
    run's results stay as they were and its tuned trial is the comparison."""
    out, cache = tmp_path / "results", str(tmp_path / "cache")
    run = ["bench", "accuracy", "--quick", "--models", "hiertcn", "--trials", "2",
           "--out", str(out), "--cache-dir", cache]
    assert main(run) == 0
    before = (out / "accuracy.json").read_text()
    capsys.readouterr()
    assert main([*run, "--try", "authors"]) == 0
    printed = capsys.readouterr().out
    assert "hiertcn try authors: validation MRR@20" in printed and "tuned trial" in printed
    assert (out / "accuracy.json").read_text() == before  # a try never touches the results
    tries = json.loads((out / "accuracy_tries.json").read_text())["tries"]
    assert len(tries) == 1
    t = tries[0]
    assert t["dataset"] == "movielens-small" and t["model"] == "hiertcn"
    assert t["config"]["train"]["batch_size"] == 32 and t["config"]["train"]["lr"] == 0.01
    assert t["config"]["model"] == {"dropout": 0.0, "untied_output": True}
    assert 0 < t["val"]["mrr@20"] <= t["val"]["recall@20"] <= 1 and t["epochs"] == 1
    assert t["tuned"]["trial"] in (0, 1)
    assert t["vs_tuned"]["mrr@20"] == pytest.approx(
        t["val"]["mrr@20"] / t["tuned"]["val"]["mrr@20"] - 1)
    # the same try again replaces its entry; another configuration is added beside it
    assert main([*run, "--try", '{"model": {"dropout": 0.5}}']) == 0
    assert main([*run, "--try", "authors"]) == 0
    tries = json.loads((out / "accuracy_tries.json").read_text())["tries"]
    assert sorted(t["try"] for t in tries) == ["authors", '{"model": {"dropout": 0.5}}']
