"""A real single-node Apache Kafka (KRaft, broker+controller) on loopback: its
lifecycle (format, start, wait until it answers, status, stop).

Tests and the demo need a broker that behaves like production, so this runs
Apache Kafka's own jars (jars.py: Maven Central via deploy/kafka/pom.xml, or an
unpacked release in $KAFKA_HOME) rather than an imitation. Its configuration files
are written by properties.py, its TLS certificates made by tls.py; the command line
is __main__.py.

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

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from stream.errors import BrokerError
from stream.tools.harness import free_port
from stream.tools.localkafka.jars import resolve_jars
from stream.tools.localkafka.properties import (LOG_FILE, SECURITY_MODES, check_credential,
                                                format_args, write_config)
from stream.tools.localkafka.tls import TLS_DIR

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DIR = REPO_ROOT / ".kafka"
STATE_FILE = "broker.json"
OUT_FILE = "kafka.out"  # the JVM's own stdout/stderr (crashes before log4j is up)
JVM_HEAP = "-Xms128m -Xmx512m"
ADMIN_USER = "admin"  # the broker's own inter-broker identity on SASL listeners


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
        check_credential("a user name", name)
        check_credential(f"the password of {name!r}", password)
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
    port = port or free_port()
    ports = {mode: port if i == 0 else free_port() for i, mode in enumerate(modes)}
    admin = _admin_identity(dir) if secured else None
    config = write_config(dir, port, free_port(), ports, admin, users)
    classpath = f"{jars}/*"
    jvm = [java, *os.environ.get("KAFKA_HEAP_OPTS", JVM_HEAP).split(),
           "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{dir / 'log4j.properties'}",
           f"-Dkafka.logs.dir={dir}", "-cp", classpath]

    # --ignore-formatted: a restart in the same dir keeps its topics.
    fmt = subprocess.run(
        [*jvm, "kafka.tools.StorageTool", "format", "--ignore-formatted",
         f"--cluster-id={_cluster_id(dir)}", "-c", str(config), *format_args(modes, admin, users)],
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
