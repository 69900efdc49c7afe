"""`hiertcn-stream worker | topics | demo` (also `python -m stream.cli`).

    hiertcn-stream worker --bootstrap-servers kafka:9092 --export-dir artifacts/export
    hiertcn-stream topics                      # create the topics, with enough partitions
    hiertcn-stream demo                        # local broker, model, worker, replay, tail
    hiertcn-stream models publish --export DIR [--canary SHARE] | promote | rollback | show

Options override environment variables (HIERTCN_*, KAFKA_BOOTSTRAP_SERVERS), which
override defaults; `replay` and `tail` are `python -m stream.tools.replay` / `stream.tools.tail`.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys
from dataclasses import fields

from hiertcn.errors import HierTCNError
from stream import models_cli
from stream.admin import check_connection, ensure_topics
from stream.config import ENV, StreamConfig
from stream.errors import StreamError

log = logging.getLogger("stream")


FROM_EXPORT = ("session_gap_s", "max_session_len")  # None: the model's training value


def add_config_options(p: argparse.ArgumentParser) -> None:
    """One --option per StreamConfig field, defaulting to None ("not given")."""
    g = p.add_argument_group("stream settings (each also from its environment variable)")
    for f in fields(StreamConfig):
        if f.name == "sasl_password":
            continue  # secrets come from the environment or a file, never argv
        default = "the export's training value" if f.name in FROM_EXPORT else f.default
        g.add_argument("--" + f.name.replace("_", "-"), default=None, metavar="V",
                       help=f"env {ENV[f.name]} (default: {default})")


def given(args) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(StreamConfig)
            if getattr(args, f.name, None) is not None}


def cmd_topics(args) -> None:
    ensure_topics(StreamConfig.resolve(given(args)))


def cmd_worker(args) -> None:
    config = StreamConfig.resolve(given(args))
    from hiertcn.inference import StreamModel
    StreamModel.load(config.export_dir)  # fail now, in one line, if the export is missing
    check_connection(config.confluent_settings())  # wrong credentials / CA: one line, not Faust's retry loop
    ensure_topics(config)
    log.info("worker config: %s", config.redacted())
    from stream.worker.app import build
    app = build(config).app  # from this config; nothing is read back from the environment
    # `kill -QUIT <pid>` writes every thread's Python stack to the log, even with the
    # event loop blocked; `kill -USR1` (Faust's) also lists the asyncio tasks
    faulthandler.register(signal.SIGQUIT, all_threads=True)
    # Faust's own `worker` command runs the app, from an argv of its own: the web
    # options (already the app's) also make its canonical URL
    sys.argv = [sys.argv[0], "worker", "-l", args.loglevel,
                "--web-host", config.web_host, "--web-port", str(config.web_port)]
    app.main()


def cmd_models(args) -> None:
    models_cli.run(args, StreamConfig.resolve(given(args)))


def cmd_demo(args) -> None:
    from stream.tools import demo
    demo.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hiertcn-stream", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("worker", help="run a Faust worker of the consumer group")
    add_config_options(p)
    p.add_argument("--loglevel", default="info", choices=("debug", "info", "warn", "error"),
                   help="Faust's log level (default: info)")
    p.set_defaults(run=cmd_worker)
    p = sub.add_parser("topics", help="create the topics (idempotent)")
    add_config_options(p)
    p.set_defaults(run=cmd_topics)
    p = sub.add_parser("models", help="roll out a model export live: publish, canary, "
                                      "promote, roll back (stream/models_cli.py)")
    models_cli.add_arguments(p, add_config_options)
    p.set_defaults(run=cmd_models)
    p = sub.add_parser("demo", help="the live demo on the local broker")
    p.add_argument("--users", type=int, default=6, help="users to replay (default: 6)")
    p.add_argument("--rate", type=float, default=40.0, help="events/s (default: 40)")
    p.add_argument("--epochs", type=int, default=3,
                   help="training epochs if no export (default: 3, about 3 minutes)")
    p.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (StreamError, HierTCNError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
