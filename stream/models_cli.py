"""`hiertcn-stream models publish | promote | rollback | show`: model rollouts by
configuration, through the compacted `models` topic every worker follows
(stream/worker/model_holder.py). No restart, no worker touched.

    hiertcn-stream models publish --export /models/v2                 # everyone on v2 now
    hiertcn-stream models publish --export /models/v3 --canary 0.05   # 5% of users on v3
    hiertcn-stream models publish --export /models/v3 --canary 0.25   # widen the canary
    hiertcn-stream models promote            # the candidate serves everyone
    hiertcn-stream models rollback           # drop the candidate; with none, back to previous
    hiertcn-stream models show
    hiertcn-stream models withdraw           # no deployment: every worker serves its export dir

Each command reads the deployment in force (the topic's last record), changes it and
writes the whole new one (the key "deployment"): a worker needs only the last record.
Two operators changing it at the same moment: the later write wins, whole. `publish`
loads and checks the export here first (files, shapes, one step and one search), so a
broken export is refused before any worker sees it; the workers check again, and one
that cannot load it keeps serving what it had. `--export` is stored as an absolute
path: every worker must see the export at that path (a shared volume, or an image
that bakes it in).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from stream.config import StreamConfig
from stream.errors import BadEvent, BrokerError, ConfigError
from stream.records import (DEPLOYMENT_KEY, Deployment, ModelRef, decode_deployment,
                            encode_deployment)


def add_arguments(p: argparse.ArgumentParser, config_options) -> None:
    """The actions, each with the stream settings (`config_options(parser)`, from
    stream/cli.py): the broker, security and the models topic."""
    sub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    pub = sub.add_parser("publish", help="roll out an export to everyone, or to a canary share")
    pub.add_argument("--export", type=Path, required=True, help="the export folder")
    pub.add_argument("--canary", type=float, default=None, metavar="SHARE",
                     help="serve it to this share of users (0..1) beside the current model")
    parsers = [pub,
               sub.add_parser("promote", help="the candidate serves everyone"),
               sub.add_parser("rollback", help="drop the candidate; with none, back to the "
                                               "previous model"),
               sub.add_parser("show", help="print the deployment in force"),
               sub.add_parser("withdraw", help="remove the deployment: every worker serves "
                                               "its own export dir (HIERTCN_EXPORT_DIR) "
                                               "again, e.g. after an image with a newer "
                                               "export")]
    for action in parsers:
        config_options(action)


def run(args, config: StreamConfig) -> None:
    old = read_deployment(config)
    if args.models_command == "show":
        print(describe(old) if old else f"no deployment on {config.models_topic}: the "
              f"workers serve their export dir")
        return
    if args.models_command == "withdraw":
        if old is None:
            raise ConfigError(f"no deployment on {config.models_topic} to withdraw: the "
                              f"workers already serve their export dir")
        write_deployment(config, None)
        print(f"withdrawn ({describe(old)}): the workers serve their export dir")
        return
    if args.models_command == "publish":
        new = publish(old, args.export, args.canary, config)
    elif args.models_command == "promote":
        new = promote(old)
    else:
        new = rollback(old)
    write_deployment(config, new)
    print(describe(new))


def publish(old: Deployment | None, export: Path, canary: float | None,
            config: StreamConfig) -> Deployment:
    ref = checked_ref(export)
    if canary is None:
        return Deployment(ref, previous=old.current if old else None)
    if not 0.0 <= canary <= 1.0:
        raise ConfigError(f"--canary {canary}: expected a share between 0 and 1")
    current = old.current if old else checked_ref(config.export_dir)  # what workers serve
    if current.version == ref.version:
        raise ConfigError(f"{export} is the current model ({ref.version}): nothing to canary")
    return Deployment(current, ref, canary, old.previous if old else None)


def promote(old: Deployment | None) -> Deployment:
    if old is None or old.candidate is None:
        raise ConfigError("no candidate on canary to promote: publish one with --canary")
    return Deployment(old.candidate, previous=old.current)


def rollback(old: Deployment | None) -> Deployment:
    if old is not None and old.candidate is not None:
        return Deployment(old.current, previous=old.previous)
    if old is None or old.previous is None:
        raise ConfigError("nothing to roll back to: no candidate and no previous model")
    return Deployment(old.previous)


def checked_ref(export: Path) -> ModelRef:
    """The export's version, after loading and checking it as a worker would."""
    from hiertcn.errors import HierTCNError
    from hiertcn.inference import StreamModel
    from stream.worker.model_holder import check_export

    try:
        model = StreamModel.load(export)
        check_export(model)
    except HierTCNError:
        raise
    except Exception as exc:  # a broken export: one line, never a traceback
        raise ConfigError(f"{export}: not a usable export ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return ModelRef(model.version, str(Path(export).resolve()))


def describe(d: Deployment) -> str:
    text = f"current {d.current.version} ({d.current.location})"
    if d.candidate is not None:
        text += (f"; candidate {d.candidate.version} ({d.candidate.location}) on "
                 f"{d.canary_share:.2%} of users")
    if d.previous is not None:
        text += f"; previous {d.previous.version}"
    return text


def read_deployment(config: StreamConfig, timeout: float = 15.0) -> Deployment | None:
    """The last deployment record of the models topic, or None if there is none."""
    from confluent_kafka import Consumer, TopicPartition

    topic = config.models_topic
    c = Consumer({**config.confluent_settings(), "group.id": f"models-cli-{time.time()}",
                  "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            raise BrokerError(f"no topic {topic}: create it with `hiertcn-stream topics`")
        last = None
        for p in md.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            c.assign([TopicPartition(topic, p, low)])
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = c.poll(0.5)
                if msg is None or msg.error():
                    continue
                if msg.key() == DEPLOYMENT_KEY and msg.value() is None:
                    last = None  # withdrawn
                elif msg.key() == DEPLOYMENT_KEY:
                    try:
                        last = decode_deployment(msg.value())
                    except BadEvent:
                        pass  # a bad record is skipped by the workers too
                if msg.offset() + 1 >= high:
                    break
            else:  # a later record could change what is in force: act on none
                raise BrokerError(f"{topic}[{p}] not read to its end ({high}) within "
                                  f"{timeout:g}s: nothing changed; try again")
        return last
    finally:
        c.close()


def write_deployment(config: StreamConfig, d: Deployment | None) -> None:
    """The whole deployment, or None: its tombstone (withdrawn)."""
    from confluent_kafka import Producer

    errors = []
    p = Producer({**config.confluent_settings(), "enable.idempotence": True})
    p.produce(config.models_topic, key=DEPLOYMENT_KEY,
              value=None if d is None else encode_deployment(d),
              on_delivery=lambda err, _msg: errors.append(err) if err else None)
    if p.flush(30) or errors:
        raise BrokerError(f"the deployment was not written to {config.models_topic}: "
                          f"{errors[0].str() if errors else 'timed out'}")
