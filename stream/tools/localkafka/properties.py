"""The local broker's configuration files: server.properties (KRaft, one node, its
listeners and their security: SASL with JAAS, TLS keystore) and log4j.properties; the
SCRAM credentials written at storage format time."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from stream.errors import BrokerError
from stream.tools.localkafka.tls import make_certs

LOG_FILE = "server.log"  # log4j output of the broker
# security mode -> Kafka security protocol of its listener (and the listener's name)
SECURITY_MODES = {"plaintext": "PLAINTEXT", "sasl": "SASL_PLAINTEXT", "ssl": "SSL",
                  "sasl_ssl": "SASL_SSL"}
SASL_BROKER_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def check_credential(kind: str, value: str) -> None:
    # JAAS quotes values with "..."; --add-scram parses [name=..,password=..]
    if not value or any(c in value for c in '"\\,=[]\n\r') or value != value.strip():
        raise BrokerError(f"local broker: {kind} must be non-empty, without spaces around "
                          "it and without any of \" \\ , = [ ] or newlines")


def _jaas_plain(admin: tuple[str, str], users: Mapping[str, str]) -> str:
    user_entries = " ".join(f'user_{u}="{p}"' for u, p in {admin[0]: admin[1], **users}.items())
    return ("org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{admin[0]}" password="{admin[1]}" {user_entries};')

def _security_props(dir: Path, modes: tuple[str, ...], admin: tuple[str, str],
                    users: Mapping[str, str]) -> dict:
    props: dict = {}
    sasl = [m for m in modes if SECURITY_MODES[m].startswith("SASL_")]
    if sasl:
        props["sasl.enabled.mechanisms"] = ",".join(SASL_BROKER_MECHANISMS)
        props["sasl.mechanism.inter.broker.protocol"] = "PLAIN"
        for mode in sasl:
            name = SECURITY_MODES[mode].lower()
            props[f"listener.name.{name}.plain.sasl.jaas.config"] = _jaas_plain(admin, users)
            for mech in SASL_BROKER_MECHANISMS[1:]:
                props[f"listener.name.{name}.{mech.lower()}.sasl.jaas.config"] = \
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    if any(SECURITY_MODES[m].endswith("SSL") for m in modes):
        ca, p12 = make_certs(dir, admin[1])
        props.update({"ssl.keystore.type": "PKCS12", "ssl.keystore.location": p12,
                      "ssl.keystore.password": admin[1], "ssl.key.password": admin[1],
                      # the broker is its own client (inter-broker listener)
                      "ssl.truststore.type": "PEM", "ssl.truststore.location": ca,
                      "ssl.client.auth": "none"})
    return props


def write_config(dir: Path, port: int, controller_port: int,
                  listeners: Mapping[str, int] | None = None,
                  admin: tuple[str, str] | None = None,
                  users: Mapping[str, str] | None = None) -> Path:
    """`listeners`: security mode -> port (default: one PLAINTEXT listener on `port`)."""
    listeners = dict(listeners or {"plaintext": port})
    names = {mode: SECURITY_MODES[mode] for mode in listeners}  # listener name = protocol
    client = ",".join(f"{names[m]}://127.0.0.1:{p}" for m, p in listeners.items())
    protocol_map = ",".join(f"{n}:{n}" for n in names.values())
    props = {
        "node.id": 1,
        "process.roles": "broker,controller",
        "listeners": f"{client},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": client,
        "listener.security.protocol.map": f"{protocol_map},CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": next(iter(names.values())),
        # Static voter set: the ports may change between restarts of one dir.
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "log.dirs": str(dir / "data"),
        # One node: internal topics cannot have more replicas than brokers.
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 1,  # 50 by default: slow first group join
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 1,
        "min.insync.replicas": 1,
        # Consumers (faust) join their group at once instead of waiting 3 s.
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "true",
        "num.partitions": 1,
        "default.replication.factor": 1,
    }
    if set(listeners) != {"plaintext"}:
        props.update(_security_props(dir, tuple(listeners), admin, users or {}))
    path = dir / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    path.chmod(0o600)  # holds the users' passwords when security is on
    (dir / "log4j.properties").write_text(
        "log4j.rootLogger=INFO, file\n"
        "log4j.appender.file=org.apache.log4j.FileAppender\n"
        f"log4j.appender.file.File={dir / LOG_FILE}\n"
        "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        # The per-request and state-change chatter drowns out what matters.
        "log4j.logger.kafka.request.logger=WARN\n"
        "log4j.logger.state.change.logger=WARN\n"
        "log4j.logger.org.apache.kafka.raft=WARN\n"
    )
    return path


def format_args(modes: tuple[str, ...], admin: tuple[str, str],
                users: Mapping[str, str]) -> list[str]:
    """SCRAM credentials for every user, written into the metadata log at format time."""
    if not any(SECURITY_MODES[m].startswith("SASL_") for m in modes):
        return []
    out = []
    for name, password in {admin[0]: admin[1], **users}.items():
        for mech in SASL_BROKER_MECHANISMS[1:]:
            out += ["--add-scram", f"{mech}=[name={name},password={password}]"]
    return out
