"""Errors raised by the streaming side (broker, topics, workers)."""


class StreamError(Exception):
    """Base class: anything the stream package raises on purpose."""


class BrokerError(StreamError):
    """The Kafka broker could not be started, reached, stopped or administered."""


class ConfigError(StreamError):
    """A stream setting has a bad value; the message names the option and its env variable."""


class BadEvent(StreamError):
    """An input event cannot be used; `reason` is short and machine-friendly
    ("not_json", "missing_field:user_id", ...) so the DLQ can be grouped by it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AuthenticationError(BrokerError):
    """The broker refused the SASL login (wrong user, password or mechanism)."""


class TLSError(BrokerError):
    """The TLS handshake with the broker failed (untrusted certificate, wrong protocol)."""
