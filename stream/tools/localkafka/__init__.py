"""A real single-node Apache Kafka on loopback for tests and the demo.

    python -m stream.tools.localkafka start [--dir .kafka] [--port N]   # prints bootstrap

broker.py: the lifecycle (start, stop, status, running); jars.py: Kafka's jars from
Maven Central or $KAFKA_HOME; properties.py: server.properties, listeners, SASL and
SCRAM; tls.py: the self-signed CA and broker certificate; __main__.py: the CLI.
"""

from stream.tools.localkafka.broker import DEFAULT_DIR, Broker, running, start, status, stop
from stream.tools.localkafka.jars import KAFKA_VERSION
from stream.tools.localkafka.properties import SECURITY_MODES

__all__ = ["Broker", "DEFAULT_DIR", "KAFKA_VERSION", "SECURITY_MODES", "running", "start",
           "status", "stop"]
