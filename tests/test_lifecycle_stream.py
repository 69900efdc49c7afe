"""Model lifecycle in the stream: a live swap between micro-batches, a canary share of
users, a broken export refused, and a live catalogue (items added and retired without
retraining). Unit tests of the pure parts first; then, against the real local broker,
a few worker runs (each start costs seconds)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from confluent_kafka import Producer

from hiertcn.checkpoint import export, save_checkpoint
from hiertcn.inference import StreamModel
from hiertcn.live_items import accepts_item_vectors, retire_items, upsert_items
from hiertcn.model import HierTCN, ModelConfig
from stream import cli
from stream.admin import (CONTROL_TOPIC_CONFIG, DLQ_TOPIC_CONFIG, TOMBSTONE_RETENTION_MS,
                          create_topics, ensure_topics, warn_short_tombstones)
from stream.config import StreamConfig
from stream.errors import ConfigError
from stream.models_cli import promote, publish, rollback, write_deployment
from stream.records import Deployment, ModelRef, encode_click, encode_item_vector
from stream.tools.harness import Topics, WorkerProcess, consume
from stream.worker import metrics
from stream.worker.canary import BUCKETS, Route, bucket, merge, on_candidate
from stream.worker.catalogue import Catalogue
from stream.worker.recommend import Incoming, Policy, process_batch

ITEMS = [f"m{k}" for k in range(300)]


def export_model(where: Path, seed: int, frozen: bool = False, items=ITEMS, dim=16) -> Path:
    """A small random HierTCN (`seed`: another seed, another version), exported as
    `hiertcn export` does; `frozen`: its item table frozen, as `--item-vectors` trains."""
    torch.manual_seed(seed)
    model = HierTCN(ModelConfig(n_items=len(items), item_dim=dim, channels=dim, kernel_size=3,
                                levels=2, gru_hidden=8, gru_layers=1, dropout=0.0,
                                freeze_items=frozen)).eval()
    where.mkdir(parents=True, exist_ok=True)
    save_checkpoint(where / "ckpt.pt", model, items, step=0, extra={})
    return export(where / "ckpt.pt", where / "export")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle-exports")
    return {"a": export_model(root / "a", 0), "b": export_model(root / "b", 1),
            "frozen": export_model(root / "f", 2, frozen=True)}


# ---------------------------------------------------------------- unit: canary


def test_canary_share_is_close_to_the_setting_and_stable_per_user():
    users = [f"user-{k}" for k in range(BUCKETS)]
    for share in (0.01, 0.1, 0.5):
        on = sum(on_candidate(u, share) for u in users)
        assert abs(on / len(users) - share) < 0.015, (share, on)
    # widening a canary only adds users: whoever is on at 5% is on at 10%
    assert all(on_candidate(u, 0.1) for u in users if on_candidate(u, 0.05))
    assert not any(on_candidate(u, 0.0) for u in users) and all(on_candidate(u, 1.0) for u in users)
    # the same buckets in another process with another hash seed (Python's hash() differs)
    code = ("from stream.worker.canary import bucket; "
            "print([bucket(f'user-{k}') for k in range(50)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=Path(__file__).parents[1],
                         check=True).stdout
    assert out.strip() == str([bucket(f"user-{k}") for k in range(50)])


def test_a_canary_batch_is_served_per_user_by_one_model_and_merged(exports):
    a, b = StreamModel.load(exports["a"]), StreamModel.load(exports["b"])
    users = [f"u{k}" for k in range(40)]
    events = [Incoming(u, ITEMS[(k * 7 + j) % len(ITEMS)], 10.0 * j, "click", f"{u}:{j}", 0, k * 3 + j)
              for j in range(3) for k, u in enumerate(users)]
    route = Route(a, b, 0.5)
    parts = [(m, process_batch(m, evs, lambda _u: None, Policy(top_k=5)))
             for m, evs in route.split(events)]
    assert [m for m, _ in parts] == [a, b]
    alone = {o.event_id: r.embeddings[o.embedding_row] for _, r in parts for o in r.outputs}
    merged = merge([r for _, r in parts])
    assert len(merged.outputs) == len(events)
    for o in merged.outputs:
        assert o.model == (b.version if on_candidate(o.user_id, 0.5) else a.version)
    # each output's embedding is its own model's, after the merge moved the rows
    for o in merged.outputs:
        np.testing.assert_array_equal(merged.embeddings[o.embedding_row], alone[o.event_id])
    # per user, the events keep their order
    seen = defaultdict(list)
    for o in merged.outputs:
        seen[o.user_id].append(o.event_id)
    assert all(ids == [f"{u}:{j}" for j in range(3)] for u, ids in seen.items())


# ---------------------------------------------------------------- unit: live items


def test_live_items_grow_and_shrink_a_frozen_model_in_place(exports):
    m = StreamModel.load(exports["frozen"])
    assert accepts_item_vectors(m)
    user = np.random.default_rng(0).standard_normal((1, m.index.d)).astype(np.float32)
    before = m.top_k(user, 5)[0]
    assert upsert_items(m, ["brand-new"], 100 * user) == 1
    assert m.top_k(user, 5)[0].item_ids[0] == "brand-new"
    # usable as input: the item table grew, so the model can step on it
    row = m.index_of["brand-new"]
    state = m.model.step(m.model.initial_state(1), torch.tensor([row]))
    assert torch.isfinite(state.embedding).all()
    # excluded like any clicked item, by its row
    assert "brand-new" not in m.top_k(user, 5, [{row}])[0].item_ids
    assert retire_items(m, ["brand-new", ITEMS[0]]) == 2
    after = m.top_k(user, len(ITEMS))[0].item_ids
    assert "brand-new" not in after and ITEMS[0] not in after and "brand-new" not in m.index_of
    assert after[:4] == [i for i in before.item_ids if i != ITEMS[0]][:4]
    # many more than the table had room for: it grows by doubling, search stays exact
    vectors = np.random.default_rng(1).standard_normal((700, m.index.d)).astype(np.float32)
    assert upsert_items(m, [f"x{k}" for k in range(700)], vectors) == 700
    assert m.index.ntotal == len(ITEMS) - 1 + 700 == len(m.index_of)
    table = m.model.items.weight.detach().numpy()
    live = sorted(m.index_of, key=lambda item: -float(table[m.index_of[item]] @ user[0]))
    assert m.top_k(user, 10)[0].item_ids == live[:10]


def test_a_model_with_a_trained_item_table_refuses_item_vectors(exports):
    m = StreamModel.load(exports["a"])
    assert not accepts_item_vectors(m)
    cat = Catalogue()
    cat.record([("brand-new", np.ones(m.index.d, np.float32)), (ITEMS[0], None)])
    refused = metrics.ITEM_UPDATES.labels(outcome="refused")._value.get()
    cat.update(m)
    assert metrics.ITEM_UPDATES.labels(outcome="refused")._value.get() == refused + 2
    assert "brand-new" not in m.index_of and ITEMS[0] in m.index_of


def test_models_cli_transitions(exports):
    a, b = (ModelRef(StreamModel.load(exports[k]).version, str(exports[k].resolve()))
            for k in ("a", "b"))
    config = StreamConfig.resolve({"export_dir": str(exports["a"])})
    rollout = publish(None, exports["b"], None, config)
    assert rollout == Deployment(b)
    canary = publish(None, exports["b"], 0.1, config)  # nothing published: the export dir serves
    assert canary == Deployment(a, b, 0.1)
    assert promote(canary) == Deployment(b, previous=a)
    assert rollback(canary) == Deployment(a)
    assert rollback(promote(canary)) == Deployment(a)
    with pytest.raises(ConfigError, match="no candidate"):
        promote(Deployment(a))
    with pytest.raises(ConfigError, match="current model"):
        publish(Deployment(b), exports["b"], 0.2, config)
    broken = exports["b"].parent / "broken"
    shutil.copytree(exports["b"], broken, dirs_exist_ok=True)
    (broken / "items.faiss").unlink()
    with pytest.raises(ConfigError, match="not a usable export"):
        publish(None, broken, None, config)


# ---------------------------------------------------------------- the real broker

PARTITIONS = 2


@pytest.fixture
def lab(kafka_bootstrap, unique_name, tmp_path):
    topics = Topics.fresh(unique_name)
    config = StreamConfig.resolve({"bootstrap_servers": kafka_bootstrap,
                                   "models_topic": unique_name("models"),
                                   "items_topic": unique_name("items")})
    create_topics(kafka_bootstrap, {topics.clicks: PARTITIONS, topics.recommendations: PARTITIONS,
                                    topics.embeddings: PARTITIONS})
    create_topics(kafka_bootstrap, {topics.dlq: PARTITIONS}, config=DLQ_TOPIC_CONFIG)
    create_topics(kafka_bootstrap, {config.models_topic: 1, config.items_topic: 1},
                  config=CONTROL_TOPIC_CONFIG)
    workers = []

    def start(export_dir):
        w = WorkerProcess(kafka_bootstrap, topics, unique_name("app"), export_dir, tmp_path / "data",
                          PARTITIONS, ["--sweep-interval-s", "86400",
                                       "--models-topic", config.models_topic,
                                       "--items-topic", config.items_topic],
                          log=tmp_path / f"worker-{len(workers)}.log")
        workers.append(w)
        w.wait_ready()
        return w

    yield kafka_bootstrap, topics, config, start
    for w in workers:
        w.stop(timeout=10)


def send_clicks(bootstrap, topic, clicks, rate=None):
    """clicks: (user, item, event_id); event time 1 s apart; `rate`: clicks/s, paced."""
    p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    t0 = time.monotonic()
    for k, (user, item, event_id) in enumerate(clicks):
        p.produce(topic, key=user.encode(), value=encode_click(user, item, 1e6 + k, "click", event_id))
        if rate:
            time.sleep(max(0.0, t0 + k / rate - time.monotonic()))
            p.poll(0)
    assert p.flush(30) == 0


def wait_metric(w, name, want, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if w.counters().get(name, 0.0) >= want:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} never reached {want}: {w.counters().get(name)}\n{w.tail()}")


@pytest.mark.integration
def test_a_swap_under_load_loses_nothing_and_a_broken_export_is_refused(lab, exports, tmp_path):
    bootstrap, topics, config, start = lab
    a, b = (StreamModel.load(exports[k]).version for k in ("a", "b"))
    w = start(exports["a"])
    users = [f"u{k}" for k in range(60)]
    n = 2400
    clicks = [(users[k % 60], ITEMS[(k * 13) % len(ITEMS)], f"e{k}") for k in range(n)]
    load = threading.Thread(target=send_clicks, args=(bootstrap, topics.clicks, clicks, 300))
    load.start()
    broken = tmp_path / "broken"
    shutil.copytree(exports["b"], broken)
    (broken / "items.faiss").unlink()
    time.sleep(1.5)
    write_deployment(config, Deployment(ModelRef(b, str(broken))))
    wait_metric(w, "hiertcn_model_load_failures_total", 1)
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(config.models_topic, key=b"deployment", value=b"{not a deployment")
    assert p.flush(10) == 0
    wait_metric(w, "hiertcn_control_bad_records_total", 1)  # skipped, counted
    time.sleep(1.0)
    assert cli.main(["models", "publish", "--export", str(exports["b"]), "--bootstrap-servers",
                     bootstrap, "--models-topic", config.models_topic]) == 0
    load.join()
    recs = consume(bootstrap, topics.recommendations, n, timeout=90)
    per_click = Counter(r["event_id"] for _, r in recs)
    assert len(per_click) == n and set(per_click.values()) == {1}, "each click answered once"
    versions = defaultdict(list)
    for key, r in recs:
        versions[key].append(r["model"])
    assert {v for vs in versions.values() for v in vs} == {a, b}
    for vs in versions.values():  # per user: the old model, then the new, never back
        assert vs == sorted(vs, key=lambda v: v == b)
    scraped = w.counters()
    assert scraped["hiertcn_model_load_failures_total"] == 1
    assert scraped["hiertcn_model_swaps_total"] == 1
    log = w.log.read_text(errors="replace")
    assert log.count("refused model") == 1 and f"{a} -> {b}" in log
    assert not any(u in log for u in users[10:])  # no user id in the log


@pytest.mark.integration
def test_a_canary_serves_its_share_and_promote_moves_everyone(lab, exports):
    bootstrap, topics, config, start = lab
    a, b = (ModelRef(StreamModel.load(exports[k]).version, str(exports[k])) for k in ("a", "b"))
    write_deployment(config, Deployment(a, b, 0.3))  # before the start: read at start
    w = start(exports["a"])
    users = [f"c{k}" for k in range(200)]
    send_clicks(bootstrap, topics.clicks, [(u, ITEMS[k % 50], f"{u}:0") for k, u in enumerate(users)])
    recs = consume(bootstrap, topics.recommendations, len(users), timeout=60)
    got = {key: r["model"] for key, r in recs}
    assert got == {u: (b.version if on_candidate(u, 0.3) else a.version) for u in users}
    assert set(got.values()) == {a.version, b.version}
    scraped = w.metrics()
    for ref in (a, b):
        assert f'hiertcn_model_events_total{{kind="answered",model="{ref.version}"}}' in scraped
        assert f'hiertcn_model_latency_seconds_count{{model="{ref.version}"}}' in scraped
    # promote, roll back, publish to everyone, withdraw (back to the worker's own export
    # dir), by configuration (the CLI ops run), no restart
    steps = ((["promote"], b), (["rollback"], a), (["publish", "--export", str(exports["b"])], b),
             (["withdraw"], a))
    for step, (action, want) in enumerate(steps, start=1):
        assert cli.main(["models", *action, "--bootstrap-servers", bootstrap,
                         "--models-topic", config.models_topic]) == 0
        wait_metric(w, "hiertcn_model_swaps_total", step)
        send_clicks(bootstrap, topics.clicks, [(u, ITEMS[step], f"{u}:{step}") for u in users])
        recs = consume(bootstrap, topics.recommendations, (step + 1) * len(users), timeout=60)
        assert {r["model"] for _, r in recs if r["event_id"].endswith(f":{step}")} == {want.version}
        gone = b if want == a else a
        assert f'model="{gone.version}"' not in w.metrics()  # a version gone: its series too
    assert cli.main(["models", "show", "--bootstrap-servers", bootstrap,
                     "--models-topic", config.models_topic]) == 0
    with pytest.raises(ConfigError, match="no deployment .* to withdraw"):
        stream_models_run("withdraw", bootstrap, config)


@pytest.mark.integration
def test_an_item_published_on_items_is_recommended_and_not_after_its_tombstone(lab, exports):
    bootstrap, topics, config, start = lab
    model = StreamModel.load(exports["frozen"])
    w = start(exports["frozen"])
    send_clicks(bootstrap, topics.clicks, [("u1", ITEMS[3], "first")])
    (_, emb), = consume(bootstrap, topics.embeddings, 1, timeout=60)
    vector = np.asarray(emb["embedding"], np.float32)
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(config.items_topic, key=b"brand-new", value=encode_item_vector(
        100 * vector / np.linalg.norm(vector), base64_form=True))
    assert p.flush(10) == 0

    def top_after_unknown_clicks(tag, want_new: bool) -> list[str]:
        # an unknown item leaves the state as it is: the same embedding each time
        for k in range(40):
            send_clicks(bootstrap, topics.clicks, [("u1", f"unknown-{tag}-{k}", f"{tag}{k}")])
            recs = consume(bootstrap, topics.recommendations, 10**6, timeout=1.0)
            mine = [r for _, r in recs if r["event_id"] == f"{tag}{k}"]
            if mine and (mine[0]["items"][0]["item_id"] == "brand-new") == want_new:
                return [i["item_id"] for i in mine[0]["items"]]
        raise AssertionError(f"{tag}: never {'' if want_new else 'un'}recommended\n{w.tail()}")

    assert top_after_unknown_clicks("before", True)[0] == "brand-new"
    # usable as input: a click on it is no unknown item
    unknown = sample(w, 'hiertcn_event_outcomes_total{kind="unknown_items"}')
    send_clicks(bootstrap, topics.clicks, [("u2", "brand-new", "input")])
    assert any(r["event_id"] == "input" for _, r in
               consume(bootstrap, topics.recommendations, 10**6, timeout=2.0))
    assert sample(w, 'hiertcn_event_outcomes_total{kind="unknown_items"}') == unknown
    p.produce(config.items_topic, key=b"brand-new", value=None)  # the tombstone
    assert p.flush(10) == 0
    assert "brand-new" not in top_after_unknown_clicks("after", False)
    assert model.version in w.log.read_text()


def stream_models_run(action: str, bootstrap: str, config: StreamConfig) -> None:
    """`hiertcn-stream models ACTION` as the CLI runs it, its errors raised."""
    from stream.models_cli import run
    run(SimpleNamespace(models_command=action), StreamConfig.resolve(
        {"bootstrap_servers": bootstrap, "models_topic": config.models_topic}))


def sample(w, series: str) -> float:
    """One series' value from the worker's /metrics/ (0 when absent)."""
    for line in w.metrics().splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.integration
def test_the_items_topic_keeps_its_tombstones(kafka_bootstrap, unique_name, caplog):
    """A tombstone compacted away (after Kafka's default day) would bring a retired item
    back at a later start: the worker creates `items` keeping them for a century, and
    warns about an existing `items` topic that does not."""
    config = StreamConfig.resolve({"bootstrap_servers": kafka_bootstrap,
                                   "clicks_topic": unique_name("clicks"),
                                   "models_topic": unique_name("models"),
                                   "items_topic": unique_name("items")})
    with caplog.at_level("WARNING", logger="stream.admin"):
        ensure_topics(config)
        assert warn_short_tombstones(kafka_bootstrap, config.items_topic) == \
            TOMBSTONE_RETENTION_MS
    assert not [r for r in caplog.records if "tombstones" in r.getMessage()]
    made_by_hand = unique_name("items-by-hand")
    create_topics(kafka_bootstrap, {made_by_hand: 1}, config=CONTROL_TOPIC_CONFIG)
    with caplog.at_level("WARNING", logger="stream.admin"):
        kept = warn_short_tombstones(kafka_bootstrap, made_by_hand)
    assert kept is not None and kept < TOMBSTONE_RETENTION_MS
    warned = [r.getMessage() for r in caplog.records if made_by_hand in r.getMessage()]
    assert len(warned) == 1 and f"delete.retention.ms={TOMBSTONE_RETENTION_MS}" in warned[0]
