"""Settings of the streaming side: one frozen `StreamConfig`, CLI > environment > default.

    config = StreamConfig.resolve({"top_k": args.top_k})   # None values mean "not given"
    log.info("config %s", config.redacted())               # never logs the password
    Producer(config.confluent_settings())                   # same security for every tool

Every environment variable is named in `ENV` (and `SECRET_FILE_ENV`), nowhere else.
A bad value fails at start with one line naming the option and its variable.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from stream.errors import ConfigError

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
REDACTED = "***"
EMBEDDINGS_MODES = ("event", "session_end", "off")
DEVICES = ("auto", "cpu", "cuda")  # as hiertcn.accel.DEVICES (not imported: it loads torch)
DLQ_MAX_BYTES = 8 << 20  # producer request and dead-letter topic limit (see stream.admin)


@dataclass(frozen=True)
class StreamConfig:
    # Kafka "host:port[,host:port]"; None: the demo/tests start the local broker.
    bootstrap_servers: str | None = None
    app_id: str = "hiertcn-worker"  # Faust app id, also the consumer group
    clicks_topic: str = "clicks"  # input: click / session_end events keyed by user id
    recommendations_topic: str = "recommendations"  # output: top-k per click
    embeddings_topic: str = "user-embeddings"  # output: user state after each session
    dlq_topic: str = "clicks-dlq"  # events that could not be decoded or processed
    # compacted, read whole by every worker (stream/worker/feeds.py): which model export
    # serves (and which is on canary), and the live item vectors (frozen-item models)
    models_topic: str = "models"
    items_topic: str = "items"
    partitions: int = 4  # of every topic the app owns; fixes how far it can scale out
    top_k: int = 20  # items per recommendation
    # The session policy is the model's: None takes the training value the export
    # records (meta.json "session"); a value given here overrides it, logged at start.
    session_gap_s: float | None = None  # inactivity (s) that ends a session
    max_session_len: int | None = None  # clicks kept per session (older ones are dropped)
    # Micro-batches never wait for a window (stream/worker/batching.py): a batch is the
    # clicks already fetched, up to batch_size; a click waits for the batch in progress
    # and its own batch's work.
    batch_size: int = 200  # most events per micro-batch (and per model step)
    batch_within_s: float = 0.05  # max age (s) of a filling batch's first event: only
    #                               reached if the fetched queue never runs dry
    # Embeddings on embeddings_topic: "event" (one per event: as many messages as the
    # recommendations, so twice the output and ~half its bytes go here), "session_end"
    # (only for session_end events: explicit, or the sweep's close of an idle session;
    # a session cut by the gap on the next click or by max_session_len sends none), "off".
    embeddings: str = "event"
    sweep_interval_s: float = 60.0  # how often the timer closes idle sessions and expires
    state_ttl_s: float = 30 * 86400.0  # event-time silence (s) after which a user's state
    #                                    is deleted (tombstones in the compacted changelog)
    stall_s: float = 120.0  # /health fails when clicks wait and no batch ran this long:
    #                         the liveness probe restarts a worker whose consumer hung
    exclude_clicked: bool = True  # do not recommend items already clicked this session
    # Item ids of each user's recent sessions kept in its row, so that a new model
    # version rebuilds the user's state from them instead of resetting it; 0: none.
    history_events: int = 500
    max_event_bytes: int = 65536  # larger input events go to the DLQ undecoded
    # Where the model and the top-K search run: auto (a CUDA GPU when torch sees one,
    # else the CPU), cpu or cuda; hiertcn/accel.py. Logged at start.
    device: str = "auto"
    threads: int = 1  # torch/faiss threads per worker: scale out with workers (5x faster
    #                   than 2 threads on 2 cores: benchmarks/results/stream.json)
    export_dir: Path = Path("artifacts/export")  # exported model the worker loads
    # Faust tables (RocksDB) live under <datadir>/<app_id>/<cluster id>/: one store per
    # app and Kafka cluster, never another app's or cluster's rows
    datadir: Path = Path("artifacts/worker-data")
    web_host: str = "127.0.0.1"  # Faust web server: /health/, /ready/, /metrics/ only
    web_port: int = 6066
    # Also serve Faust's own pages (/table/, /router/, ...). Debugging only: /table/
    # answers any user's state to anyone who can reach web_host:web_port.
    web_debug_pages: bool = False
    # Log unexpected failures with their messages (which can quote user ids or events).
    # Debugging only: by default a failure is logged as its type and frames.
    log_user_data: bool = False
    security_protocol: str = "PLAINTEXT"  # one of SECURITY_PROTOCOLS
    sasl_mechanism: str = "PLAIN"  # one of SASL_MECHANISMS; used with SASL_* only
    sasl_username: str | None = None
    # From $HIERTCN_SASL_PASSWORD or the file named by $HIERTCN_SASL_PASSWORD_FILE.
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None  # CA bundle that signed the broker certificate
    ssl_certfile: Path | None = None  # client certificate (mutual TLS)
    ssl_keyfile: Path | None = None  # client private key (mutual TLS)

    # ------------------------------------------------------------- resolving

    @classmethod
    def resolve(cls, cli: Mapping[str, Any] | None = None, *,
                env: Mapping[str, str] | None = None) -> StreamConfig:
        """CLI value (not None) > environment variable > default, converted and checked.

        `cli` keys are field names (plus "sasl_password_file"); unknown keys raise."""
        cli = {k: v for k, v in (cli or {}).items() if v is not None}
        env = os.environ if env is None else env
        unknown = set(cli) - set(ENV) - {"sasl_password_file"}
        if unknown:
            raise ConfigError(f"unknown stream option(s): {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(ENV)}")
        values = {}
        for name, var in ENV.items():
            if name in cli:
                values[name] = _convert(name, cli[name], "the command line")
            elif env.get(var, "") != "":
                values[name] = _convert(name, env[var], f"${var}")
        password = _password(cli, env)
        if password is not None:
            values["sasl_password"] = password
        config = cls(**values)
        config._check()
        return config

    def _check(self) -> None:
        """Cross-field rules: fail at start, not at the first broker connection."""
        if self.security_protocol.startswith("SASL_"):
            for name in ("sasl_username", "sasl_password"):
                if not getattr(self, name):
                    raise _bad(name, f"required with security_protocol={self.security_protocol}")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise _bad("ssl_keyfile", "ssl_certfile and ssl_keyfile go together")

    # ------------------------------------------------------------- views

    def redacted(self) -> dict:
        """All settings as plain values for logs and checkpoints; the password masked."""
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        if out["sasl_password"] is not None:
            out["sasl_password"] = REDACTED
        return out

    def with_bootstrap(self, bootstrap_servers: str) -> StreamConfig:
        """A copy pointed at a broker found at run time (the local one in demo/tests)."""
        return replace(self, bootstrap_servers=_convert("bootstrap_servers", bootstrap_servers))

    def confluent_settings(self) -> dict:
        """Connection + security settings for any confluent-kafka client."""
        if not self.bootstrap_servers:
            raise _bad("bootstrap_servers", "not set (start one: python -m stream.tools.localkafka start)")
        out = {"bootstrap.servers": self.bootstrap_servers,
               "security.protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL_"):
            out.update({"sasl.mechanisms": self.sasl_mechanism,
                        "sasl.username": self.sasl_username,
                        "sasl.password": self.sasl_password})
        if self.security_protocol in ("SSL", "SASL_SSL"):
            for key, path in (("ssl.ca.location", self.ssl_cafile),
                              ("ssl.certificate.location", self.ssl_certfile),
                              ("ssl.key.location", self.ssl_keyfile)):
                if path is not None:
                    out[key] = str(path)
        return out


    def faust_broker(self) -> str:
        """Faust's broker URL form: "kafka://h1:9092;kafka://h2:9092"."""
        self.confluent_settings()  # same "not set" error
        return ";".join(f"kafka://{h}" for h in self.bootstrap_servers.split(","))

    def faust_credentials(self):
        """faust.SASLCredentials / faust.SSLCredentials for App(broker_credentials=), or None."""
        import faust

        if self.security_protocol == "PLAINTEXT":
            return None
        context = self._ssl_context() if "SSL" in self.security_protocol else None
        if self.security_protocol == "SSL":
            return faust.SSLCredentials(context)
        # faust switches to SASL_SSL by itself when given an ssl_context
        return faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password,
                                     mechanism=self.sasl_mechanism, ssl_context=context)

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile:
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile))
        return context


# ----------------------------------------------------------------- environment

# Field -> environment variable. The one place env names are spelled.
ENV = {
    "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",  # shared with stream.tools.localkafka
    "app_id": "HIERTCN_APP_ID",
    "clicks_topic": "HIERTCN_CLICKS_TOPIC",
    "recommendations_topic": "HIERTCN_RECOMMENDATIONS_TOPIC",
    "embeddings_topic": "HIERTCN_EMBEDDINGS_TOPIC",
    "dlq_topic": "HIERTCN_DLQ_TOPIC",
    "models_topic": "HIERTCN_MODELS_TOPIC",
    "items_topic": "HIERTCN_ITEMS_TOPIC",
    "partitions": "HIERTCN_PARTITIONS",
    "top_k": "HIERTCN_TOP_K",
    "session_gap_s": "HIERTCN_SESSION_GAP_S",
    "max_session_len": "HIERTCN_MAX_SESSION_LEN",
    "batch_size": "HIERTCN_BATCH_SIZE",
    "batch_within_s": "HIERTCN_BATCH_WITHIN_S",
    "embeddings": "HIERTCN_EMBEDDINGS",
    "sweep_interval_s": "HIERTCN_SWEEP_INTERVAL_S",
    "state_ttl_s": "HIERTCN_STATE_TTL_S",
    "stall_s": "HIERTCN_STALL_S",
    "exclude_clicked": "HIERTCN_EXCLUDE_CLICKED",
    "history_events": "HIERTCN_HISTORY_EVENTS",
    "max_event_bytes": "HIERTCN_MAX_EVENT_BYTES",
    "threads": "HIERTCN_THREADS",
    "device": "HIERTCN_DEVICE",
    "export_dir": "HIERTCN_EXPORT_DIR",
    "datadir": "HIERTCN_DATADIR",
    "web_host": "HIERTCN_WEB_HOST",
    "web_port": "HIERTCN_WEB_PORT",
    "web_debug_pages": "HIERTCN_WEB_DEBUG_PAGES",
    "log_user_data": "HIERTCN_LOG_USER_DATA",
    "security_protocol": "HIERTCN_SECURITY_PROTOCOL",
    "sasl_mechanism": "HIERTCN_SASL_MECHANISM",
    "sasl_username": "HIERTCN_SASL_USERNAME",
    "sasl_password": "HIERTCN_SASL_PASSWORD",
    "ssl_cafile": "HIERTCN_SSL_CAFILE",
    "ssl_certfile": "HIERTCN_SSL_CERTFILE",
    "ssl_keyfile": "HIERTCN_SSL_KEYFILE",
}
# Secrets may come from a file instead (Kubernetes/Docker secrets mount files).
SECRET_FILE_ENV = {"sasl_password": "HIERTCN_SASL_PASSWORD_FILE"}
assert set(ENV) == {f.name for f in fields(StreamConfig)}, "every field needs an env name"


def _bad(name: str, problem: str) -> ConfigError:
    return ConfigError(f"stream option {name} (env {ENV[name]}): {problem}")


def _password(cli: Mapping, env: Mapping) -> str | None:
    """CLI value > CLI file > env value > env file; the secret itself is never echoed."""
    file_var = SECRET_FILE_ENV["sasl_password"]
    sources = ((cli.get("sasl_password"), cli.get("sasl_password_file")),
               (env.get(ENV["sasl_password"]) or None, env.get(file_var) or None))
    for value, path in sources:
        if value is not None:
            return str(value)
        if path is not None:
            try:
                return Path(path).read_text().rstrip("\r\n")  # secret files end in \n
            except OSError as exc:
                raise ConfigError(f"stream option sasl_password (env {file_var}): cannot read "
                                  f"password file {str(path)!r}: {exc.strerror or exc}") from None
    return None


# ----------------------------------------------------------------- conversion


def _positive(kind: type) -> Callable:
    def parse(value):
        try:
            # via str: 2.5 must not pass as int 2, nor True as 1
            number = kind(str(value).strip())
        except ValueError:
            number = None
        if isinstance(value, bool) or number is None or not number > 0:
            raise ValueError(f"expected a positive {'integer' if kind is int else 'number'}")
        return number
    return parse


def _count(value) -> int:
    """A whole number >= 0 (0 turns the feature off)."""
    text = str(value).strip()
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()):
        raise ValueError("expected a whole number, 0 or more")
    return int(text)


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false (1/0, yes/no, on/off)")


def _choice(options: tuple) -> Callable:
    def parse(value):
        text = str(value).strip().upper()
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return text
    return parse


def _mode(options: tuple) -> Callable:
    def parse(value):
        text = str(value).strip().lower()
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return text
    return parse


def _nonempty(value) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("expected a non-empty string")
    return text


def _bootstrap(value) -> str:
    hosts = [h.strip() for h in str(value).split(",") if h.strip()]
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"expected host:port[,host:port], got {host!r}")
    if not hosts:
        raise ValueError("expected host:port[,host:port]")
    return ",".join(hosts)


def _port(value) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError("expected a port 1..65535")
    return int(text)


def _existing_file(value) -> Path:
    path = Path(str(value))
    if not path.is_file():
        raise ValueError("expected an existing file")
    return path


_PARSERS: dict[str, Callable] = {
    "bootstrap_servers": _bootstrap,
    "partitions": _positive(int), "top_k": _positive(int),
    "max_session_len": _positive(int), "batch_size": _positive(int),
    "max_event_bytes": _positive(int), "threads": _positive(int),
    "session_gap_s": _positive(float), "batch_within_s": _positive(float),
    "sweep_interval_s": _positive(float), "state_ttl_s": _positive(float),
    "stall_s": _positive(float), "exclude_clicked": _bool, "web_debug_pages": _bool,
    "history_events": _count,
    "log_user_data": _bool,
    "export_dir": lambda v: Path(_nonempty(v)), "datadir": lambda v: Path(_nonempty(v)),
    "web_port": _port,
    "embeddings": _mode(EMBEDDINGS_MODES),
    "device": _mode(DEVICES),
    "security_protocol": _choice(SECURITY_PROTOCOLS),
    "sasl_mechanism": _choice(SASL_MECHANISMS),
    "sasl_password": str,  # taken as is: spaces may be part of a secret
    "ssl_cafile": _existing_file, "ssl_certfile": _existing_file, "ssl_keyfile": _existing_file,
}


def _convert(name: str, value, source: str = "the caller") -> Any:
    """One value to its field's type; a ConfigError names the option and env variable."""
    parse = _PARSERS.get(name, _nonempty)
    try:
        return parse(value)
    except (TypeError, ValueError) as exc:
        shown = "(hidden)" if name == "sasl_password" else repr(value)
        raise _bad(name, f"{exc}, got {shown} from {source}") from None
