"""StreamConfig: CLI > environment > default, one-line errors naming option and env
variable, secrets kept out of repr and logs, one security setup for confluent clients."""

import dataclasses
from pathlib import Path

import pytest

from stream.config import ENV, SECRET_FILE_ENV, StreamConfig
from stream.errors import ConfigError, StreamError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """The developer's shell must not leak into these tests."""
    for var in [*ENV.values(), *SECRET_FILE_ENV.values()]:
        monkeypatch.delenv(var, raising=False)


def test_defaults():
    config = StreamConfig.resolve({})
    assert config.bootstrap_servers is None
    assert (config.app_id, config.clicks_topic, config.dlq_topic) == \
        ("hiertcn-worker", "clicks", "clicks-dlq")
    assert (config.partitions, config.top_k, config.max_event_bytes) == (4, 20, 65536)
    assert config.export_dir == Path("artifacts/export")


def test_precedence_cli_over_env_over_default(monkeypatch):
    monkeypatch.setenv("HIERTCN_TOP_K", "7")
    monkeypatch.setenv("HIERTCN_PARTITIONS", "8")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "envhost:9092")
    config = StreamConfig.resolve({"top_k": "5", "partitions": None})  # None: not given
    assert config.top_k == 5  # CLI
    assert config.partitions == 8  # env, converted to int
    assert config.bootstrap_servers == "envhost:9092"
    assert config.session_gap_s is None  # default: the export's training value


def test_types_are_converted_from_env(monkeypatch):
    monkeypatch.setenv("HIERTCN_EXCLUDE_CLICKED", "no")
    monkeypatch.setenv("HIERTCN_BATCH_WITHIN_S", "0.2")
    monkeypatch.setenv("HIERTCN_DATADIR", "/tmp/x")
    monkeypatch.setenv("HIERTCN_SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("HIERTCN_SASL_USERNAME", "svc")
    monkeypatch.setenv("HIERTCN_SASL_PASSWORD", "pw")
    config = StreamConfig.resolve()
    assert config.exclude_clicked is False and config.batch_within_s == 0.2
    assert config.datadir == Path("/tmp/x") and config.security_protocol == "SASL_SSL"


def test_session_policy_defaults_to_the_export_and_web_debug_pages_off(monkeypatch):
    config = StreamConfig.resolve({})
    assert (config.session_gap_s, config.max_session_len) == (None, None)  # from meta.json
    assert config.web_debug_pages is False  # Faust's /table/ pages would serve user state
    monkeypatch.setenv("HIERTCN_WEB_DEBUG_PAGES", "yes")
    monkeypatch.setenv("HIERTCN_MAX_SESSION_LEN", "50")
    config = StreamConfig.resolve({"session_gap_s": "600"})
    assert config.web_debug_pages is True
    assert (config.session_gap_s, config.max_session_len) == (600.0, 50)
    with pytest.raises(ConfigError, match="HIERTCN_WEB_DEBUG_PAGES"):
        StreamConfig.resolve({"web_debug_pages": "sometimes"})


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        StreamConfig().top_k = 3


@pytest.mark.parametrize("name,value", [("top_k", "abc"), ("top_k", "0"), ("partitions", 2.5),
                                        ("web_port", "70000"), ("exclude_clicked", "maybe"),
                                        ("security_protocol", "TLS"), ("sasl_mechanism", "MD5"),
                                        ("bootstrap_servers", "nohostport"),
                                        ("ssl_cafile", "/no/such/ca.pem"), ("app_id", " ")])
def test_bad_value_names_option_and_env_variable_in_one_line(name, value):
    with pytest.raises(ConfigError) as info:
        StreamConfig.resolve({name: value})
    message = str(info.value)
    assert name in message and ENV[name] in message and "\n" not in message


def test_bad_env_value_says_it_came_from_the_variable(monkeypatch):
    monkeypatch.setenv("HIERTCN_BATCH_SIZE", "lots")
    with pytest.raises(StreamError, match=r"batch_size \(env HIERTCN_BATCH_SIZE\).*\$HIERTCN_BATCH_SIZE"):
        StreamConfig.resolve()


def test_unknown_key_is_rejected():
    with pytest.raises(ConfigError, match="topk"):
        StreamConfig.resolve({"topk": 5})


def test_sasl_needs_username_and_password():
    with pytest.raises(ConfigError, match="HIERTCN_SASL_USERNAME"):
        StreamConfig.resolve({"security_protocol": "SASL_PLAINTEXT"})
    with pytest.raises(ConfigError, match="HIERTCN_SASL_PASSWORD"):
        StreamConfig.resolve({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"})


def test_password_never_in_repr_redacted_or_errors(monkeypatch):
    monkeypatch.setenv("HIERTCN_SASL_PASSWORD", "hunter2-secret")
    config = StreamConfig.resolve({"security_protocol": "SASL_SSL", "sasl_username": "svc"})
    assert config.sasl_password == "hunter2-secret"
    assert "hunter2" not in repr(config) and "hunter2" not in str(config)
    assert config.redacted()["sasl_password"] == "***"
    assert "hunter2" not in str(config.redacted())
    assert StreamConfig().redacted()["sasl_password"] is None


def test_password_from_file_env_and_cli_value_wins(monkeypatch, tmp_path):
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    monkeypatch.setenv("HIERTCN_SASL_PASSWORD_FILE", str(secret))
    assert StreamConfig.resolve().sasl_password == "from-file"  # trailing newline dropped
    assert StreamConfig.resolve({"sasl_password": "cli"}).sasl_password == "cli"
    monkeypatch.setenv("HIERTCN_SASL_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="HIERTCN_SASL_PASSWORD_FILE"):
        StreamConfig.resolve()


def test_confluent_settings_apply_security(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = StreamConfig.resolve({
        "bootstrap_servers": "b1:9093, b2:9093", "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "svc", "sasl_password": "pw",
        "ssl_cafile": str(ca)})
    assert config.confluent_settings() == {
        "bootstrap.servers": "b1:9093,b2:9093", "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "svc", "sasl.password": "pw",
        "ssl.ca.location": str(ca)}
    assert config.faust_broker() == "kafka://b1:9093;kafka://b2:9093"


def test_plaintext_settings_and_missing_bootstrap():
    assert StreamConfig(bootstrap_servers="h:1").confluent_settings() == {
        "bootstrap.servers": "h:1", "security.protocol": "PLAINTEXT"}
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        StreamConfig().confluent_settings()
    assert StreamConfig().with_bootstrap("127.0.0.1:9092").bootstrap_servers == "127.0.0.1:9092"


def test_faust_credentials():
    import faust

    assert StreamConfig().faust_credentials() is None
    creds = StreamConfig.resolve({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u",
                                  "sasl_password": "p", "sasl_mechanism": "SCRAM-SHA-256"}
                                 ).faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("u", "p", "SCRAM-SHA-256")
    assert creds.protocol.value == "SASL_PLAINTEXT"
    ssl_creds = StreamConfig(security_protocol="SSL").faust_credentials()
    assert isinstance(ssl_creds, faust.SSLCredentials)


def test_embeddings_option_default_env_cli_and_one_line_error(monkeypatch):
    assert StreamConfig.resolve({}).embeddings == "event"  # as before: one per event
    monkeypatch.setenv("HIERTCN_EMBEDDINGS", "Session_End")
    assert StreamConfig.resolve({}).embeddings == "session_end"
    assert StreamConfig.resolve({"embeddings": "off"}).embeddings == "off"
    with pytest.raises(ConfigError) as err:
        StreamConfig.resolve({"embeddings": "sometimes"})
    message = str(err.value)
    assert "\n" not in message
    assert "embeddings" in message and "HIERTCN_EMBEDDINGS" in message
    assert "event, session_end, off" in message and "'sometimes'" in message


def test_output_producer_has_the_config_security_and_idempotence():
    from stream.worker.publisher import producer_settings

    config = StreamConfig(bootstrap_servers="k:9093", security_protocol="SASL_SSL",
                          sasl_username="svc", sasl_password="pw")
    settings = producer_settings(config)
    assert settings["bootstrap.servers"] == "k:9093"
    assert settings["security.protocol"] == "SASL_SSL" and settings["sasl.password"] == "pw"
    assert settings["enable.idempotence"] is True  # acks=all, no duplicates on retries
    assert settings["partitioner"] == "murmur2_random"  # as Faust's: same output partitions
