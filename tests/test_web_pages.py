"""The worker's web port against a real worker on the real broker: it serves /health/,
/ready/ and /metrics/ and nothing else, in particular not Faust's /table/ pages that
answer any user's state, unless the operator turns web_debug_pages on."""

from __future__ import annotations

import signal
import sys
import urllib.error
import urllib.request

import orjson
import pytest
from confluent_kafka import Producer

from hiertcn.inference import StreamModel
from stream.admin import create_topics
from stream.config import ENV
from stream.tools.harness import Process, Topics, WorkerProcess, consume, free_port

pytestmark = pytest.mark.integration
PARTITIONS = 2


def status(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture
def worker(kafka_bootstrap, unique_name, tmp_path, export_dir):
    topics = Topics.fresh(unique_name)
    create_topics(kafka_bootstrap, {t: PARTITIONS for t in vars(topics).values()})
    started = []

    def start(name, *extra):
        w = WorkerProcess(kafka_bootstrap, topics, unique_name(name), export_dir,
                          tmp_path / name, PARTITIONS, ["--sweep-interval-s", "86400", *extra])
        started.append(w)
        w.wait_ready()
        return w

    yield start, topics
    for w in started:
        w.stop(signal.SIGKILL, timeout=5)


def test_only_health_ready_metrics_are_served(worker, kafka_bootstrap, export_dir):
    start, topics = worker
    w = start("plain")
    user, item = "u42", StreamModel.load(export_dir).item_ids[0]
    p = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
    p.produce(topics.clicks, key=user.encode(),
              value=orjson.dumps({"user_id": user, "item_id": item, "ts": 1}))
    p.flush(30)
    assert len(consume(kafka_bootstrap, topics.recommendations, 1, timeout=60)) == 1
    for page in ("/health/", "/ready/", "/metrics/"):
        assert status(w.url(page))[0] == 200, page
    # the user's state is in the table now; none of Faust's pages may hand it out
    for page in ("/table/", "/table/user_state/", f"/table/user_state/{user}/",
                 "/router/", f"/router/user_state/{user}/", "/", "/graph/", "/stats/",
                 "/assignment/", "/performance/"):
        code, body = status(w.url(page))
        assert code == 404, f"{page} answers {code}: {body[:200]!r}"

    debug = start("debug", "--web-debug-pages", "true")
    code, body = status(debug.url("/table/"))
    assert code == 200 and b"user_state" in body  # on purpose only
    assert status(debug.url("/health/"))[0] == 200


def test_faust_dash_a_builds_the_app_from_the_environment(kafka_bootstrap, unique_name,
                                                        tmp_path, export_dir):
    """`faust -A stream.worker.app worker`: the module builds its app from the
    environment at the first access to `app`, the same app as `hiertcn-stream worker`."""
    topics = Topics.fresh(unique_name)
    create_topics(kafka_bootstrap, {t: PARTITIONS for t in vars(topics).values()})
    port = free_port()
    env = {ENV["bootstrap_servers"]: kafka_bootstrap, ENV["app_id"]: unique_name("app"),
           ENV["partitions"]: str(PARTITIONS), ENV["export_dir"]: str(export_dir),
           ENV["datadir"]: str(tmp_path / "data"), ENV["web_port"]: str(port),
           ENV["clicks_topic"]: topics.clicks, ENV["recommendations_topic"]: topics.recommendations,
           ENV["embeddings_topic"]: topics.embeddings, ENV["dlq_topic"]: topics.dlq}
    w = Process([sys.executable, "-m", "faust", "-A", "stream.worker.app", "worker", "-l", "info"],
                tmp_path / "faust-a.log", env, port)
    try:
        w.wait_ready()
        assert status(w.url("/table/"))[0] == 404
        assert (tmp_path / "data" / unique_name("app")).is_dir()  # keyed by app id
    finally:
        w.stop(signal.SIGKILL, timeout=5)
