"""The data cache: sessions pre-built once into flat arrays on disk, memory-mapped.

Loading and sessionising a log is the slow part of a run; the cache makes it happen
once per (data file, format, session config, split config). The key hashes the file's
bytes (or, above 256 MiB, its size and mtime) with those configs, so editing the data
or a relevant option rebuilds it, and anything else reuses it. Arrays are `.npy`
opened with `mmap_mode="r"`: several runs share pages and nothing is copied up front.

What is built: the log sessionised without filters, split (hiertcn.data.splits), then
filtered with the item catalogue fitted on the training part (hiertcn.data.filters).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from hiertcn.data.filters import filter_parts, unfiltered
from hiertcn.data.loaders import load_interactions
from hiertcn.data.sessions import SessionConfig, Sessions, sessionize
from hiertcn.data.splits import SplitConfig, split
from hiertcn.errors import DataError

# bump when the on-disk layout or the sessioniser's meaning changes; 2: filters fitted
# on the training part only, after the split (1 filtered the whole log first)
CACHE_VERSION = 2
ARRAYS = ("items", "ts", "session_offsets", "user_offsets", "scored")
LABELS = ("user_ids", "item_ids")
_HASH_WHOLE_FILE_BELOW = 256 << 20
log = logging.getLogger(__name__)


def cache_key(path: Path, fmt: str | None, sessions: SessionConfig, splits: SplitConfig) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "fmt": fmt, "sessions": sessions.to_dict(),
                         "split": splits.to_dict()}, sort_keys=True).encode())
    h.update(_file_fingerprint(path))
    return h.hexdigest()[:16]


def _file_fingerprint(path: Path) -> bytes:
    try:
        st = path.stat()
        if st.st_size >= _HASH_WHOLE_FILE_BELOW:
            return f"{st.st_size}:{st.st_mtime_ns}".encode()
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError as err:
        raise DataError(f"cannot read data file {path}: {err.strerror}") from None


def load_splits(path: str | Path, fmt: str | None = None,
                sessions: SessionConfig = SessionConfig(), splits: SplitConfig = SplitConfig(),
                cache_dir: str | Path = ".cache/hiertcn") -> dict[str, Sessions]:
    """The train/val/test Sessions for a data file, from the cache when it is fresh."""
    path = Path(path)
    where = Path(cache_dir) / cache_key(path, fmt, sessions, splits)
    if not (where / "meta.json").exists():
        log.info("building data cache %s from %s", where, path)
        built = build_splits(load_interactions(path, fmt), sessions, splits)
        _write(where, built, {"source": str(path), "fmt": fmt, "sessions": sessions.to_dict(),
                              "split": splits.to_dict()})
    else:
        log.info("data cache hit: %s", where)
    return {name: _read(where / name) for name in ("train", "val", "test")}


def build_splits(frame, sessions: SessionConfig, splits: SplitConfig) -> dict[str, Sessions]:
    """`frame` (user, item, ts) -> filtered train/val/test: split first, then filters
    fitted on the training part."""
    return filter_parts(split(sessionize(frame, unfiltered(sessions)), splits), sessions)


def _write(where: Path, parts: dict[str, Sessions], meta: dict) -> None:
    tmp = where.with_name(where.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for name, part in parts.items():
        (tmp / name).mkdir(parents=True)
        for field in ARRAYS + LABELS:
            np.save(tmp / name / f"{field}.npy", getattr(part, field))
        meta[name] = part.summary()
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(where, ignore_errors=True)
    tmp.rename(where)  # atomic: a crashed build never looks like a cache hit


def _read(where: Path) -> Sessions:
    arrays = {f: np.load(where / f"{f}.npy", mmap_mode="r") for f in ARRAYS}
    labels = {f: np.load(where / f"{f}.npy") for f in LABELS}
    return Sessions(**arrays, **labels)
