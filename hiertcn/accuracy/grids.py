"""Each model's tuning grid, and the configurations a run tries.

Every model gets the same number of configurations (`trials`), drawn from its own
grid: the first is the model's defaults (the settings this project ships, so a run
with one trial trains exactly what `hiertcn train --model M` trains), the others
distinct grid points drawn without replacement, seeded by the run's seed and the
model's name, so a rerun tries the same ones. A grid smaller than `trials` is tried
whole (most-popular has one point): the results record how many each model got.

Neural grids span learning rate, batch shape and dropout, as the issue asks:
- hiertcn, hiertcn_low: B user queues x S sessions per batch, up to the released
  code's 32 x 10;
- gru4rec, hrnn: B parallel sessions (users for HRNN), one event each per update;
- tcn: B whole user histories per batch;
- sasrec: B windows of max_len events per batch.
The other training settings are each model's defaults (`hiertcn.models.TRAIN_DEFAULTS`,
e.g. HierTCN's 8-session truncated backprop).

Non-neural grids: item_knn neighbours, alpha and the prefix weighting; sknn k and
sample size; vsknn k, sample size and position weighting (Ludewig & Jannach's).
"""

from __future__ import annotations

import inspect
import itertools
import zlib

import numpy as np

from hiertcn.baselines.item_knn import ItemKNN
from hiertcn.baselines.popular import MostPopular
from hiertcn.baselines.session_knn import SKNN, VSKNN
from hiertcn.errors import ConfigError
from hiertcn.models import NEURAL_MODELS, TRAIN_DEFAULTS, model_config
from hiertcn.train import TrainConfig

SIMPLE = {"pop": MostPopular, "item_knn": ItemKNN, "sknn": SKNN, "vsknn": VSKNN}
MODELS = ("hiertcn", "hiertcn_low", "gru4rec", "hrnn", "tcn", "sasrec", "sknn", "vsknn",
          "item_knn", "pop")
assert set(MODELS) == set(NEURAL_MODELS) | set(SIMPLE)

LR = (1e-3, 3e-3, 1e-2)
DROPOUT = (0.0, 0.1, 0.3)
_QUEUES = ({"batch_size": 4, "sessions_per_batch": 2}, {"batch_size": 8, "sessions_per_batch": 4},
           {"batch_size": 16, "sessions_per_batch": 4},
           {"batch_size": 32, "sessions_per_batch": 10})
_SHAPES = {  # batch shapes per model: TrainConfig fields
    "hiertcn": _QUEUES,
    "hiertcn_low": _QUEUES,
    "gru4rec": tuple({"batch_size": b} for b in (32, 64, 128, 256)),
    "hrnn": tuple({"batch_size": b} for b in (16, 32, 64, 128)),
    "tcn": tuple({"batch_size": b} for b in (4, 8, 16, 32)),
    "sasrec": tuple({"batch_size": b} for b in (16, 32, 64, 128)),
}
_SIMPLE_GRIDS = {  # constructor arguments per non-neural model
    "pop": {},
    "item_knn": {"neighbors": (50, 100, 200), "alpha": (0.5, 0.75, 1.0),
                 "weighting": ("linear", "uniform", "last")},
    "sknn": {"k": (50, 100, 200), "sample_size": (500, 1000, 2500)},
    "vsknn": {"k": (50, 100, 200), "sample_size": (500, 1000, 2500),
              "weighting": ("linear", "quadratic", "log")},
}


def is_neural(model: str) -> bool:
    return model in NEURAL_MODELS


def default_config(model: str) -> dict:
    """The model's shipped settings, with the same keys as its grid points:
    {"train": TrainConfig fields, "model": config fields} for a neural model,
    {"params": constructor arguments} otherwise."""
    if not is_neural(model):
        grid(model)  # an unknown name fails here
        signature = inspect.signature(SIMPLE[model]).parameters
        return {"params": {k: signature[k].default for k in _SIMPLE_GRIDS[model]}}
    shape_keys = _SHAPES[model][0].keys()
    defaults = TrainConfig()
    train = {k: getattr(defaults, k) for k in (*shape_keys, "lr")}
    return {"train": {**train, **TRAIN_DEFAULTS.get(model, {})},
            "model": {"dropout": model_config(model, 1).dropout}}


def grid(model: str) -> list[dict]:
    """Every grid point of `model`, in a fixed order."""
    if model in _SHAPES:
        return [{"train": {**TRAIN_DEFAULTS.get(model, {}), **shape, "lr": lr},
                 "model": {"dropout": dropout}}
                for shape, lr, dropout in itertools.product(_SHAPES[model], LR, DROPOUT)]
    if model in _SIMPLE_GRIDS:
        axes = _SIMPLE_GRIDS[model]
        return [{"params": dict(zip(axes, values))}
                for values in itertools.product(*axes.values())]
    raise ConfigError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")


def trial_configs(model: str, trials: int, seed: int) -> list[dict]:
    """`trials` configurations (fewer when the grid is smaller): the defaults first,
    then distinct grid points drawn at random."""
    first = default_config(model)
    others = [c for c in grid(model) if c != first]
    rng = np.random.default_rng([seed, zlib.crc32(model.encode())])
    picks = rng.permutation(len(others))[:max(trials - 1, 0)]
    return [first] + [others[i] for i in picks]
