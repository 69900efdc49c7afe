"""Talking to a cluster as its admin: topics, and a preflight check. Used by the
worker's `topics` command, the worker at start, and the tools.

    check_connection(config.confluent_settings(), timeout=10)   # or raises BrokerError
    ensure_topics(config)                                       # clicks, outputs, DLQ

The preflight fails fast on a broker that cannot be used: one metadata round trip
before a tool (or the Faust worker) starts, turning librdkafka's endless reconnect
loop into one clear line.

librdkafka reports a refused login only through the error callback (`_AUTHENTICATION`,
"SASL authentication error: ...") and keeps retrying; a failed TLS handshake is `_SSL`.
Both end the check at once. The message names the user, the broker, the mechanism
and the variables to look at, never the password.
"""

from __future__ import annotations

import logging
import time
from typing import Mapping

from stream.config import DLQ_MAX_BYTES, ENV, StreamConfig
from stream.errors import AuthenticationError, BrokerError, TLSError

log = logging.getLogger(__name__)

# The dead-letter topic keeps a bad event's original bytes whole, base64 in JSON (4/3
# of its size): a 1 MB payload, the broker's default limit on clicks, must fit there.
DLQ_TOPIC_CONFIG = {"max.message.bytes": str(DLQ_MAX_BYTES)}
# models and items: a key's latest record is its state, kept for ever (a tombstone
# retires an item); a worker that starts reads them whole (stream/worker/feeds.py)
CONTROL_TOPIC_CONFIG = {"cleanup.policy": "compact"}
# A tombstone is itself removed by compaction after delete.retention.ms (Kafka's
# default: 1 day); a worker started later would then read the item's last vector and
# serve a retired item again. 100 years, not Long.MAX: newer brokers add it to the
# cleaning time, which would overflow.
TOMBSTONE_RETENTION_MS = 100 * 365 * 24 * 3600 * 1000
ITEMS_TOPIC_CONFIG = {**CONTROL_TOPIC_CONFIG, "delete.retention.ms": str(TOMBSTONE_RETENTION_MS)}


class _Lines(logging.Handler):
    """Keeps librdkafka's log lines (the retry noise this module replaces) to read
    the cause from; nothing is printed."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < 200:
            self.lines.append(record.getMessage())

    def logger(self) -> logging.Logger:
        log = logging.Logger("stream.admin.librdkafka")  # unregistered: private
        log.addHandler(self)
        log.propagate = False
        return log


def _env(name: str) -> str:
    return ENV[name]


def _reason(text: str, marker: str) -> str:
    """The broker's reason out of a librdkafka error string, without the state noise."""
    reason = text.split(marker, 1)[1] if marker in text else text
    reason = reason.split(" (after ", 1)[0].strip(" :")
    return reason


def _scrub(text: str, settings: Mapping) -> str:
    for key in ("sasl.password", "ssl.key.password"):
        secret = settings.get(key)
        if secret:
            text = text.replace(str(secret), "***")
    return text


def classify(err, settings: Mapping) -> BrokerError | None:
    """A KafkaError that makes retrying pointless -> the error to raise; else None."""
    from confluent_kafka import KafkaError

    bootstrap = settings.get("bootstrap.servers", "?")
    protocol = str(settings.get("security.protocol", "PLAINTEXT")).upper()
    text = _scrub(err.str(), settings)
    code = err.code()
    if code == KafkaError._AUTHENTICATION or "SASL authentication error" in text:
        user = settings.get("sasl.username")
        mech = settings.get("sasl.mechanisms") or settings.get("sasl.mechanism") or "PLAIN"
        reason = _reason(text, "SASL authentication error:")
        return AuthenticationError(
            f"authentication failed for user {user!r} at {bootstrap} (SASL {mech}): {reason}; "
            f"check {_env('sasl_username')} / {_env('sasl_password')} "
            f"(and {_env('sasl_mechanism')})")
    if code == KafkaError._SSL or "SSL handshake failed" in text:
        reason = _reason(text, "SSL handshake failed:")
        return TLSError(f"TLS handshake with {bootstrap} failed ({protocol}): {reason}; "
                        f"check {_env('ssl_cafile')} (the CA that signed the broker "
                        f"certificate) and {_env('security_protocol')}")
    if "incorrect security.protocol" in text:
        return BrokerError(f"{bootstrap} does not speak {protocol}: {_reason(text, '/bootstrap:')}"
                           f"; check {_env('security_protocol')}")
    return None


def check_connection(settings: Mapping, timeout: float = 10.0) -> None:
    """Return once the broker answers a metadata request with these settings; raise
    BrokerError (AuthenticationError / TLSError for those causes) in one line otherwise.

    `settings`: a confluent-kafka client config with bootstrap.servers and security,
    e.g. StreamConfig.confluent_settings()."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    settings = dict(settings)
    bootstrap = settings.get("bootstrap.servers", "?")
    errors: list = []
    lines = _Lines()
    try:
        admin = AdminClient({**settings, "error_cb": errors.append, "logger": lines.logger(),
                             "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000))})
    except KafkaException as exc:  # a setting librdkafka rejects (an unreadable CA file ...)
        raise BrokerError(f"bad Kafka client settings for {bootstrap}: "
                          f"{_scrub(exc.args[0].str(), settings)}") from None
    deadline = time.monotonic() + timeout
    while True:
        last = None
        try:
            if admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic()))).brokers:
                return
        except KafkaException as exc:
            last = exc.args[0]
        admin.poll(0.1)  # serve error_cb: the only place the cause is reported
        for err in errors + ([last] if last is not None else []):
            fatal = classify(err, settings)
            if fatal is not None:
                raise fatal from None
        if time.monotonic() >= deadline:
            seen = errors[-1] if errors else last
            why = _scrub(seen.str(), settings) if seen is not None else "no answer"
            protocol = settings.get("security.protocol", "PLAINTEXT")
            if any("closed by peer" in line for line in lines.lines):
                # the port answers but drops every connection: another protocol listens
                why += (f"; the broker closes every connection: is its listener really "
                        f"{protocol}? check {_env('security_protocol')}")
            raise BrokerError(f"cannot reach Kafka at {bootstrap} ({protocol}) within "
                              f"{timeout:g}s: {why}")


# ---------------------------------------------------------------- topics


def _admin(bootstrap: str, settings: Mapping[str, str] | None = None):
    """`settings`: a client config with security (StreamConfig.confluent_settings())."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, **(settings or {})})


def _preflight(bootstrap: str, settings: Mapping[str, str] | None, timeout: float) -> None:
    """Wrong credentials / CA / protocol: one BrokerError line instead of librdkafka
    retrying until the admin request times out."""
    check_connection({"bootstrap.servers": bootstrap, **(settings or {})}, min(timeout, 15.0))


def create_topics(bootstrap: str, topics: Mapping[str, int],
                  config: Mapping[str, str] | None = None, timeout: float = 30.0,
                  settings: Mapping[str, str] | None = None, any_count: bool = False) -> None:
    """Create {name: partitions}; an existing topic is fine if its count matches (or
    whatever its count, with `any_count`: topics read whole, like the control topics).

    A mismatch raises: faust silently mis-routes keys when a topic has fewer
    partitions than the app expects, so it is better to fail here.
    Returns once every topic's partitions have leaders (ready to produce to).
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    _preflight(bootstrap, settings, timeout)
    admin = _admin(bootstrap, settings)
    new = [NewTopic(name, num_partitions=n, replication_factor=1, config=dict(config or {}))
           for name, n in topics.items()]
    for name, fut in admin.create_topics(new, request_timeout=timeout).items():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerError(f"cannot create topic {name}: {exc.args[0].str()}") from exc
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=timeout).topics
        known = {n: md[n].partitions for n in topics if n in md and not md[n].error}
        wrong = {n: len(p) for n, p in known.items() if len(p) != topics[n] and not any_count}
        pending = [n for n in topics
                   if n not in known or any(p.leader < 0 for p in known[n].values())]
        if wrong:
            raise BrokerError(f"topics exist with other partition counts: {wrong}, wanted {dict(topics)}")
        if not pending:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"topics not ready after {timeout:g}s: {sorted(pending)}")
        time.sleep(0.1)


def warn_short_tombstones(bootstrap: str, topic: str,
                          settings: Mapping[str, str] | None = None) -> int | None:
    """One warning when an existing items topic drops its tombstones sooner than
    ITEMS_TOPIC_CONFIG would (created beforehand with the broker's default); returns
    the topic's delete.retention.ms, or None when it cannot be read."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import ConfigResource

    resource = ConfigResource("topic", topic)
    try:
        admin = _admin(bootstrap, settings)  # held: a collected client fails the future
        described = admin.describe_configs([resource])[resource].result(30)
        kept = int(described["delete.retention.ms"].value)
    except (KafkaException, KeyError, ValueError, TypeError) as exc:
        log.warning("cannot read %s's delete.retention.ms (%s): check that retired items' "
                    "tombstones are kept", topic, exc)
        return None
    if kept < TOMBSTONE_RETENTION_MS:
        log.warning("topic %s keeps tombstones %.1f days (delete.retention.ms=%d): a worker "
                    "started later may serve an item retired before that again; set "
                    "delete.retention.ms=%d on it", topic, kept / 86_400_000, kept,
                    TOMBSTONE_RETENTION_MS)
    return kept


def delete_topics(bootstrap: str, names: list[str] | tuple[str, ...],
                  timeout: float = 30.0, settings: Mapping[str, str] | None = None) -> None:
    """Delete topics; ones that do not exist are fine."""
    from confluent_kafka import KafkaError, KafkaException

    if not names:
        return
    _preflight(bootstrap, settings, timeout)
    admin = _admin(bootstrap, settings)  # keep a reference: a collected client cancels its futures
    for name, fut in admin.delete_topics(list(names), request_timeout=timeout).items():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise BrokerError(f"cannot delete topic {name}: {exc.args[0].str()}") from exc


def ensure_topics(config: StreamConfig) -> None:
    """The app's topics with `config.partitions` each (idempotent); the DLQ sized for
    a whole original event."""
    names = (config.clicks_topic, config.recommendations_topic, config.embeddings_topic)
    settings = config.confluent_settings()
    create_topics(config.bootstrap_servers, {n: config.partitions for n in names},
                  settings=settings)
    create_topics(config.bootstrap_servers, {config.dlq_topic: config.partitions},
                  config=DLQ_TOPIC_CONFIG, settings=settings)
    # the control topics, compacted (the latest record per key is the state), one
    # partition each: every worker reads them whole (no parallelism to gain) and the
    # model announcements in one order; existing ones are taken with any count
    create_topics(config.bootstrap_servers, {config.models_topic: 1},
                  config=CONTROL_TOPIC_CONFIG, settings=settings, any_count=True)
    create_topics(config.bootstrap_servers, {config.items_topic: 1},
                  config=ITEMS_TOPIC_CONFIG, settings=settings, any_count=True)
    warn_short_tombstones(config.bootstrap_servers, config.items_topic, settings)
    log.info("topics ready: %s, %s x %d partitions; %s, %s (compacted)", ", ".join(names),
             config.dlq_topic, config.partitions, config.models_topic, config.items_topic)
