"""One trainer for every neural model (HierTCN, its ablation, GRU4Rec, HRNN, flat TCN).

A model meets `hiertcn.contract.NeuralModel` (its own batches, loss and
`predict_user`); the trainer owns the loop: background batch production,
Adam with an optional step decay, gradient clipping, validation every epoch, early
stopping on MRR@20, and the figures the benchmarks report (events/s, peak tensor
memory, the learning curve).

Batches: `train_batches` gives one epoch of batches, called once per epoch, the carry
starting afresh; or an `Endless` stream (HierTCN's queues), taken `per_epoch` batches
at a time with the carry going on across epochs, as the released code does.
Truncated backprop: the carry is detached after every update; `bptt_sessions` P > 0
asks the model (`train_batches(..., context_sessions=P)`) to re-run its high level over
the P sessions before each batch, so the gradient still crosses P session transitions.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from hiertcn.contract import NeuralModel
from hiertcn.data.batches import Endless, Prefetcher
from hiertcn.data.sessions import Sessions
from hiertcn.errors import ConfigError
from hiertcn.evaluate import evaluate
from hiertcn.losses import LossConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20  # upper bound; early stopping usually ends sooner
    lr: float = 1e-3
    lr_decay_epochs: tuple[int, ...] = ()  # after each of these epochs, lr *= lr_decay
    lr_decay: float = 0.2  # released code: lr / 5 after epochs 60 and 120
    weight_decay: float = 0.0
    batch_size: int = 16  # B: user queues (or parallel sessions) per batch
    sessions_per_batch: int = 4  # S: sessions popped from every queue per batch
    bptt_sessions: int = 0  # P: earlier sessions the high level's gradient reaches (HierTCN)
    clip: float = 5.0  # gradient-norm clip, for the recurrent baselines
    patience: int = 3  # epochs without a better validation MRR@20 before stopping
    seed: int = 0
    loss: LossConfig = field(default_factory=LossConfig)
    max_seconds: float | None = None  # wall-clock budget for the whole fit (benchmarks)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "sessions_per_batch", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.bptt_sessions < 0:
            raise ConfigError(f"bptt_sessions must be >= 0, got {self.bptt_sessions}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be > 0 and <= 1, got {self.lr_decay}")
        decay = list(self.lr_decay_epochs)
        if any(e < 1 for e in decay) or decay != sorted(set(decay)):
            raise ConfigError(f"lr_decay_epochs must be increasing epochs >= 1, got {decay}")
        object.__setattr__(self, "lr_decay_epochs", tuple(decay))  # a list from JSON too

    def to_dict(self) -> dict:
        return asdict(self)


# The released code's training (JiaxuanYou/HierTCN, args.py): 32 queues x 10 sessions,
# Adam at 1e-2 divided by 5 at epochs 60 and 120, no dropout, an untied output layer
# with a per-item bias; the gradient crosses the batch's own sessions only (its state
# goes in as data). Its "epoch" is 500 batches, ours one pass over the training
# sessions, so the decay comes later here in updates. `hiertcn train --preset authors`.
PRESETS = {
    "authors": {"train": {"batch_size": 32, "sessions_per_batch": 10, "lr": 1e-2,
                          "lr_decay_epochs": (60, 120), "lr_decay": 0.2, "bptt_sessions": 0},
                "model": {"dropout": 0.0, "untied_output": True}},
}


@dataclass
class TrainResult:
    best_epoch: int
    best_val: dict
    curve: list[dict]  # per epoch: elapsed training seconds, loss, lr, validation metrics
    events_per_s: float  # training events per second of pure training time
    peak_tensor_mb: float  # parameters + grads + Adam moments + saved activations, peak
    updates: int = 0  # optimizer steps taken
    events: int = 0  # training events those steps averaged their losses over
    # why training ended: "early" (patience ran out: converged on validation), "epochs"
    # (the epoch cap), "time" (the max_seconds safety net)
    stopped: str = "epochs"


class _SavedTensorMeter:
    """Peak bytes of tensors autograd saves for backward: the activation memory.

    `pack` hands autograd a detached alias (same storage, no graph): returning the
    tensor itself makes a saved *output* hold its own grad_fn, a cycle that outlived
    every batch (about 19 tensors a batch: 15 GB after ~40 minutes of HierTCN on
    MovieLens-1M, the OOM kill of the first full accuracy run)."""

    def __init__(self):
        self.current = self.peak = 0
        self._seen: set[int] = set()

    def pack(self, t: torch.Tensor):
        key = t.untyped_storage().data_ptr()
        if key not in self._seen:
            self._seen.add(key)
            self.current += t.untyped_storage().nbytes()
            self.peak = max(self.peak, self.current)
        return t.detach()

    @contextlib.contextmanager
    def batch(self):
        """Meters what autograd saves inside the block, counted afresh."""
        self.current, self._seen = 0, set()
        with torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t):
            yield


class _Batches:
    """Where each epoch's batches come from (module docstring), and the carry between
    them. `close()` stops an endless stream's producer thread."""

    def __init__(self, model: NeuralModel, train: Sessions, config: TrainConfig, rng):
        extra = {}
        if config.bptt_sessions:
            if "context_sessions" not in inspect.signature(model.train_batches).parameters:
                raise ConfigError(f"bptt_sessions: {type(model).__name__} has no "
                                  f"session-level state to backpropagate through")
            extra["context_sessions"] = config.bptt_sessions
        self._make = lambda: model.train_batches(train, config.batch_size,
                                                 config.sessions_per_batch, rng, **extra)
        first = self._make()
        self.endless = first if isinstance(first, Endless) else None
        self._stream = Prefetcher(lambda: self.endless) if self.endless else None
        self._first = None if self.endless else first
        self.carry = None

    def epoch(self):
        if self.endless is not None:
            return itertools.islice(iter(self._stream), self.endless.per_epoch)
        self.carry = None  # a fresh epoch of a finite batcher starts every state afresh
        first, self._first = self._first, None
        return Prefetcher(lambda: first if first is not None else self._make())

    def close(self):
        if self._stream is not None:
            self._stream.close()


def fit(model: NeuralModel, train: Sessions, val: Sessions, config: TrainConfig,
        name: str = "model", progress: bool = True) -> TrainResult:
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optim, list(config.lr_decay_epochs),
                                                    gamma=config.lr_decay)
    state_bytes = 4 * sum(p.numel() * p.element_size() for p in params)  # w, grad, m, v
    meter = _SavedTensorMeter()
    best, best_epoch, best_state, curve = None, 0, None, []
    train_s, events, updates, stopped = 0.0, 0, 0, "epochs"
    batches = _Batches(model, train, config, rng)
    try:
        for epoch in range(1, config.epochs + 1):
            model.train()
            lr = optim.param_groups[0]["lr"]
            t0 = time.perf_counter()
            epoch_loss, epoch_events, n = _run_epoch(model, batches, train.n_events, config,
                                                     optim, meter, f"{name} epoch {epoch}",
                                                     progress)
            train_s += time.perf_counter() - t0
            events, updates = events + epoch_events, updates + n
            schedule.step()
            model.eval()
            metrics = evaluate(model, val, progress=progress, desc=f"{name} validate")
            curve.append({"epoch": epoch, "train_s": train_s, "loss": epoch_loss, "lr": lr,
                          "updates": updates, **metrics})
            log.info("%s epoch %d loss %.4f val recall@20 %.4f mrr@20 %.4f (%.0f events/s)",
                     name, epoch, epoch_loss, metrics["recall@20"], metrics["mrr@20"],
                     events / train_s)
            if best is None or metrics["mrr@20"] > best["mrr@20"]:
                best, best_epoch, best_state = metrics, epoch, copy.deepcopy(model.state_dict())
            elif epoch - best_epoch >= config.patience:
                log.info("%s: early stop, best epoch %d", name, best_epoch)
                stopped = "early"
                break
            if config.max_seconds is not None and train_s >= config.max_seconds \
                    and epoch < config.epochs:
                log.info("%s: time budget of %.0f s spent", name, config.max_seconds)
                stopped = "time"
                break
    finally:
        batches.close()
    model.load_state_dict(best_state)
    return TrainResult(best_epoch=best_epoch, best_val=best, curve=curve,
                       events_per_s=events / max(train_s, 1e-9),
                       peak_tensor_mb=(state_bytes + meter.peak) / 2 ** 20, updates=updates,
                       events=events, stopped=stopped)


def _run_epoch(model: NeuralModel, batches: _Batches, n_events: int, config: TrainConfig,
               optim, meter, desc: str, progress: bool):
    """(mean loss, events, updates) of one epoch; the carry stays in `batches`."""
    total_loss, total_events, updates = 0.0, 0, 0
    bar = tqdm(total=n_events, desc=desc, unit="ev", disable=not progress, leave=False)
    for batch in batches.epoch():
        with meter.batch():
            loss, n, batches.carry = train_step(model, batch, batches.carry, config, optim)
        total_loss += loss * n
        total_events += n
        updates += 1
        bar.update(n)
    bar.close()
    return total_loss / max(total_events, 1), total_events, updates


def train_step(model: NeuralModel, batch, carry, config: TrainConfig, optim):
    """One update: loss, backward, clip, Adam. Returns (loss, events, detached carry):
    the carry's value flows on, its gradient stops here (truncated backprop)."""
    loss, n_events, carry = model.loss(batch, carry, config.loss)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
    optim.step()
    return loss.item(), n_events, _detach(carry)


def _detach(carry):
    if carry is None:
        return None
    if isinstance(carry, torch.Tensor):
        return carry.detach()
    return type(carry)(_detach(c) for c in carry)


def count_parameters(model: NeuralModel, include_items: bool = False) -> int:
    """Parameters outside the item tables (shared by every model) unless asked."""
    return sum(p.numel() for n, p in model.named_parameters()
               if include_items or not n.startswith(("items.", "item_out.", "item_bias")))
