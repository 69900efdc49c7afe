"""Shared fixtures: a real local Kafka broker and fresh names per test."""

import os
import uuid

import pytest


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    """bootstrap.servers of a real Kafka broker, started once per session.

    Uses $KAFKA_BOOTSTRAP_SERVERS when set. Otherwise the broker's data lives
    in a session tmp dir, while the jars stay cached in the repo's .kafka/libs
    so Maven resolves them once per machine.
    """
    from stream.tools import localkafka

    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    broker = localkafka.start(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory):
    """A small random-weight model export over the MovieLens catalogue, exported as
    `hiertcn export` does (stream.tools.harness.make_export): read-only, shared by
    every test that runs a worker (the plumbing is under test, not accuracy)."""
    from stream.tools.harness import make_export

    return make_export(tmp_path_factory.mktemp("model"))


@pytest.fixture
def unique_name(request):
    """A fresh topic/group name per test, e.g. 'test-round-trip-1a2b3c4d'.

    Call it with a suffix for several names in one test: unique_name('in').
    """
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60].strip("-")
    token = uuid.uuid4().hex[:8]

    def make(suffix: str = "") -> str:
        return f"{base}-{token}" + (f"-{suffix}" if suffix else "")

    return make


SECURE_USERS = {"alice": "alice-Pw-7f3c9e", "bob": "bob-Pw-21d8aa"}


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory):
    """A real local broker that requires authentication, started once per session:
    listeners "sasl" (SASL_PLAINTEXT with PLAIN, SCRAM-SHA-256/512), and where openssl
    can make a self-signed CA also "sasl_ssl" and "ssl" (broker.cafile). Users:
    SECURE_USERS. Always local, even with $KAFKA_BOOTSTRAP_SERVERS set."""
    import shutil

    from stream.tools import localkafka

    modes = ("sasl", "sasl_ssl", "ssl") if shutil.which("openssl") else ("sasl",)
    broker = localkafka.start(tmp_path_factory.mktemp("kafka-secure"), security=modes,
                              users=SECURE_USERS)
    try:
        yield broker
    finally:
        broker.stop()
