"""Device choice for the stream's model and search (hiertcn/accel.py). CI has no GPU:
the CPU path and the refusals are tested here; the GPU path is measured on a GPU
machine (benchmarks/streambench/device_compare.py)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from hiertcn.accel import DEVICES, TorchInnerProductSearch, choose_device, index_on
from hiertcn.errors import ConfigError
from stream.config import DEVICES as CONFIG_DEVICES, StreamConfig


def test_auto_takes_the_cpu_without_cuda_and_cuda_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        choose_device("cuda")
    with pytest.raises(ConfigError, match="one of auto, cpu, cuda"):
        choose_device("tpu")


def test_config_offers_the_devices_accel_knows(monkeypatch):
    assert CONFIG_DEVICES == DEVICES
    monkeypatch.setenv("HIERTCN_DEVICE", "cpu")
    assert StreamConfig.resolve({}).device == "cpu"


def test_cpu_keeps_the_faiss_index():
    index = faiss.IndexFlatIP(4)
    assert index_on(index, torch.device("cpu")) == (index, "faiss-cpu")


def test_torch_search_ranks_as_the_flat_faiss_index():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    queries = rng.standard_normal((25, 16)).astype(np.float32)
    index = faiss.IndexFlatIP(16)
    index.add(vectors)
    want_scores, want_ids = index.search(queries, 20)
    search = TorchInnerProductSearch(vectors, torch.device("cpu"))
    scores, ids = search.search(queries, 20)
    assert search.ntotal == index.ntotal
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
