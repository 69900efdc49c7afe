"""One trainer for every neural model (HierTCN, its ablation, GRU4Rec, HRNN, flat TCN).

A model meets `hiertcn.contract.NeuralModel` (its own batches, loss and
`predict_user`); the trainer owns the loop: background batch production,
Adam, gradient clipping, validation every epoch, early stopping on MRR@20, and the
figures the benchmarks report (events/s, peak tensor memory, the learning curve).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from hiertcn.contract import NeuralModel
from hiertcn.data.batches import Prefetcher
from hiertcn.data.sessions import Sessions
from hiertcn.errors import ConfigError
from hiertcn.evaluate import evaluate
from hiertcn.losses import LossConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20  # upper bound; early stopping usually ends sooner
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 16  # B: user queues (or parallel sessions) per batch
    sessions_per_batch: int = 4  # S: sessions popped from every queue per batch
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

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    best_epoch: int
    best_val: dict
    curve: list[dict]  # per epoch: elapsed training seconds, loss, validation metrics
    events_per_s: float  # training events per second of pure training time
    peak_tensor_mb: float  # parameters + grads + Adam moments + saved activations, peak


class _SavedTensorMeter:
    """Peak bytes of tensors autograd saves for backward: the activation memory."""

    def __init__(self):
        self.current = self.peak = 0
        self._seen: set[int] = set()

    def pack(self, t: torch.Tensor):
        key = t.untyped_storage().data_ptr()
        if key not in self._seen:
            self._seen.add(key)
            self.current += t.untyped_storage().nbytes()
            self.peak = max(self.peak, self.current)
        return t

    def reset(self):
        self.current, self._seen = 0, set()


def fit(model: NeuralModel, train: Sessions, val: Sessions, config: TrainConfig,
        name: str = "model", progress: bool = True) -> TrainResult:
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    state_bytes = 4 * sum(p.numel() * p.element_size() for p in params)  # w, grad, m, v
    meter = _SavedTensorMeter()
    best, best_epoch, best_state, curve = None, 0, None, []
    train_s, events = 0.0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        epoch_loss, epoch_events, t0 = _run_epoch(model, train, config, optim, rng, meter,
                                                  desc=f"{name} epoch {epoch}", progress=progress)
        train_s += time.perf_counter() - t0
        events += epoch_events
        model.eval()
        metrics = evaluate(model, val, progress=progress, desc=f"{name} validate")
        curve.append({"epoch": epoch, "train_s": train_s, "loss": epoch_loss, **metrics})
        log.info("%s epoch %d loss %.4f val recall@20 %.4f mrr@20 %.4f (%.0f events/s)", name,
                 epoch, epoch_loss, metrics["recall@20"], metrics["mrr@20"], events / train_s)
        if best is None or metrics["mrr@20"] > best["mrr@20"]:
            best, best_epoch, best_state = metrics, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            log.info("%s: early stop, best epoch %d", name, best_epoch)
            break
        if config.max_seconds is not None and train_s >= config.max_seconds:
            log.info("%s: time budget of %.0f s spent", name, config.max_seconds)
            break
    model.load_state_dict(best_state)
    return TrainResult(best_epoch=best_epoch, best_val=best, curve=curve,
                       events_per_s=events / max(train_s, 1e-9),
                       peak_tensor_mb=(state_bytes + meter.peak) / 2 ** 20)


def _run_epoch(model: NeuralModel, train: Sessions, config: TrainConfig, optim, rng, meter,
               desc: str, progress: bool):
    batches = Prefetcher(lambda: model.train_batches(
        train, config.batch_size, config.sessions_per_batch, rng))
    carry, total_loss, total_events = None, 0.0, 0
    bar = tqdm(total=train.n_events, desc=desc, unit="ev", disable=not progress, leave=False)
    t0 = time.perf_counter()
    for batch in batches:
        meter.reset()
        with torch.autograd.graph.saved_tensors_hooks(meter.pack, lambda t: t):
            loss, n_events, carry = model.loss(batch, carry, config.loss)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optim.step()
        carry = _detach(carry)  # truncated backprop: state flows, gradients do not
        total_loss += loss.item() * n_events
        total_events += n_events
        bar.update(n_events)
    bar.close()
    return total_loss / max(total_events, 1), total_events, t0


def _detach(carry):
    if carry is None:
        return None
    if isinstance(carry, torch.Tensor):
        return carry.detach()
    return type(carry)(_detach(c) for c in carry)


def count_parameters(model: NeuralModel, include_items: bool = False) -> int:
    """Parameters outside the item table (shared by every model) unless asked."""
    return sum(p.numel() for n, p in model.named_parameters()
               if include_items or not n.startswith("items."))
