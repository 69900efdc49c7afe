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


class BadState(StreamError):
    """A stored user state (a `user_state` row) cannot be used: the worker dead-letters
    the event that met it and starts that user afresh. `reason` is one of a small fixed
    set, "bad_state:<cause>" (format, truncated, meta, shape), so the DLQ metric's label
    stays bounded; the message adds the detail for the log."""

    def __init__(self, cause: str, detail: str = ""):
        self.reason = f"bad_state:{cause}"
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)


class DeliveryFailed(StreamError):
    """An output could not be delivered: the worker stops without committing the
    events of its batch (they are processed again after the restart)."""


class AuthenticationError(BrokerError):
    """The broker refused the SASL login (wrong user, password or mechanism)."""


class TLSError(BrokerError):
    """The TLS handshake with the broker failed (untrusted certificate, wrong protocol)."""
