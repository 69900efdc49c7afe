"""Where a worker keeps its tables on disk, and the check that the local stores belong
to the changelogs they will be recovered from.

A local RocksDB store is a cache of its changelog partition: Faust records in it the
changelog offset it holds rows up to, and at start replays only the changelog after
that offset. A store written for another app or another Kafka cluster is not such a
cache: its offsets name another changelog's messages. So the stores live under
`<datadir>/<app_id>/<cluster id>/`, and before Faust starts, a partition store whose
recorded offset is beyond the end of its changelog partition (a changelog deleted and
created again, a broker's data wiped) is moved aside, to be rebuilt from the changelog.
Without that Faust stops at start with a ConsistencyError ("persisted offset ... is
higher than the last offset in that topic").
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from stream.config import StreamConfig
from stream.errors import BrokerError

log = logging.getLogger(__name__)

OFFSET_KEY = b"__faust\0offset__"  # faust.stores.rocksdb.Store.offset_key
_PARTITION_DB = re.compile(r"^(?P<table>.+)-(?P<partition>\d+)\.db$")  # Store.partition_path


def cluster_id(config: StreamConfig, timeout: float = 10.0) -> str:
    """The Kafka cluster's id, from the broker's metadata."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        found = AdminClient(config.confluent_settings()).list_topics(timeout=timeout).cluster_id
    except KafkaException as exc:
        raise BrokerError(f"cannot read the cluster id from {config.bootstrap_servers}: "
                          f"{exc.args[0].str() if exc.args else exc}") from None
    if not found:  # brokers older than Kafka 0.10 do not say
        log.warning("the broker reports no cluster id: stores kept under 'unknown-cluster'")
        return "unknown-cluster"
    return found


def store_dir(config: StreamConfig, cluster: str) -> Path:
    """`<datadir>/<app_id>/<cluster id>`: Faust's datadir for this app on this cluster."""
    return config.datadir / _safe(config.app_id) / _safe(cluster)


def _safe(name: str) -> str:
    """One path component: what a file name cannot hold becomes "_"."""
    text = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return "_" + text if text in ("", ".", "..") else text


def persisted_offset(db_path: Path) -> int | None:
    """The changelog offset Faust recorded in a partition store; None if it has none.
    Opened read-only: it takes no lock, and writes nothing."""
    from rocksdict import AccessType, Options, Rdict

    db = Rdict(str(db_path), options=Options(raw_mode=True),
               access_type=AccessType.read_only())
    try:
        value = db.get(OFFSET_KEY)
    finally:
        db.close()
    return None if value is None else int(value)


def local_stores(tabledir: Path, table: str) -> dict[int, Path]:
    """{partition: path} of the table's partition stores under Faust's tabledir."""
    out = {}
    for path in tabledir.iterdir() if tabledir.is_dir() else ():
        m = _PARTITION_DB.match(path.name)
        if m and m["table"] == table and path.is_dir():
            out[int(m["partition"])] = path
    return out


def changelog_ends(config: StreamConfig, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """{partition: end offset (the next offset to be written)}; {} if the topic is absent."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**config.confluent_settings(), "group.id": f"{config.app_id}-store-check",
                  "enable.auto.commit": False})
    try:
        meta = c.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            return {}
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
                for p in meta.partitions}
    finally:
        c.close()


def set_aside_stale(tabledir: Path, table: str, changelog: str,
                    ends: dict[int, int]) -> list[Path]:
    """Move aside (rename to `<name>.stale-<unix time>`) each partition store of `table`
    whose recorded offset is at or past its changelog partition's end: it holds rows of
    another changelog. Faust then recovers the partition from the changelog, which is
    the truth. The new paths."""
    moved = []
    for partition, path in sorted(local_stores(tabledir, table).items()):
        offset = persisted_offset(path)
        end = ends.get(partition, 0)  # a partition that does not exist is empty
        if offset is None or offset < end:
            continue
        aside = path.with_name(f"{path.name}.stale-{int(time.time())}")
        path.rename(aside)
        log.warning("local store %s records changelog offset %d but %s[%d] ends at offset "
                    "%d: it was written for another changelog; moved to %s, the partition "
                    "is recovered from the changelog", path, offset, changelog, partition,
                    end, aside.name)
        moved.append(aside)
    return moved


def check_local_stores(worker) -> list[Path]:
    """`set_aside_stale` for every table of the worker, before its Faust app starts."""
    tabledir = Path(worker.app.conf.tabledir)
    moved = []
    for name, table in worker.tables.items():
        if local_stores(tabledir, name):
            changelog = table.changelog_topic_name
            moved += set_aside_stale(tabledir, name, changelog,
                                     changelog_ends(worker.config, changelog))
    return moved
