"""Checkpoints and exports: a state_dict with its config, never a pickled object.

- checkpoint (`hiertcn train` writes it): state_dict + model config + training config
  + step + the item-id mapping, in one `torch.save` file loaded with weights_only.
- export (`hiertcn export` writes it; the stream reads it): a folder with the
  checkpoint, the item vectors the model scores against (float32 .npy), their ids,
  and a faiss inner-product index built over exactly those vectors. Its `version` is
  a hash of the weights, carried in every per-user state and every message.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import faiss
import numpy as np
import torch

from hiertcn.errors import CheckpointError
from hiertcn.model import HierTCN, ModelConfig

FORMAT = 1


def save_checkpoint(path: str | Path, model: HierTCN, item_ids, step: int, extra: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "state_dict": model.state_dict(),
                "model_config": model.config.to_dict(), "step": step,
                "item_ids": [str(i) for i in item_ids], **extra}, path)


def load_checkpoint(path: str | Path) -> tuple[HierTCN, dict]:
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}: run `hiertcn train` first") from None
    except Exception as err:  # torch raises many kinds on a corrupt file
        raise CheckpointError(f"cannot read checkpoint {path}: {err}".splitlines()[0]) from None
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {ckpt.get('format')}, "
                              f"this code reads {FORMAT}")
    model = HierTCN(ModelConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def weights_version(model: HierTCN) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def export(checkpoint: str | Path, out_dir: str | Path) -> Path:
    model, ckpt = load_checkpoint(checkpoint)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vectors = model.items.weight.detach().numpy().astype(np.float32)  # (N, D)
    index = faiss.IndexFlatIP(vectors.shape[1])  # exact inner product, as trained
    index.add(vectors)
    torch.save({k: ckpt[k] for k in ("format", "state_dict", "model_config", "step",
                                     "item_ids")}, out / "model.pt")
    np.save(out / "item_vectors.npy", vectors)
    faiss.write_index(index, str(out / "items.faiss"))
    meta = {"version": weights_version(model), "n_items": len(ckpt["item_ids"]),
            "item_dim": int(vectors.shape[1]), "step": ckpt["step"],
            "receptive_field": model.tcn.receptive_field,
            "session": ckpt.get("session_config", {})}
    (out / "item_ids.json").write_text(json.dumps(ckpt["item_ids"]))
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return out
