"""What the worker is built from, without a broker: the session policy comes from the
export (overrides logged), the local store is keyed by app and cluster and a store
written for another changelog is set aside, and only the worker's own web pages are
served unless web_debug_pages."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from hiertcn.errors import CheckpointError
from stream.config import StreamConfig
from stream.worker import store
from stream.worker.app import create_app
from stream.worker.recommend import Policy
from types import SimpleNamespace

from stream.worker.session_policy import for_model, resolve_policy
from stream.worker.web import OwnPagesWeb


def export_with(tmp_path: Path, **meta) -> Path:
    d = tmp_path / "export"
    d.mkdir()
    (d / "meta.json").write_text(json.dumps({"version": "v", **meta}))
    return d


# ---------------------------------------------------------------- session policy

def test_policy_is_the_exports_training_session(tmp_path, caplog):
    export = export_with(tmp_path, session={"gap_s": 600, "max_session_len": 40})
    with caplog.at_level(logging.INFO):
        policy = resolve_policy(StreamConfig(export_dir=export, top_k=7))
    assert policy == Policy(top_k=7, session_gap_s=600.0, max_session_len=40,
                            exclude_clicked=True)
    assert "overrides" not in caplog.text


def test_an_explicit_override_wins_and_is_logged(tmp_path, caplog):
    export = export_with(tmp_path, session={"gap_s": 600, "max_session_len": 40})
    with caplog.at_level(logging.INFO):
        policy = resolve_policy(StreamConfig(export_dir=export, session_gap_s=900.0))
    assert (policy.session_gap_s, policy.max_session_len) == (900.0, 40)
    (line,) = [r for r in caplog.records if "overrides" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "session_gap_s=900.0" in line.getMessage() and "600" in line.getMessage()
    assert "HIERTCN_SESSION_GAP_S" in line.getMessage()


def test_a_model_deployed_later_brings_its_own_session_policy_unless_overridden(tmp_path):
    export = export_with(tmp_path, session={"gap_s": 600, "max_session_len": 40})
    started = resolve_policy(StreamConfig(export_dir=export, top_k=7))
    later = SimpleNamespace(session_policy={"gap_s": 1200, "max_session_len": 15})
    own = for_model(started, StreamConfig(export_dir=export, top_k=7), later)
    assert own == Policy(top_k=7, session_gap_s=1200.0, max_session_len=15)
    pinned = StreamConfig(export_dir=export, top_k=7, session_gap_s=900.0)
    assert for_model(resolve_policy(pinned), pinned, later).session_gap_s == 900.0
    assert for_model(started, pinned, SimpleNamespace(session_policy=None)) is started


def test_an_export_without_its_session_is_a_one_line_error_to_export_again(tmp_path):
    export = export_with(tmp_path)  # no "session" key: an older export
    with pytest.raises(CheckpointError, match="records no session policy.*hiertcn export"):
        resolve_policy(StreamConfig(export_dir=export))


def test_a_missing_export_is_a_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match="no model export in .*hiertcn export"):
        resolve_policy(StreamConfig(export_dir=tmp_path / "none"))


# ---------------------------------------------------------------- local stores

def test_store_dir_is_keyed_by_app_and_cluster(tmp_path):
    a = StreamConfig(datadir=tmp_path, app_id="app-a")
    b = StreamConfig(datadir=tmp_path, app_id="app-b")
    assert store.store_dir(a, "C1") == tmp_path / "app-a" / "C1"
    assert len({store.store_dir(a, "C1"), store.store_dir(a, "C2"),
                store.store_dir(b, "C1")}) == 3
    assert store.store_dir(StreamConfig(datadir=tmp_path, app_id="../x"), "..") == \
        tmp_path / ".._x" / "_.."  # never outside the datadir


def write_store(path: Path, offset: int | None) -> None:
    """A partition store as Faust's rocksdb store writes it (raw keys)."""
    db = Rdict(str(path), options=Options(raw_mode=True))
    db[b'"u1"'] = b"row"
    if offset is not None:
        db[store.OFFSET_KEY] = str(offset).encode()
    db.close()


def test_a_store_ahead_of_its_changelog_is_set_aside_with_one_line(tmp_path, caplog):
    tables = tmp_path / "v1" / "tables"
    tables.mkdir(parents=True)
    write_store(tables / "user_state-0.db", 7)  # changelog [0] ends at 3: not its own
    write_store(tables / "user_state-1.db", 4)  # changelog [1] ends at 5: a cache of it
    write_store(tables / "user_state-2.db", None)  # no recorded offset: left to Faust
    assert store.persisted_offset(tables / "user_state-0.db") == 7
    with caplog.at_level(logging.WARNING):
        moved = store.set_aside_stale(tables, "user_state", "app-user_state-changelog",
                                      {0: 3, 1: 5, 2: 0})
    assert [p.name.split(".stale-")[0] for p in moved] == ["user_state-0.db"]
    assert sorted(store.local_stores(tables, "user_state")) == [1, 2]
    (line,) = caplog.records
    assert "app-user_state-changelog[0] ends at offset 3" in line.getMessage()
    # a changelog partition that is gone (or a topic that is) counts as empty
    assert len(store.set_aside_stale(tables, "user_state", "c", {})) == 1
    assert store.set_aside_stale(tables, "user_state", "c", {}) == []


# ---------------------------------------------------------------- web pages

def test_only_the_workers_pages_unless_debug_pages(tmp_path):
    def web_of(**options):
        config = StreamConfig(datadir=tmp_path, **options)
        return create_app(config, cluster_id="C", policy=Policy()).app.web

    web = web_of()
    assert isinstance(web, OwnPagesWeb) and web.blueprints._enabled == []
    routes = {r.resource.canonical for r in web.web_app.router.routes()}
    assert routes == {"/health/", "/ready/", "/metrics/"}
    debug = web_of(web_debug_pages=True)
    assert ("/table", "faust.web.apps.tables.blueprint") in debug.blueprints._enabled
