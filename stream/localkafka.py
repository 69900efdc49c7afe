"""A real single-node Apache Kafka (KRaft, broker+controller) on loopback.

Tests and the demo need a broker that behaves like production, so this runs
Apache Kafka's own jars (resolved from Maven Central via deploy/kafka/pom.xml,
or taken from an unpacked release in $KAFKA_HOME) rather than an imitation.

    python -m stream.localkafka start [--dir .kafka] [--port N]   # prints bootstrap
    python -m stream.localkafka status|stop [--dir .kafka]

    with running(dir) as broker:          # or: broker = start(dir); broker.stop()
        create_topics(broker.bootstrap, {"events": 2})

If $KAFKA_BOOTSTRAP_SERVERS is set nothing is started: that broker is used.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
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
REPO_ROOT = Path(__file__).resolve().parent.parent
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
DEFAULT_DIR = REPO_ROOT / ".kafka"
# Shared by every broker dir so the jars are resolved once per checkout.
DEFAULT_LIBS = DEFAULT_DIR / "libs"
STATE_FILE = "broker.json"
LOG_FILE = "server.log"  # log4j output of the broker
OUT_FILE = "kafka.out"  # the JVM's own stdout/stderr (crashes before log4j is up)
JVM_HEAP = "-Xms128m -Xmx512m"


@dataclass
class Broker:
    """A broker we started (pid set) or one we were pointed at (pid None)."""

    bootstrap: str
    pid: int | None = None
    dir: Path | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    @property
    def log(self) -> Path | None:
        return self.dir / LOG_FILE if self.dir else None

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
    if not path.exists():
        path.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    return path.read_text().strip()


def _write_config(dir: Path, port: int, controller_port: int) -> Path:
    props = {
        "node.id": 1,
        "process.roles": "broker,controller",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
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
    path = dir / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
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
               log: Path | None = None) -> None:
    """Block until the broker answers a metadata request with itself in it."""
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
    admin = AdminClient({"bootstrap.servers": bootstrap})
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
    dir = Path(dir).resolve()
    try:
        state = json.loads((dir / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not (_alive(state["pid"]) and _is_our_broker(state["pid"], dir)):
        return None
    return Broker(state["bootstrap"], state["pid"], dir)


def start(dir: Path | str = DEFAULT_DIR, port: int | None = None, *, timeout: float = 90.0,
          libs: Path | None = None) -> Broker:
    """Start a broker in `dir` (or reuse the one running there) and wait for it."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        broker = Broker(os.environ["KAFKA_BOOTSTRAP_SERVERS"])
        wait_ready(broker.bootstrap, timeout=min(timeout, 30.0))
        return broker
    dir = Path(dir).resolve()
    running_already = status(dir)
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
    config = _write_config(dir, port, _free_port())
    classpath = f"{jars}/*"
    jvm = [java, *os.environ.get("KAFKA_HEAP_OPTS", JVM_HEAP).split(),
           "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{dir / 'log4j.properties'}",
           f"-Dkafka.logs.dir={dir}", "-cp", classpath]

    # --ignore-formatted: a restart in the same dir keeps its topics.
    fmt = subprocess.run(
        [*jvm, "kafka.tools.StorageTool", "format", "--ignore-formatted",
         "-t", _cluster_id(dir), "-c", str(config)],
        capture_output=True, text=True)
    if fmt.returncode != 0:
        msg = (fmt.stdout + fmt.stderr).strip().splitlines()
        raise BrokerError(f"kafka storage format failed: {msg[-1] if msg else fmt.returncode}")

    with open(dir / OUT_FILE, "ab") as out:
        # New session: Ctrl-C in the shell that ran `start` must not kill it.
        proc = subprocess.Popen([*jvm, "kafka.Kafka", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    broker = Broker(f"127.0.0.1:{port}", proc.pid, dir, proc)
    try:
        wait_ready(broker.bootstrap, timeout, proc, dir / LOG_FILE)
    except BaseException:
        broker.stop(timeout=10)
        raise
    (dir / STATE_FILE).write_text(json.dumps(
        {"pid": proc.pid, "bootstrap": broker.bootstrap, "started": time.time()}))
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


# ---------------------------------------------------------------- topics


def _admin(bootstrap: str, settings: Mapping[str, str] | None = None):
    """`settings`: a client config with security (StreamConfig.confluent_settings())."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, **(settings or {})})


def create_topics(bootstrap: str, topics: Mapping[str, int],
                  config: Mapping[str, str] | None = None, timeout: float = 30.0,
                  settings: Mapping[str, str] | None = None) -> None:
    """Create {name: partitions}; an existing topic is fine if its count matches.

    A mismatch raises: faust silently mis-routes keys when a topic has fewer
    partitions than the app expects, so it is better to fail here.
    Returns once every topic's partitions have leaders (ready to produce to).
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

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
        wrong = {n: len(p) for n, p in known.items() if len(p) != topics[n]}
        pending = [n for n in topics
                   if n not in known or any(p.leader < 0 for p in known[n].values())]
        if wrong:
            raise BrokerError(f"topics exist with other partition counts: {wrong}, wanted {dict(topics)}")
        if not pending:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"topics not ready after {timeout:g}s: {sorted(pending)}")
        time.sleep(0.1)


def delete_topics(bootstrap: str, names: list[str] | tuple[str, ...],
                  timeout: float = 30.0) -> None:
    """Delete topics; ones that do not exist are fine."""
    from confluent_kafka import KafkaError, KafkaException

    if not names:
        return
    admin = _admin(bootstrap)  # keep a reference: a collected client cancels its futures
    for name, fut in admin.delete_topics(list(names), request_timeout=timeout).items():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise BrokerError(f"cannot delete topic {name}: {exc.args[0].str()}") from exc


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m stream.localkafka",
        description=f"Run a real single-node Apache Kafka {KAFKA_VERSION} (KRaft) on 127.0.0.1. "
        "Jars come from Maven Central (deploy/kafka/pom.xml) or $KAFKA_HOME/libs; "
        "with $KAFKA_BOOTSTRAP_SERVERS set nothing is started.")
    ap.add_argument("command", choices=["start", "stop", "status"])
    ap.add_argument("--dir", default=str(DEFAULT_DIR),
                    help="broker state, config, data and logs (default: %(default)s)")
    ap.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    ap.add_argument("--timeout", type=float, default=90.0, help="startup wait, seconds")
    args = ap.parse_args(argv)
    try:
        if args.command == "start":
            broker = start(args.dir, args.port, timeout=args.timeout)
            print(broker.bootstrap)  # alone on stdout: BOOT=$(... start)
            if broker.pid:
                print(f"kafka pid {broker.pid}, log {broker.log}", file=sys.stderr)
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
