"""HierTCN's configuration: the model's shape, as `hiertcn train` sets it and every
checkpoint records it (`ModelConfig.to_dict`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hiertcn.errors import ConfigError

# The sizes `hiertcn train` exposes as options, and the smallest value each takes
# (a kernel of 1 would see no past); `dropout` takes a number in [0, 1).
KNOB_MINIMUM = {"item_dim": 1, "channels": 1, "kernel_size": 2, "levels": 1,
                "gru_hidden": 1, "gru_layers": 1}
KNOBS = (*KNOB_MINIMUM, "dropout")


def knob_problem(name: str, value) -> str | None:
    """What is wrong with `value` for the knob `name`, or None when it is fine."""
    if name == "dropout":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1
        return None if ok else f"expected a number >= 0 and < 1, got {value}"
    low = KNOB_MINIMUM[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        return f"expected an integer >= {low}, got {value}"
    return None


@dataclass(frozen=True)
class ModelConfig:
    n_items: int
    item_dim: int = 128  # item-embedding size; user embeddings live in this space
    channels: int = 128  # TCN width (released code: 128)
    kernel_size: int = 5  # released code: 5
    levels: int = 4  # residual blocks, dilation 2^i (released code: 4)
    gru_hidden: int = 128  # high-level GRU units (released code: 128)
    gru_layers: int = 2  # released code: 2
    dropout: float = 0.1  # in every TCN block (released code: 0.0)
    high_level: bool = True  # False: the "hiertcn_low" ablation (no long-term state)
    untied_output: bool = False  # score against own output vectors + per-item bias
    freeze_items: bool = False  # True when item vectors are loaded from a file

    def __post_init__(self):
        if self.n_items < 1:
            raise ConfigError(f"n_items: expected >= 1, got {self.n_items}")
        for name in KNOBS:
            problem = knob_problem(name, getattr(self, name))
            if problem:
                raise ConfigError(f"{name}: {problem}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def state_dim(self) -> int:
        """Width of the long-term state tiled into every TCN step."""
        return self.gru_hidden * self.gru_layers if self.high_level else 0
