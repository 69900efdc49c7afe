"""A real single-node Apache Kafka (KRaft, broker+controller) on loopback.

Tests and the demo need a broker that behaves like production, so this runs
Apache Kafka's own jars (resolved from Maven Central via deploy/kafka/pom.xml,
or taken from an unpacked release in $KAFKA_HOME) rather than an imitation.

    python -m stream.tools.localkafka start [--dir .kafka] [--port N]   # prints bootstrap
    python -m stream.tools.localkafka status|stop [--dir .kafka]

    with running(dir) as broker:          # or: broker = start(dir); broker.stop()
        create_topics(broker.bootstrap, {"events": 2})

If $KAFKA_BOOTSTRAP_SERVERS is set nothing is started: that broker is used.

Authentication required (tests of the security settings):

    broker = start(dir, security="sasl", users={"alice": "secret"})
    # "sasl": SASL_PLAINTEXT with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 enabled;
    # "ssl": TLS (server cert signed by a CA made in `dir`, see broker.cafile);
    # "sasl_ssl": both. A tuple, ("sasl", "ssl"), opens one listener per mode:
    broker.bootstrap_for("ssl"), broker.cafile, broker.settings("alice", "secret")

Every user gets PLAIN and SCRAM credentials (SCRAM ones are written at format time,
so users added to an already formatted dir have PLAIN only). The broker talks to
itself as an admin user with a random password kept in the dir; the controller
listener stays PLAINTEXT on loopback. A secured broker is always started locally,
even with $KAFKA_BOOTSTRAP_SERVERS set.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from stream.errors import BrokerError

KAFKA_VERSION = "3.9.1"
REPO_ROOT = Path(__file__).resolve().parents[3]
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
DEFAULT_DIR = REPO_ROOT / ".kafka"
# Shared by every broker dir so the jars are resolved once per checkout.
DEFAULT_LIBS = DEFAULT_DIR / "libs"
STATE_FILE = "broker.json"
LOG_FILE = "server.log"  # log4j output of the broker
OUT_FILE = "kafka.out"  # the JVM's own stdout/stderr (crashes before log4j is up)
JVM_HEAP = "-Xms128m -Xmx512m"

# security mode -> Kafka security protocol of its listener (and the listener's name)
SECURITY_MODES = {"plaintext": "PLAINTEXT", "sasl": "SASL_PLAINTEXT", "ssl": "SSL",
                  "sasl_ssl": "SASL_SSL"}
SASL_BROKER_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ADMIN_USER = "admin"  # the broker's own inter-broker identity on SASL listeners
TLS_DIR = "tls"  # under the broker dir: ca.pem, broker.p12 (made by make_certs)


@dataclass
class Broker:
    """A broker we started (pid set) or one we were pointed at (pid None)."""

    bootstrap: str
    pid: int | None = None
    dir: Path | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)
    # security mode ("plaintext", "sasl", "ssl", "sasl_ssl") -> its bootstrap; the first
    # one is `bootstrap`. Empty for an external broker (assumed plaintext).
    listeners: dict[str, str] = field(default_factory=dict)
    cafile: Path | None = None  # the CA that signed the broker certificate (TLS modes)
    admin: tuple[str, str] | None = field(default=None, repr=False)  # (user, password)

    @property
    def log(self) -> Path | None:
        return self.dir / LOG_FILE if self.dir else None

    @property
    def security(self) -> str:
        """The first listener's security mode."""
        return next(iter(self.listeners), "plaintext")

    def bootstrap_for(self, mode: str) -> str:
        if mode not in self.listeners:
            raise BrokerError(f"this broker has no {mode} listener (it has: "
                              f"{', '.join(self.listeners) or 'plaintext'})")
        return self.listeners[mode]

    def settings(self, username: str | None = None, password: str | None = None,
                 mechanism: str = "PLAIN", mode: str | None = None) -> dict:
        """A confluent-kafka client config for the listener of `mode` (default: the
        first); SASL listeners use the admin identity unless a user is given."""
        mode = mode or self.security
        protocol = SECURITY_MODES[mode]
        out = {"bootstrap.servers": self.bootstrap_for(mode) if self.listeners
               else self.bootstrap, "security.protocol": protocol}
        if protocol.startswith("SASL_"):
            if username is None and self.admin:
                username, password = self.admin
            out.update({"sasl.mechanisms": mechanism, "sasl.username": username,
                        "sasl.password": password})
        if protocol in ("SSL", "SASL_SSL") and self.cafile:
            out["ssl.ca.location"] = str(self.cafile)
        return out

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; no-op for an external broker."""
        if self.pid is None:
            return
        _terminate(self.pid, self._proc, timeout)
        if self.dir:
            (self.dir / STATE_FILE).unlink(missing_ok=True)
        self.pid = None

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- jars


def resolve_jars(libs: Path | None = None) -> Path:
    """Return a directory of Kafka's runtime jars, fetching them on first use."""
    home = os.environ.get("KAFKA_HOME")
    if home:
        path = Path(home) / "libs"
        if not any(path.glob("kafka_2.*.jar")):
            raise BrokerError(f"KAFKA_HOME={home} has no libs/kafka_2.*.jar")
        return path
    libs = Path(libs or DEFAULT_LIBS)
    marker = libs / ".complete"
    if marker.exists() and marker.read_text().strip() == KAFKA_VERSION:
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError(
            "mvn not found: install Maven (jars come from Maven Central) "
            "or set KAFKA_HOME to an unpacked Kafka release"
        )
    # Copy into a sibling temp dir and rename, so an interrupted download or two
    # test sessions racing never leave a half-filled libs/ that looks complete.
    libs.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".libs-", dir=libs.parent))
    try:
        cmd = ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
               f"-DoutputDirectory={tmp}", f"-Dkafka.version={KAFKA_VERSION}"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            tail = (res.stdout + res.stderr).strip().splitlines()[-5:]
            raise BrokerError(f"mvn could not resolve Kafka jars: {' | '.join(tail)}")
        (tmp / ".complete").write_text(KAFKA_VERSION)
        shutil.rmtree(libs, ignore_errors=True)
        try:
            tmp.rename(libs)
        except OSError:  # another process won the race; its copy is as good
            if not marker.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return libs


# ---------------------------------------------------------------- config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_id(dir: Path) -> str:
    """Kafka's cluster id: 16 random bytes, url-safe base64, unpadded.

    Kept in the dir so a restart finds storage formatted with the same id.
    """
    path = dir / "cluster.id"
    while not path.exists() or path.read_text().startswith("-"):
        # as Kafka's Uuid.randomUuid(): never a leading "-" (kafka-storage would take
        # it for an option)
        path.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    return path.read_text().strip()


def _check_credential(kind: str, value: str) -> None:
    # JAAS quotes values with "..."; --add-scram parses [name=..,password=..]
    if not value or any(c in value for c in '"\\,=[]\n\r') or value != value.strip():
        raise BrokerError(f"local broker: {kind} must be non-empty, without spaces around "
                          "it and without any of \" \\ , = [ ] or newlines")


def _jaas_plain(admin: tuple[str, str], users: Mapping[str, str]) -> str:
    user_entries = " ".join(f'user_{u}="{p}"' for u, p in {admin[0]: admin[1], **users}.items())
    return ("org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{admin[0]}" password="{admin[1]}" {user_entries};')


def _openssl(*args: str, cwd: Path) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stdout + res.stderr).strip().splitlines()[-3:]
        raise BrokerError(f"openssl {args[0]} failed: {' | '.join(tail)}")


def make_certs(dir: Path | str, password: str) -> tuple[Path, Path]:
    """A self-signed CA and a broker certificate for 127.0.0.1 / localhost signed by
    it, with the openssl CLI: (ca.pem, broker.p12 keystore locked with `password`).
    Kept in dir/tls: a restart of the same dir reuses them."""
    tls = Path(dir) / TLS_DIR
    ca, p12 = tls / "ca.pem", tls / "broker.p12"
    if ca.exists() and p12.exists():
        return ca, p12
    if shutil.which("openssl") is None:
        raise BrokerError("openssl not found: needed to make the local broker's TLS certificate")
    tls.mkdir(parents=True, exist_ok=True)
    (tls / "ca.ext").write_text(
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier=hash\n")
    (tls / "broker.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.csr", "-subj", "/CN=hiertcn local test CA", cwd=tls)
    _openssl("x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-days", "30",
             "-extfile", "ca.ext", "-out", "ca.tmp", cwd=tls)
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out",
             "broker.csr", "-subj", "/CN=localhost", cwd=tls)
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.tmp", "-CAkey", "ca.key",
             "-set_serial", str(int.from_bytes(secrets.token_bytes(8), "big")), "-days", "30",
             "-extfile", "broker.ext", "-out", "broker.pem", cwd=tls)
    _openssl("pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile",
             "ca.tmp", "-name", "broker", "-out", "broker.tmp", "-passout", f"pass:{password}",
             cwd=tls)
    (tls / "broker.tmp").rename(p12)
    (tls / "ca.tmp").rename(ca)  # last: its presence means the set is complete
    return ca, p12


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


def _write_config(dir: Path, port: int, controller_port: int,
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


# ---------------------------------------------------------------- lifecycle


def _alive(pid: int, proc: subprocess.Popen | None = None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead


def _is_our_broker(pid: int, dir: Path) -> bool:
    """Guard against pid reuse: only signal a kafka.Kafka run from `dir`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    return b"kafka.Kafka" in cmdline and str(dir / "server.properties").encode() in cmdline


def _terminate(pid: int, proc: subprocess.Popen | None, timeout: float) -> None:
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid, proc):
            time.sleep(0.1)
        if not _alive(pid, proc):
            break
    if proc is not None:
        proc.wait(timeout=5)  # reap, so no zombie outlives the test session
    if _alive(pid, proc):
        raise BrokerError(f"kafka pid {pid} survived SIGKILL")


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def wait_ready(bootstrap: str, timeout: float = 60.0, proc: subprocess.Popen | None = None,
               log: Path | None = None, settings: Mapping[str, str] | None = None) -> None:
    """Block until the broker answers a metadata request with itself in it.

    `settings`: client security settings (a secured broker's `Broker.settings()`)."""
    from confluent_kafka.admin import AdminClient

    where = f"; see {log}" if log else ""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    deadline = time.monotonic() + timeout
    # Wait for the socket first: librdkafka prints every refused connection.
    while True:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"kafka exited with code {proc.returncode} during startup{where}")
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 1):
            break
        if time.monotonic() > deadline:
            raise BrokerError(f"kafka at {bootstrap} did not open its port in {timeout:g}s{where}")
        time.sleep(0.2)
    # librdkafka's own log is silenced: a broker still starting refuses SASL/TLS loudly
    admin = AdminClient({"bootstrap.servers": bootstrap, **(settings or {}), "log_level": 0})
    while True:
        try:
            if admin.list_topics(timeout=2).brokers:
                return
        except Exception:  # KafkaException while the broker is still coming up
            pass
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"kafka exited with code {proc.returncode} during startup{where}")
        if time.monotonic() > deadline:
            raise BrokerError(f"kafka at {bootstrap} did not answer in {timeout:g}s{where}")
        time.sleep(0.2)


def status(dir: Path | str = DEFAULT_DIR) -> Broker | None:
    """The broker recorded in `dir`, if its process still runs."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return Broker(os.environ["KAFKA_BOOTSTRAP_SERVERS"])
    return _local_status(Path(dir).resolve())


def _local_status(dir: Path) -> Broker | None:
    try:
        state = json.loads((dir / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not (_alive(state["pid"]) and _is_our_broker(state["pid"], dir)):
        return None
    admin = state.get("admin")
    return Broker(state["bootstrap"], state["pid"], dir,
                  listeners=state.get("listeners") or {"plaintext": state["bootstrap"]},
                  cafile=Path(state["cafile"]) if state.get("cafile") else None,
                  admin=tuple(admin) if admin else None)


def _modes(security: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    modes = (security,) if isinstance(security, str) else tuple(security)
    modes = tuple(dict.fromkeys(m.strip().lower() for m in modes))
    bad = [m for m in modes if m not in SECURITY_MODES]
    if bad or not modes:
        raise BrokerError(f"unknown security mode(s) {bad or modes}: expected "
                          f"{', '.join(SECURITY_MODES)}")
    return modes


def _admin_identity(dir: Path) -> tuple[str, str]:
    """The broker's own SASL identity (and keystore password), made once per dir."""
    path = dir / "admin.secret"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(18))
    return ADMIN_USER, path.read_text().strip()


def _format_args(modes: tuple[str, ...], admin: tuple[str, str],
                 users: Mapping[str, str]) -> list[str]:
    """SCRAM credentials for every user, written into the metadata log at format time."""
    if not any(SECURITY_MODES[m].startswith("SASL_") for m in modes):
        return []
    out = []
    for name, password in {admin[0]: admin[1], **users}.items():
        for mech in SASL_BROKER_MECHANISMS[1:]:
            out += ["--add-scram", f"{mech}=[name={name},password={password}]"]
    return out


def start(dir: Path | str = DEFAULT_DIR, port: int | None = None, *, timeout: float = 90.0,
          libs: Path | None = None, security: str | tuple[str, ...] = "plaintext",
          users: Mapping[str, str] | None = None) -> Broker:
    """Start a broker in `dir` (or reuse the one running there) and wait for it.

    `security`: "plaintext" (default), "sasl", "ssl", "sasl_ssl", or a tuple of them
    (one listener each, `port` for the first); `users`: {name: password} accepted by
    the SASL listeners with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512."""
    modes = _modes(security)
    users = dict(users or {})
    for name, password in users.items():
        _check_credential("a user name", name)
        _check_credential(f"the password of {name!r}", password)
    secured = modes != ("plaintext",)
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and not secured:
        broker = Broker(os.environ["KAFKA_BOOTSTRAP_SERVERS"])
        wait_ready(broker.bootstrap, timeout=min(timeout, 30.0))
        return broker
    dir = Path(dir).resolve()
    running_already = _local_status(dir)
    if running_already and tuple(running_already.listeners) != modes:
        raise BrokerError(f"a broker already runs in {dir} with security "
                          f"{', '.join(running_already.listeners)}, not {', '.join(modes)}")
    if running_already and (port is None or running_already.bootstrap.endswith(f":{port}")):
        return running_already
    if running_already:
        raise BrokerError(f"a broker already runs in {dir} at {running_already.bootstrap}")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java not found: Kafka 3.9 needs a JRE (11+, 17 recommended)")
    jars = resolve_jars(libs)
    dir.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    ports = {mode: port if i == 0 else _free_port() for i, mode in enumerate(modes)}
    admin = _admin_identity(dir) if secured else None
    config = _write_config(dir, port, _free_port(), ports, admin, users)
    classpath = f"{jars}/*"
    jvm = [java, *os.environ.get("KAFKA_HEAP_OPTS", JVM_HEAP).split(),
           "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{dir / 'log4j.properties'}",
           f"-Dkafka.logs.dir={dir}", "-cp", classpath]

    # --ignore-formatted: a restart in the same dir keeps its topics.
    fmt = subprocess.run(
        [*jvm, "kafka.tools.StorageTool", "format", "--ignore-formatted",
         f"--cluster-id={_cluster_id(dir)}", "-c", str(config), *_format_args(modes, admin, users)],
        capture_output=True, text=True)
    if fmt.returncode != 0:
        msg = (fmt.stdout + fmt.stderr).strip().splitlines()
        raise BrokerError(f"kafka storage format failed: {msg[-1] if msg else fmt.returncode}")

    with open(dir / OUT_FILE, "ab") as out:
        # New session: Ctrl-C in the shell that ran `start` must not kill it.
        proc = subprocess.Popen([*jvm, "kafka.Kafka", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    listeners = {mode: f"127.0.0.1:{p}" for mode, p in ports.items()}
    cafile = dir / TLS_DIR / "ca.pem"
    broker = Broker(f"127.0.0.1:{port}", proc.pid, dir, proc, listeners=listeners,
                    cafile=cafile if cafile.exists() and secured else None, admin=admin)
    try:
        wait_ready(broker.bootstrap, timeout, proc, dir / LOG_FILE, settings=broker.settings())
    except BaseException:
        broker.stop(timeout=10)
        raise
    state = {"pid": proc.pid, "bootstrap": broker.bootstrap, "started": time.time(),
             "listeners": listeners}
    if secured:
        state.update(cafile=str(broker.cafile) if broker.cafile else None, admin=list(admin))
    state_file = dir / STATE_FILE
    state_file.touch(mode=0o600)
    state_file.write_text(json.dumps(state))
    return broker


def stop(dir: Path | str = DEFAULT_DIR, timeout: float = 30.0) -> bool:
    """Stop the broker recorded in `dir`; False if none was running."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return False  # not ours to stop
    dir = Path(dir).resolve()
    broker = status(dir)
    (dir / STATE_FILE).unlink(missing_ok=True)
    if broker is None:
        return False
    broker.stop(timeout)
    return True


@contextlib.contextmanager
def running(dir: Path | str = DEFAULT_DIR, port: int | None = None, **kw) -> Iterator[Broker]:
    """Start (or reuse) a broker for the block; stop it after if we started it."""
    already = status(dir) if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else None
    broker = start(dir, port, **kw)
    try:
        yield broker
    finally:
        if already is None:
            broker.stop()


# ---------------------------------------------------------------- CLI


def _env_users() -> dict[str, str]:
    """The one SASL user of `start --security ...`: the clients' own variables."""
    from stream.config import ENV, SECRET_FILE_ENV

    name = os.environ.get(ENV["sasl_username"])
    password = os.environ.get(ENV["sasl_password"])
    if not password and os.environ.get(SECRET_FILE_ENV["sasl_password"]):
        try:
            password = Path(os.environ[SECRET_FILE_ENV["sasl_password"]]).read_text().rstrip("\r\n")
        except OSError as exc:
            raise BrokerError(f"cannot read ${SECRET_FILE_ENV['sasl_password']}: {exc.strerror}")
    return {name: password} if name and password else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m stream.tools.localkafka",
        description=f"Run a real single-node Apache Kafka {KAFKA_VERSION} (KRaft) on 127.0.0.1. "
        "Jars come from Maven Central (deploy/kafka/pom.xml) or $KAFKA_HOME/libs; "
        "with $KAFKA_BOOTSTRAP_SERVERS set nothing is started.")
    ap.add_argument("command", choices=["start", "stop", "status"])
    ap.add_argument("--dir", default=str(DEFAULT_DIR),
                    help="broker state, config, data and logs (default: %(default)s)")
    ap.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    ap.add_argument("--timeout", type=float, default=90.0, help="startup wait, seconds")
    ap.add_argument("--security", default="plaintext",
                    help="plaintext (default), sasl, ssl, sasl_ssl, or a comma list (one "
                    "listener each); the SASL user is $HIERTCN_SASL_USERNAME with "
                    "$HIERTCN_SASL_PASSWORD (or the file in $HIERTCN_SASL_PASSWORD_FILE)")
    args = ap.parse_args(argv)
    try:
        if args.command == "start":
            broker = start(args.dir, args.port, timeout=args.timeout,
                           security=tuple(args.security.split(",")), users=_env_users())
            print(broker.bootstrap)  # alone on stdout: BOOT=$(... start)
            if broker.pid:
                print(f"kafka pid {broker.pid}, log {broker.log}", file=sys.stderr)
            for mode, where in broker.listeners.items():
                if mode != "plaintext":
                    print(f"{SECURITY_MODES[mode]} listener at {where}", file=sys.stderr)
            if broker.cafile:
                print(f"CA certificate: {broker.cafile} (HIERTCN_SSL_CAFILE)", file=sys.stderr)
        elif args.command == "stop":
            if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
                print("KAFKA_BOOTSTRAP_SERVERS is set: that broker is not ours to stop")
            else:
                print("stopped" if stop(args.dir) else "not running")
        else:
            broker = status(args.dir)
            print(f"running at {broker.bootstrap} (pid {broker.pid})" if broker else "not running")
            return 0 if broker else 1
    except (BrokerError, KeyboardInterrupt) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
