"""Next-item losses shared by every neural model: the user embedding u (N, D) should
score the clicked item above the others.

- softmax: cross-entropy over the full catalogue (released code, XING variant);
- hinge: sampled max-margin against uniform negatives on L2-normalised vectors
  (released code, Pinterest variant), cheaper when the catalogue is huge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from hiertcn.errors import ConfigError

LOSSES = ("softmax", "hinge")


@dataclass(frozen=True)
class LossConfig:
    kind: str = "softmax"
    negatives: int = 256  # hinge only: negatives sampled per batch
    margin: float = 0.2  # hinge only: cosine margin

    def __post_init__(self):
        if self.kind not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.kind!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def next_item_loss(u: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                   config: LossConfig, bias: torch.Tensor | None = None) -> torch.Tensor:
    """u (N, D) user embeddings, targets (N,) item indices, items (n_items, D) the
    vectors scored against; `bias` (n_items,) a per-item score offset (an untied output
    layer, as the released code's XING variant), None for none."""
    if config.kind == "softmax":
        logits = u @ items.T  # (N, n_items)
        return F.cross_entropy(logits if bias is None else logits + bias, targets)
    u, items = F.normalize(u, dim=-1), F.normalize(items, dim=-1)
    negatives = torch.randint(0, items.shape[0], (config.negatives,), device=u.device)
    pos = (u * items[targets]).sum(-1, keepdim=True)  # (N, 1)
    neg = u @ items[negatives].T  # (N, negatives)
    if bias is not None:
        pos, neg = pos + bias[targets, None], neg + bias[negatives]
    return F.relu(config.margin - pos + neg).mean()
