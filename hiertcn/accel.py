"""Where the stream's model and top-K search run: the CPU, or a CUDA GPU when one is
present (`pip install '.[gpu]'` adds faiss-gpu). One code path: the same StreamModel
calls, with its tensors on the chosen device and its index searched there.

`choose_device("auto")` takes CUDA when torch sees a GPU. The index then goes to the
GPU with faiss-gpu when faiss was built with GPU support; otherwise (faiss-cpu on a
GPU machine) an exact inner-product search over the same vectors in torch on the GPU,
which is what the flat index computes. Each choice is logged at start.
"""

from __future__ import annotations

import logging

import faiss
import numpy as np
import torch

from hiertcn.errors import ConfigError

log = logging.getLogger(__name__)
DEVICES = ("auto", "cpu", "cuda")


def choose_device(requested: str = "auto") -> torch.device:
    if requested not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {requested!r}")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but torch sees no CUDA GPU: use "
                          "'auto' or 'cpu'")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


class TorchInnerProductSearch:
    """faiss's `search` for an exact inner-product index, computed in torch on a GPU:
    (n, d) float32 queries -> (scores, ids), each (n, k) numpy, best first."""

    def __init__(self, vectors: np.ndarray, device: torch.device):
        self.vectors = torch.from_numpy(np.ascontiguousarray(vectors, np.float32)).to(device)
        self.device = device

    @property
    def ntotal(self) -> int:
        return self.vectors.shape[0]

    @torch.no_grad()
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = torch.from_numpy(np.ascontiguousarray(queries, np.float32)).to(self.device)
        scores, ids = torch.topk(q @ self.vectors.T, min(k, self.ntotal), dim=1)
        return scores.cpu().numpy(), ids.cpu().numpy()


def index_on(index, device: torch.device):
    """The index to search on `device`, and a few words saying which it is."""
    if device.type != "cuda":
        return index, "faiss-cpu"
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        resources = faiss.StandardGpuResources()
        gpu = faiss.index_cpu_to_gpu(resources, torch.cuda.current_device(), index)
        gpu.resources = resources  # keep them alive as long as the index
        return gpu, "faiss-gpu"
    if isinstance(index, faiss.IndexFlatIP):
        return (TorchInnerProductSearch(index.reconstruct_n(0, index.ntotal), device),
                "torch inner product on the GPU (faiss here has no GPU support)")
    return index, f"faiss-cpu ({type(index).__name__} has no GPU path here)"


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
