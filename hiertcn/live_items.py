"""A live catalogue for a loaded export: items added, re-vectored and retired in place,
without retraining, for models whose item table was frozen in training
(`hiertcn train --item-vectors FILE`: `ModelConfig.freeze_items`).

Why only those: such a model never moved its item vectors, so a vector from the same
upstream source (the file's producer) lives in the space the model reads and scores
in. A model that trained its item table has vectors of its own making; an upstream
vector means nothing to it (`accepts_item_vectors` is False and the stream refuses).

How: the export's flat inner-product index becomes an `IndexIDMap2` over a flat index
of the same metric, whose ids are rows of the model's item table (`make_live`), so
- a new item gets the next row: the table grows (capacity doubles, so adding one item
  is not a copy of the table), the row is added to the index under that id, and the
  item id maps to it (`StreamModel.index_of`): recommendable, and usable as input;
- a new vector for a known item rewrites its row and its index entry;
- a retired item leaves the index (`remove_ids`: never returned again) and the id map
  (a later click on it counts as an unknown item); its table row stays unused, so rows
  never move and states that name them stay valid.
Search stays exact (flat); `StreamModel.top_k` maps ids back through `_ids`.

Not thread-safe: the stream applies changes between micro-batches on its event loop,
or to a model no batch uses yet (stream/worker/model_holder.py).
"""

from __future__ import annotations

import faiss
import numpy as np
import torch
import torch.nn as nn

from hiertcn.errors import CheckpointError
from hiertcn.inference import StreamModel


def accepts_item_vectors(model: StreamModel) -> bool:
    """True when the model's item table was frozen in training (upstream vectors) and
    scoring uses that same table: an untied output scores against vectors and biases
    learnt per item, which a new item does not have."""
    c = model.model.config
    return bool(getattr(c, "freeze_items", False)) and not c.untied_output


def make_live(model: StreamModel) -> None:
    """Index ids = item rows (an IndexIDMap2 over a flat inner-product index, on the
    CPU whatever the model's device: GPU flat indexes cannot remove ids); idempotent."""
    if isinstance(model.index, faiss.IndexIDMap2):
        return
    n = model.index.ntotal
    if n != len(model.item_ids):
        raise CheckpointError(f"the index holds {n} vectors for {len(model.item_ids)} items")
    # the export builds its index from the frozen item table, so the table's rows are
    # the index's vectors, wherever the index lives (faiss CPU or GPU, or torch)
    vectors = model.model.items.weight.detach()[:n].cpu().numpy()  # (n, D)
    live = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    live.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.arange(n, dtype=np.int64))
    model.index = live
    model.search_backend = "faiss-cpu IndexIDMap2 (live catalogue)"


def upsert_items(model: StreamModel, item_ids: list[str], vectors: np.ndarray) -> int:
    """Add or re-vector items (vectors (n, D) float32, the model's item_dim); returns
    how many were new. The latest vector of an id repeated in the call wins."""
    make_live(model)
    vectors = np.ascontiguousarray(vectors, np.float32).reshape(len(item_ids), -1)
    if vectors.shape[1] != model.index.d:
        raise ValueError(f"item vectors of {vectors.shape[1]} dims, the model's are "
                         f"{model.index.d}")
    rows = []
    new = 0
    for item in item_ids:
        row = model.index_of.get(item)
        if row is None:
            row = _new_row(model, item)
            new += 1
        rows.append(row)
    last = {row: i for i, row in enumerate(rows)}  # a repeated id: its last vector
    ids = np.fromiter(last, np.int64, count=len(last))
    chosen = vectors[list(last.values())]
    model.index.remove_ids(ids)  # no-op for new rows
    model.index.add_with_ids(chosen, ids)
    weight = model.model.items.weight
    with torch.no_grad():
        weight[torch.from_numpy(ids).to(weight.device)] = torch.from_numpy(chosen).to(weight.device)
    return new


def retire_items(model: StreamModel, item_ids: list[str]) -> int:
    """Remove items from the index and the id map; returns how many were known."""
    make_live(model)
    rows = [model.index_of.pop(item) for item in item_ids if item in model.index_of]
    if rows:
        model.index.remove_ids(np.asarray(rows, np.int64))
    return len(rows)


def _new_row(model: StreamModel, item: str) -> int:
    """The next free row of the item table, grown (doubled) when full."""
    row = len(model.item_ids)
    table = model.model.items
    if row >= table.num_embeddings:
        grown = torch.zeros(max(2 * table.num_embeddings, row + 1), table.embedding_dim,
                            device=table.weight.device)
        grown[:table.num_embeddings] = table.weight.detach()
        model.model.items = nn.Embedding.from_pretrained(grown, freeze=True)
    if row >= len(model._ids):
        ids = np.empty(max(2 * len(model._ids), row + 1), dtype=object)
        ids[:len(model._ids)] = model._ids
        model._ids = ids
    model._ids[row] = item
    model.item_ids.append(item)
    model.index_of[item] = row
    return row
