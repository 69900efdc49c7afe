"""Checkpoints and exports: a state_dict with its config, never a pickled object.

- checkpoint (`hiertcn train --out RUN` writes RUN/checkpoint.pt): state_dict + the
  model's kind ("hiertcn", "gru4rec", ...; `hiertcn.models.KINDS`) + its config +
  training config + step + the item-id mapping + the session policy it was trained
  under, in one `torch.save` file loaded with weights_only. Loading builds the class
  of the recorded kind from the recorded config.
- export (`hiertcn export` writes it; the stream reads it): a folder with the
  checkpoint, the item vectors the model scores against (float32 .npy; with an untied
  output each row ends with its item's bias), their ids, a faiss inner-product index
  built over exactly those vectors, and meta.json with the session policy the stream
  must apply. Its `version` is a hash of the weights, carried in every per-user state
  and every message. HierTCN only (hiertcn and hiertcn_low): the stream needs its
  step-wise API.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import faiss
import numpy as np
import torch

from hiertcn.contract import NeuralModel
from hiertcn.data.sessions import SessionConfig
from hiertcn.errors import CheckpointError, ConfigError
from hiertcn.model import HierTCN, ModelConfig
from hiertcn.models import KINDS, model_from_config, model_kind

FORMAT = 1
CHECKPOINT_FILE = "checkpoint.pt"  # in a run folder, as `hiertcn train --out` writes it
EXPORT_MODEL_FILE = "model.pt"  # in an export folder
SESSION_POLICY = ("gap_s", "max_session_len")  # the SessionConfig fields the stream applies

log = logging.getLogger(__name__)


def save_checkpoint(path: str | Path, model: NeuralModel, item_ids, step: int, extra: dict,
                    session: SessionConfig | None = None) -> None:
    """`session`: the policy the training data was cut with (defaults when None)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**extra, "format": FORMAT, "kind": model_kind(model),
                "state_dict": model.state_dict(), "model_config": model.config.to_dict(),
                "step": step, "item_ids": [str(i) for i in item_ids],
                "session_config": (session or SessionConfig()).to_dict()}, path)


def checkpoint_file(path: str | Path) -> Path:
    """`path` itself, or the checkpoint inside a run (or export) folder."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in (CHECKPOINT_FILE, EXPORT_MODEL_FILE):
        if (path / name).is_file():
            return path / name
    raise CheckpointError(f"no {CHECKPOINT_FILE} in folder {path}: train into it with "
                          f"`hiertcn train --out {path}`, or name the checkpoint file")


def load_checkpoint(path: str | Path) -> tuple[NeuralModel, dict]:
    """The model of the recorded kind, in eval mode, and the checkpoint's dict."""
    path = checkpoint_file(path)
    ckpt = _read(path)
    kind = recorded_kind(path, ckpt)
    try:
        model = model_from_config(kind, ckpt["model_config"])
        model.load_state_dict(ckpt["state_dict"])
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}: the file does not match its recorded "
                              f"kind {kind!r}; retrain it") from None
    except RuntimeError as err:  # missing, unexpected or mis-sized weights
        raise CheckpointError(f"{path}: its weights do not fit its {kind} config "
                              f"({str(err).splitlines()[0]}); retrain it") from None
    return model.eval(), ckpt


def load_hiertcn(path: str | Path) -> tuple[HierTCN, dict]:
    """`load_checkpoint` for what only HierTCN can do: export, and the stream."""
    model, ckpt = load_checkpoint(path)
    if not isinstance(model, HierTCN):
        raise CheckpointError(f"{checkpoint_file(path)} holds a {model_kind(model)} model; "
                              f"the stream runs HierTCN only: export a hiertcn or "
                              f"hiertcn_low checkpoint")
    return model, ckpt


def _read(path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}: run `hiertcn train` first") from None
    except Exception as err:  # torch raises many kinds on a corrupt file
        raise CheckpointError(f"cannot read checkpoint {path}: {err}".splitlines()[0]) from None
    if not isinstance(ckpt, dict) or not {"state_dict", "model_config", "item_ids"} <= set(ckpt):
        raise CheckpointError(f"{path} is not a hiertcn checkpoint (no weights, config and "
                              f"item ids in it): name the file `hiertcn train` wrote")
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {ckpt.get('format')}, "
                              f"this code reads {FORMAT}")
    return ckpt


def recorded_kind(path: Path, ckpt: dict) -> str:
    """The checkpoint's model kind. Files written before kinds were recorded: the
    `--model` name `hiertcn train` saved, else HierTCN when the config is one."""
    kind = ckpt.get("kind")
    if kind is None and ckpt.get("model") in KINDS:
        kind = ckpt["model"]
    if kind is None:
        if not _is_hiertcn_config(ckpt["model_config"]):
            raise CheckpointError(f"{path} records no model kind and its config is not a "
                                  f"HierTCN's: retrain it with `hiertcn train`")
        kind = "hiertcn" if ckpt["model_config"].get("high_level", True) else "hiertcn_low"
    if kind not in KINDS:
        raise CheckpointError(f"{path} holds a model of kind {kind!r}, which this version "
                              f"cannot build ({', '.join(KINDS)}): retrain it")
    return kind


def _is_hiertcn_config(config: dict) -> bool:
    try:
        ModelConfig(**config)
    except (TypeError, ConfigError):
        return False
    return True


def session_policy(ckpt: dict) -> dict:
    """{"gap_s", "max_session_len"} the model was trained under; the defaults for
    checkpoints written before the policy was recorded."""
    recorded = ckpt.get("session_config") or {}
    if not set(SESSION_POLICY) <= set(recorded):
        log.warning("checkpoint records no session policy: exporting SessionConfig's "
                    "defaults")
    default = SessionConfig().to_dict()
    return {k: recorded.get(k, default[k]) for k in SESSION_POLICY}


def weights_version(model: NeuralModel) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def index_vectors(model: HierTCN) -> np.ndarray:
    """The rows the faiss index holds: the vectors users are scored against (N, D);
    with an untied output, each with its bias appended (N, D + 1), so that the inner
    product with [u; 1] is u . v + b, the model's own score (`StreamModel.top_k`)."""
    vectors, bias = model.output_items()
    if bias is not None:
        vectors = torch.cat([vectors, bias[:, None]], dim=1)
    return vectors.detach().numpy().astype(np.float32)


def export(checkpoint: str | Path, out_dir: str | Path) -> Path:
    model, ckpt = load_hiertcn(checkpoint)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vectors = index_vectors(model)  # (N, D), or (N, D + 1) with the item bias
    index = faiss.IndexFlatIP(vectors.shape[1])  # exact inner product, as trained
    index.add(vectors)
    session = session_policy(ckpt)
    torch.save({"format": FORMAT, "kind": model_kind(model), "state_dict": ckpt["state_dict"],
                "model_config": ckpt["model_config"], "step": ckpt.get("step", 0),
                "item_ids": ckpt["item_ids"], "session_config": session},
               out / EXPORT_MODEL_FILE)
    np.save(out / "item_vectors.npy", vectors)
    faiss.write_index(index, str(out / "items.faiss"))
    meta = {"version": weights_version(model), "kind": model_kind(model),
            "n_items": len(ckpt["item_ids"]), "item_dim": model.config.item_dim,
            "item_bias": model.config.untied_output,
            "step": ckpt.get("step", 0), "receptive_field": model.tcn.receptive_field,
            "session": session}
    (out / "item_ids.json").write_text(json.dumps(ckpt["item_ids"]))
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return out
