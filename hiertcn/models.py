"""The neural models by name, for the CLI, the benchmarks and checkpoints. Explicit
imports, no registry: `KINDS` is the one place that maps a name to a class and its
config. "hiertcn_low" is HierTCN without its high level (`high_level=False`)."""

from __future__ import annotations

import dataclasses

import torch

from hiertcn.baselines.flat_tcn import FlatTCN, FlatTCNConfig
from hiertcn.baselines.gru4rec import GRU4Rec, GRU4RecConfig
from hiertcn.baselines.hrnn import HRNN, HRNNConfig
from hiertcn.baselines.sasrec import SASRec, SASRecConfig
from hiertcn.contract import NeuralModel
from hiertcn.errors import ConfigError
from hiertcn.model import HierTCN, ModelConfig

KINDS = {  # kind -> (model class, its config class)
    "hiertcn": (HierTCN, ModelConfig),
    "hiertcn_low": (HierTCN, ModelConfig),
    "gru4rec": (GRU4Rec, GRU4RecConfig),
    "hrnn": (HRNN, HRNNConfig),
    "tcn": (FlatTCN, FlatTCNConfig),
    "sasrec": (SASRec, SASRecConfig),
}
NEURAL_MODELS = tuple(KINDS)

# Training settings that differ per model, tuned on validation (MovieLens, user split).
# The hierarchical models take whole sessions per batch, ~100x the events of one
# GRU4Rec time step: small queues give them enough updates per epoch on this small
# data set (B=16, S=4 reached val Recall@20 0.03 after 4 epochs; B=4, S=2 0.11).
# HierTCN's gradient reaches 8 sessions before each batch (bptt_sessions): at B=4, S=2,
# 6 epochs, val MRR@20 0.0247 / 0.0249 / 0.0257 with 0 / 2 / 8 (Recall@20 0.114 /
# 0.116 / 0.117; within the noise of 37 validation users, but in that order and cheap:
# only the GRU over session means re-runs; benchmarks/results/truncation.json).
TRAIN_DEFAULTS = {
    "hiertcn": {"batch_size": 4, "sessions_per_batch": 2, "bptt_sessions": 8},
    "hiertcn_low": {"batch_size": 4, "sessions_per_batch": 2},
}


def model_config(name: str, n_items: int, frozen: bool = False, **sizes):
    """The config of model `name`: its defaults, then `sizes` (config fields, e.g.
    kernel_size=3); a field the model does not have is a ConfigError."""
    _, config_cls = _kind(name)
    fixed = {"n_items": n_items, "freeze_items": frozen}
    if config_cls is ModelConfig:
        fixed["high_level"] = name == "hiertcn"
    unknown = sorted(set(sizes) - {f.name for f in dataclasses.fields(config_cls)})
    if unknown:
        raise ConfigError(f"{name} has no setting {unknown[0]!r}")
    return config_cls(**{**sizes, **fixed})


def build_model(name: str, n_items: int, item_vectors: torch.Tensor | None = None,
                frozen: bool = False, **sizes) -> NeuralModel:
    """A new model `name`; `item_vectors` (n_items, item_dim) start the item table,
    `frozen` keeps them fixed; `sizes` as in `model_config`."""
    model_cls, _ = _kind(name)
    return model_cls(model_config(name, n_items, frozen, **sizes), item_vectors)


def model_from_config(name: str, config: dict) -> NeuralModel:
    """A model of kind `name` with the saved `config.to_dict()` (weights not loaded).
    Raises ConfigError when the config is not one of that kind."""
    model_cls, config_cls = _kind(name)
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config) - names)
    if unknown:
        raise ConfigError(f"a {name} config has no field {unknown[0]!r}")
    try:
        return model_cls(config_cls(**config))
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"not a {name} config: {err}") from None


def model_kind(model: NeuralModel) -> str:
    """The name `model` is saved under: the inverse of `KINDS`."""
    if isinstance(model, HierTCN):
        return "hiertcn" if model.config.high_level else "hiertcn_low"
    for name, (model_cls, _) in KINDS.items():
        if type(model) is model_cls:
            return name
    raise ConfigError(f"{type(model).__name__} is not one of {', '.join(KINDS)}")


def _kind(name: str):
    if name not in KINDS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(KINDS)}")
    return KINDS[name]
