"""A wait before the agent's first table write, for a fresh cluster's changelogs."""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger(__name__)


async def changelogs_known(app, config, tables, timeout: float = 60.0) -> None:
    """Wait while the consumer's metadata shows a changelog with 0 partitions. Faust
    checks that changelogs have as many partitions as the clicks topic at a table's
    first write, from that metadata; on a fresh cluster a just-created changelog can
    show 0 partitions there for a moment, and the failed check crashed the agent in the
    middle of its first batch (seen in tests/test_reliability.py). A real mismatch is
    left to Faust's own error."""
    consumer = app.consumer
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        want = consumer.topic_partitions(config.clicks_topic)
        have = {t.changelog_topic_name: consumer.topic_partitions(t.changelog_topic_name)
                for t in tables.values()}
        # None: not in this member's snapshot (only the group leader has the whole
        # group's), which Faust's check lets pass; only a 0 is the transient state
        if not want or 0 not in have.values():
            return
        await asyncio.sleep(0.2)
    log.warning("changelogs still show 0 partitions after %.0fs: %s", timeout, have)
