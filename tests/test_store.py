"""The worker's local stores on the real broker and real RocksDB: two app ids given the
same --datadir keep their rows apart, and a store whose recorded changelog offsets are
past its changelog's end (written for another changelog) is set aside with one log
line, the worker recovering from the changelog instead of stopping at start."""

from __future__ import annotations

import signal
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from rocksdict import Options, Rdict

from hiertcn.inference import StreamModel
from stream.admin import create_topics
from stream.tools.harness import MOVIELENS, Topics, WorkerProcess, consume, until_answered
from stream.tools.replay import load_events
from stream.worker.store import OFFSET_KEY, local_stores, persisted_offset
from tests.modelkit import offline_embeddings

pytestmark = pytest.mark.integration
PARTITIONS = 2
GAP_S = 1800.0  # make_export records SessionConfig's defaults: the worker uses that gap


@pytest.fixture
def run(kafka_bootstrap, tmp_path, export_dir):
    started = []

    def start(topics: Topics, app_id: str, datadir: Path) -> WorkerProcess:
        w = WorkerProcess(kafka_bootstrap, topics, app_id, export_dir, datadir, PARTITIONS,
                          ["--sweep-interval-s", "86400"], log=tmp_path / f"{app_id}-{len(started)}.log")
        started.append(w)
        w.wait_ready()
        return w

    yield start
    for w in started:
        w.stop(signal.SIGKILL, timeout=5)


def fresh_topics(bootstrap, unique_name, name, clicks=None) -> Topics:
    topics = Topics.fresh(lambda n: unique_name(f"{name}-{n}"))
    if clicks:
        topics.clicks = clicks
    create_topics(bootstrap, {t: PARTITIONS for t in vars(topics).values()})
    return topics


def send(bootstrap, topic, rows) -> int:
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    for row in rows.itertuples():
        p.produce(topic, key=str(row.user).encode(), value=orjson.dumps(
            {"user_id": str(row.user), "item_id": str(row.item), "ts": int(row.ts),
             "event_id": row.event_id}))
    p.flush(30)
    return len(rows)


def assert_states_are_the_offline_ones(bootstrap, topics, events, export_dir):
    """Every click's embedding (first answer per event) equals the model's own step-wise
    run over that user's clicks: no state was started from anything but the clicks."""
    model = StreamModel.load(export_dir)
    got = defaultdict(dict)
    answered = consume(bootstrap, topics.embeddings, len(events), timeout=90,
                       done=until_answered(events.event_id))
    for user, value in answered:
        got[user].setdefault(value["event_id"], value["embedding"])
    for user, clicks in events.groupby("user", sort=False):
        sent = [{"item_id": str(r.item), "ts": int(r.ts)} for r in clicks.itertuples()]
        want = offline_embeddings(model, sent, GAP_S)
        answers = [got[str(user)].get(e) for e in clicks.event_id]
        assert None not in answers, (f"user {user}: {answers.count(None)} of {len(answers)} "
                                     f"clicks without an embedding ({len(answered)} read)")
        np.testing.assert_allclose(np.asarray(answers, np.float32), np.stack(want), atol=1e-5)


def cluster(bootstrap) -> str:
    return AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).cluster_id


def test_two_app_ids_on_one_datadir_keep_their_rows_apart(kafka_bootstrap, unique_name,
                                                          tmp_path, run, export_dir):
    events = load_events(MOVIELENS, users=4, limit=240)
    a_topics = fresh_topics(kafka_bootstrap, unique_name, "a")
    datadir = tmp_path / "shared-data"
    a = run(a_topics, unique_name("app-a"), datadir)
    send(kafka_bootstrap, a_topics.clicks, events)
    assert len(consume(kafka_bootstrap, a_topics.recommendations, len(events), 90)) >= len(events)
    assert a.stop() == 0
    # app b reads the same clicks into the same --datadir: it must start from nothing,
    # not from app a's rows (nor stop on app a's changelog offsets)
    b_topics = fresh_topics(kafka_bootstrap, unique_name, "b", clicks=a_topics.clicks)
    b = run(b_topics, unique_name("app-b"), datadir)
    assert_states_are_the_offline_ones(kafka_bootstrap, b_topics, events, export_dir)
    assert "moved to" not in b.tail(10_000)
    here = cluster(kafka_bootstrap)
    for app_id in (unique_name("app-a"), unique_name("app-b")):
        tables = datadir / app_id / here / "v1" / "tables"
        assert local_stores(tables, "user_state"), f"{app_id}: no store of its own"


def test_a_store_ahead_of_its_changelog_is_set_aside_and_recovered(kafka_bootstrap, unique_name,
                                                                     tmp_path, run, export_dir):
    events = load_events(MOVIELENS, users=4, limit=240)
    half = len(events) // 2
    topics = fresh_topics(kafka_bootstrap, unique_name, "t")
    app_id, datadir = unique_name("app"), tmp_path / "data"
    w = run(topics, app_id, datadir)
    send(kafka_bootstrap, topics.clicks, events.iloc[:half])
    assert len(consume(kafka_bootstrap, topics.recommendations, half, 90)) >= half
    assert w.stop() == 0
    # as if the store had been written for another changelog, with more in it: offsets
    # past this changelog's end (Faust would stop: "persisted offset ... is higher")
    stores = local_stores(datadir / app_id / cluster(kafka_bootstrap) / "v1" / "tables",
                          "user_state")
    forged = 0
    for path in stores.values():
        if persisted_offset(path) is not None:
            db = Rdict(str(path), options=Options(raw_mode=True))
            db[OFFSET_KEY] = b"1000000"
            db.close()
            forged += 1
    assert forged, "the worker recorded no changelog offset in its stores"
    w = run(topics, app_id, datadir)
    lines = [line for line in w.tail(10_000).splitlines() if "moved to" in line]
    assert len(lines) == forged and all("1000000" in line for line in lines)
    send(kafka_bootstrap, topics.clicks, events.iloc[half:])
    assert_states_are_the_offline_ones(kafka_bootstrap, topics, events, export_dir)
