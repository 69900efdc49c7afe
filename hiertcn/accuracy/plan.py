"""What an accuracy run does: its settings (`Plan`), its data (`Source`) and its jobs.

Jobs, each in a child process (hiertcn.accuracy.jobs), in dependency order:
- prepare (data set, fold): sessionise, split, filter (fitted on the fold's training
  users) and cache the fold; the co-occurrence item vectors of its training part;
- tune (data set, model, trial): one configuration trained on the tuning users
  (fold 0's training users, or `tune_users` of them drawn with the seed) and early
  stopped on fold 0's validation users; its best validation MRR@20 is its score.
  One trial per configuration, the same number for every model; a model whose grid
  holds one configuration (or a run of one trial) skips tuning: there is no choice;
- fit (data set, model, fold): the best tuned configuration trained on the fold's
  training users, early stopped on its validation users, then scored once on its
  test users, per user.
Tuning on fold 0 only and on a subsample is the budget's choice, the same for every
model; the configuration it picks is used on every fold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from hiertcn.accuracy.grids import MODELS, trial_configs
from hiertcn.data.splits import SplitConfig
from hiertcn.errors import ConfigError

DATASETS = ("movielens-1m", "instacart-sample")  # the two targets
SINGLE_SPLIT = ("movielens-1m",)  # large enough for one split with 500+ test users
TEST_SHARE = 1 / 7  # MovieLens-1M: 522 filtered test users (1/10 left 364)
QUICK_USERS = 100  # --quick: this many users of the shipped MovieLens, 2 folds


@dataclass(frozen=True)
class Plan:
    datasets: tuple[str, ...] = DATASETS
    models: tuple[str, ...] = MODELS
    folds: int = 5  # K-fold over users on every data set not in single_split
    single_split: tuple[str, ...] = SINGLE_SPLIT  # these get one user split instead
    test_share: float = TEST_SHARE  # the single split's test users, of all users
    val_share: float = 0.1  # validation users, of all users, from the training side
    trials: int = 4  # configurations per model, from its own grid
    tune_users: int = 1000  # training users tuning trains on (0: all of fold 0's)
    epochs: int = 30  # cap per fit; early stopping on validation MRR@20 ends sooner
    patience: int = 3  # epochs without a better validation MRR@20 before stopping
    time_limit_s: float = 4 * 3600  # per fit: a safety net, recorded when it binds
    bootstrap: int = 10_000  # paired bootstrap replicates over test users
    seed: int = 0  # users to folds, tuning draws, initialisation
    workers: int = 2  # child processes, one torch thread each
    max_users: int = 0  # > 0: a seeded sample of this many users per data set (quick)
    cache_dir: str = ".cache/hiertcn"

    def __post_init__(self):
        for name, low in (("folds", 2), ("trials", 1), ("epochs", 1), ("patience", 1),
                          ("bootstrap", 100), ("workers", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"--{name}: expected >= {low}, got {getattr(self, name)}")
        for name in ("tune_users", "max_users"):
            if getattr(self, name) < 0 or getattr(self, name) == 1:
                raise ConfigError(f"--{name.replace('_', '-')}: expected 0 (all) or >= 2, "
                                  f"got {getattr(self, name)}")
        if not 0 < self.test_share < 0.5:
            raise ConfigError(f"--test-share: expected a share in (0, 0.5), got {self.test_share}")
        if self.time_limit_s <= 0:
            raise ConfigError(f"--time-limit: expected seconds > 0, got {self.time_limit_s}")
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ConfigError(f"--models: unknown model {unknown[0]!r}; choose from "
                              f"{', '.join(MODELS)}")
        if not self.models or not self.datasets:
            raise ConfigError("--models and --datasets: name at least one each")
        for name in ("models", "datasets"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ConfigError(f"--{name}: a name is given twice: {' '.join(values)}")

    def n_folds(self, dataset: str) -> int:
        return 1 if dataset in self.single_split else self.folds

    def split_config(self, dataset: str, fold: int) -> SplitConfig:
        folds = self.n_folds(dataset)
        return SplitConfig(kind="user", val_frac=self.val_share, test_frac=self.test_share,
                           seed=self.seed, folds=folds, fold=fold if folds > 1 else 0)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Source:
    """A data set as the jobs read it: an events file and its loader format."""

    name: str
    path: str
    fmt: str
    real_sessions: bool


@dataclass(frozen=True)
class Job:
    kind: str  # "prepare" | "tune" | "fit"
    dataset: str
    fold: int = 0
    model: str = ""
    trial: int = 0
    needs: tuple[str, ...] = field(default=(), compare=False)  # keys of earlier jobs

    @property
    def key(self) -> str:
        if self.kind == "prepare":
            return f"prepare {self.dataset} fold {self.fold}"
        if self.kind == "tune":
            return f"tune {self.dataset} {self.model} trial {self.trial}"
        return f"fit {self.dataset} {self.model} fold {self.fold}"


def jobs(plan: Plan) -> list[Job]:
    """Every job of the run, each after the jobs it needs."""
    out = []
    for ds in plan.datasets:
        folds = range(plan.n_folds(ds))
        prep = [Job("prepare", ds, k) for k in folds]
        out += prep
        for model in plan.models:
            n_trials = len(trial_configs(model, plan.trials, plan.seed))
            tunes = [Job("tune", ds, 0, model, t, (prep[0].key,))
                     for t in range(n_trials)] if n_trials > 1 else []
            out += tunes
            out += [Job("fit", ds, k, model, 0, (prep[k].key, *(t.key for t in tunes)))
                    for k in folds]
    return out


def check_paths(out: Path) -> None:
    """The results folder must be a folder (or not exist yet): fail before hours of work."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} is a file, not a folder")
