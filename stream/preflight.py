"""Fail fast on a broker that cannot be used: one metadata round trip before a tool
(or the Faust worker) starts, turning librdkafka's endless reconnect loop into one
clear line.

    check_connection(config.confluent_settings(), timeout=10)   # or raises BrokerError

librdkafka reports a refused login only through the error callback (`_AUTHENTICATION`,
"SASL authentication error: ...") and keeps retrying; a failed TLS handshake is `_SSL`.
Both end the check at once. The message names the user, the broker, the mechanism
and the variables to look at, never the password.
"""

from __future__ import annotations

import logging
import time
from typing import Mapping

from stream.errors import AuthenticationError, BrokerError, TLSError



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
        log = logging.Logger("stream.preflight.librdkafka")  # unregistered: private
        log.addHandler(self)
        log.propagate = False
        return log


def _env(name: str) -> str:
    from stream.config import ENV
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
