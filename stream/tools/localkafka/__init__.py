"""A real single-node Apache Kafka on loopback for tests and the demo: see broker.py.

    python -m stream.tools.localkafka start [--dir .kafka] [--port N]   # prints bootstrap
"""

from stream.tools.localkafka.broker import (DEFAULT_DIR, KAFKA_VERSION, SECURITY_MODES, Broker,
                                            running, start, status, stop)

__all__ = ["Broker", "DEFAULT_DIR", "KAFKA_VERSION", "SECURITY_MODES", "running", "start",
           "status", "stop"]
