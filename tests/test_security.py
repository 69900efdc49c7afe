"""Kafka security for real: a local Apache Kafka broker that requires authentication
(SASL_PLAINTEXT with PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512, and with a self-signed CA
made at start: SASL_SSL and SSL). Confluent clients and the Faust worker connect with
StreamConfig's settings; wrong credentials stop them with one clear line that never
contains the password."""

from __future__ import annotations

import signal
import sys
import time
import uuid

import orjson
import pytest
from confluent_kafka import Producer

from stream.config import StreamConfig
from stream.errors import AuthenticationError, BrokerError, TLSError
from stream.admin import create_topics
from stream.admin import check_connection
from stream.tools.replay import replay
from tests.conftest import SECURE_USERS
from stream.tools.harness import MOVIELENS, Topics, WorkerProcess, consume

integration = pytest.mark.integration
USER = "alice"
PASSWORD = SECURE_USERS[USER]
WRONG = "not-alices-Pw-0000"
PARTITIONS = 2

# (broker listener, SASL mechanism or None for TLS only)
CLIENT_CASES = [("sasl", "PLAIN"), ("sasl", "SCRAM-SHA-256"), ("sasl", "SCRAM-SHA-512"),
                ("sasl_ssl", "PLAIN"), ("sasl_ssl", "SCRAM-SHA-256"), ("ssl", None)]


def needs(broker, mode: str) -> None:
    if mode not in broker.listeners:
        pytest.skip(f"no {mode} listener: openssl is needed for the test certificate")


def config_for(broker, mode: str, mechanism: str | None, password: str = PASSWORD,
               user: str = USER, **more) -> StreamConfig:
    """StreamConfig as ops would set it: the listener's protocol, the user, the CA."""
    protocol = {"sasl": "SASL_PLAINTEXT", "sasl_ssl": "SASL_SSL", "ssl": "SSL"}[mode]
    cli = {"bootstrap_servers": broker.bootstrap_for(mode), "security_protocol": protocol,
           "partitions": PARTITIONS, **more}
    if mechanism:
        cli.update(sasl_mechanism=mechanism, sasl_username=user, sasl_password=password)
    if "SSL" in protocol:
        cli["ssl_cafile"] = broker.cafile
    return StreamConfig.resolve(cli, env={})


def read(settings: dict, topic: str, n: int, timeout: float = 60.0) -> list:
    return consume(None, topic, n, timeout, group=f"read-{uuid.uuid4().hex[:8]}",
                   settings=settings, raw=True, strict=True)


# ---------------------------------------------------------------- confluent clients


@integration
@pytest.mark.parametrize("mode,mechanism", CLIENT_CASES)
def test_confluent_round_trip(secure_kafka, unique_name, mode, mechanism):
    needs(secure_kafka, mode)
    config = config_for(secure_kafka, mode, mechanism)
    settings = config.confluent_settings()
    assert settings["security.protocol"] == config.security_protocol
    check_connection(config.confluent_settings(), timeout=10)
    topic = unique_name("t")
    create_topics(config.bootstrap_servers, {topic: 1}, settings=settings)
    producer = Producer(settings)
    for i in range(5):
        producer.produce(topic, f"v{i}".encode(), f"k{i}".encode())
    assert producer.flush(15) == 0
    got = read(settings, topic, 5)
    assert [v for _, v in got] == [f"v{i}".encode() for i in range(5)]


@integration
@pytest.mark.parametrize("mode,mechanism", [("sasl", "PLAIN"), ("sasl", "SCRAM-SHA-256"),
                                            ("sasl", "SCRAM-SHA-512"), ("sasl_ssl", "PLAIN")])
def test_wrong_password_fails_fast_in_one_line(secure_kafka, mode, mechanism):
    needs(secure_kafka, mode)
    config = config_for(secure_kafka, mode, mechanism, password=WRONG)
    start = time.monotonic()
    with pytest.raises(AuthenticationError) as err:
        check_connection(config.confluent_settings(), timeout=20)
    assert time.monotonic() - start < 10, "must not wait for the timeout"
    text = str(err.value)
    assert isinstance(err.value, BrokerError)
    assert "\n" not in text and WRONG not in text and PASSWORD not in text
    assert text.startswith(f"authentication failed for user 'alice' at "
                           f"{config.bootstrap_servers} (SASL {mechanism})")
    assert "HIERTCN_SASL_USERNAME / HIERTCN_SASL_PASSWORD" in text


@integration
def test_unknown_user_fails_fast(secure_kafka):
    config = config_for(secure_kafka, "sasl", "SCRAM-SHA-256", user="mallory")
    with pytest.raises(AuthenticationError, match="user 'mallory'"):
        check_connection(config.confluent_settings(), timeout=20)


@integration
def test_untrusted_certificate_fails_fast(secure_kafka):
    needs(secure_kafka, "ssl")
    config = StreamConfig.resolve({"bootstrap_servers": secure_kafka.bootstrap_for("ssl"),
                                   "security_protocol": "SSL"}, env={})  # no CA given
    with pytest.raises(TLSError, match="certificate verify failed.*HIERTCN_SSL_CAFILE"):
        check_connection(config.confluent_settings(), timeout=20)


@integration
def test_plaintext_client_on_sasl_listener_names_the_protocol(secure_kafka):
    settings = {"bootstrap.servers": secure_kafka.bootstrap_for("sasl")}
    with pytest.raises(BrokerError, match="HIERTCN_SECURITY_PROTOCOL") as err:
        check_connection(settings, timeout=3)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- the Faust worker


def security_env(monkeypatch, config: StreamConfig, password_file=None) -> None:
    """What ops set: HIERTCN_* variables (WorkerProcess copies os.environ)."""
    monkeypatch.setenv("HIERTCN_SECURITY_PROTOCOL", config.security_protocol)
    if config.security_protocol.startswith("SASL_"):
        monkeypatch.setenv("HIERTCN_SASL_MECHANISM", config.sasl_mechanism)
        monkeypatch.setenv("HIERTCN_SASL_USERNAME", config.sasl_username)
        if password_file:
            password_file.write_text(config.sasl_password + "\n")
            monkeypatch.setenv("HIERTCN_SASL_PASSWORD_FILE", str(password_file))
            monkeypatch.delenv("HIERTCN_SASL_PASSWORD", raising=False)
        else:
            monkeypatch.setenv("HIERTCN_SASL_PASSWORD", config.sasl_password)
    if config.ssl_cafile:
        monkeypatch.setenv("HIERTCN_SSL_CAFILE", str(config.ssl_cafile))


@integration
@pytest.mark.parametrize("mode,mechanism,from_file", [("sasl", "SCRAM-SHA-256", True),
                                                      ("sasl_ssl", "PLAIN", False)])
def test_worker_connects_and_answers(secure_kafka, export_dir, unique_name, tmp_path,
                                     monkeypatch, mode, mechanism, from_file):
    needs(secure_kafka, mode)
    topics = Topics.fresh(unique_name)
    config = config_for(secure_kafka, mode, mechanism, clicks_topic=topics.clicks)
    security_env(monkeypatch, config, tmp_path / "sasl.password" if from_file else None)
    worker = WorkerProcess(config.bootstrap_servers, topics, unique_name("app"), export_dir,
                           tmp_path / "w1", PARTITIONS)
    try:
        worker.wait_ready(timeout=120)
        n = replay(config, MOVIELENS, users=3, limit=30)  # the worker made the topics
        recs = read(config.confluent_settings(), topics.recommendations, n, timeout=90)
        assert len(recs) == n
        assert all(orjson.loads(v)["items"] for _, v in recs)
    finally:
        worker.stop(signal.SIGTERM, timeout=20)
    log = worker.log.read_text(errors="replace")
    assert PASSWORD not in log, "the password leaked into the worker's log"
    assert "authentication failed" not in log


@integration
def test_worker_with_wrong_password_exits_with_one_line(secure_kafka, export_dir,
                                                        unique_name, tmp_path, monkeypatch):
    topics = Topics.fresh(unique_name)
    config = config_for(secure_kafka, "sasl", "SCRAM-SHA-512", password=WRONG)
    security_env(monkeypatch, config)
    start = time.monotonic()
    worker = WorkerProcess(config.bootstrap_servers, topics, unique_name("app"), export_dir,
                           tmp_path / "w1", PARTITIONS)
    try:
        code = worker.proc.wait(timeout=30)
    finally:
        worker.stop(signal.SIGKILL, timeout=5)
    assert time.monotonic() - start < 30
    log = worker.log.read_text(errors="replace")
    lines = [line for line in log.splitlines() if line.strip()]
    assert code == 2, log
    assert len([x for x in lines if x.startswith("error:")]) == 1, log
    assert lines[-1].startswith("error: authentication failed for user 'alice' at "), log
    assert "SCRAM-SHA-512" in lines[-1]
    assert WRONG not in log and PASSWORD not in log


# ---------------------------------------------------------------- faust credentials


@pytest.mark.parametrize("protocol,mechanism", [("SASL_PLAINTEXT", "PLAIN"),
                                                ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
                                                ("SASL_SSL", "SCRAM-SHA-512"), ("SSL", None)])
def test_faust_credentials_map_to_aiokafka(protocol, mechanism):
    import ssl

    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    cli = {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": protocol}
    if mechanism:
        cli.update(sasl_mechanism=mechanism, sasl_username=USER, sasl_password=PASSWORD)
    config = StreamConfig.resolve(cli, env={})
    creds = config.faust_credentials()
    assert PASSWORD not in repr(creds)
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == protocol
    if mechanism:
        assert (auth["sasl_mechanism"], auth["sasl_plain_username"],
                auth["sasl_plain_password"]) == (mechanism, USER, PASSWORD)
    assert isinstance(auth["ssl_context"], ssl.SSLContext) == ("SSL" in protocol)


def test_plaintext_has_no_faust_credentials():
    assert StreamConfig.resolve({"bootstrap_servers": "h:1"}, env={}).faust_credentials() is None


@pytest.mark.parametrize("bad", ['a"b', "a,b", "a=b", "x]", " padded"])
def test_local_broker_rejects_credentials_it_cannot_quote(tmp_path, bad):
    from stream.tools import localkafka

    with pytest.raises(BrokerError, match="password of 'alice'"):
        localkafka.start(tmp_path, security="sasl", users={"alice": bad})


def test_unknown_security_mode(tmp_path):
    from stream.tools import localkafka

    with pytest.raises(BrokerError, match="unknown security mode"):
        localkafka.start(tmp_path, security="kerberos")


def test_cluster_id_never_starts_with_a_dash(tmp_path):
    """kafka-storage would read "-t -abc" as an option: 1 in 64 fresh dirs failed."""
    from stream.tools.localkafka.broker import _cluster_id

    (tmp_path / "cluster.id").write_text("-" + "A" * 21)  # never formatted: replaced
    assert not _cluster_id(tmp_path).startswith("-")
    assert _cluster_id(tmp_path) == _cluster_id(tmp_path)  # stable once made


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
