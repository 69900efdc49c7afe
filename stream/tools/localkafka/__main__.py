"""`python -m stream.tools.localkafka start|stop|status`: the local broker from a shell.

    python -m stream.tools.localkafka start [--dir .kafka] [--port N]   # prints bootstrap
    python -m stream.tools.localkafka status|stop [--dir .kafka]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from stream.errors import BrokerError
from stream.tools.localkafka.broker import DEFAULT_DIR, start, status, stop
from stream.tools.localkafka.jars import KAFKA_VERSION
from stream.tools.localkafka.properties import SECURITY_MODES


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
