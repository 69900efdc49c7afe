"""Errors raised by the streaming side (broker, topics, workers)."""


class StreamError(Exception):
    """Base class: anything the stream package raises on purpose."""


class BrokerError(StreamError):
    """The Kafka broker could not be started, reached, stopped or administered."""
