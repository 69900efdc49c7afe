"""Kafka's runtime jars for the local broker: resolved from Maven Central with
deploy/kafka/pom.xml (once per checkout, into .kafka/libs), or taken from an unpacked
release in $KAFKA_HOME."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from stream.errors import BrokerError

KAFKA_VERSION = "3.9.1"
REPO_ROOT = Path(__file__).resolve().parents[3]
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
# Shared by every broker dir (it sits in the default one) so the jars are resolved
# once per checkout.
DEFAULT_LIBS = REPO_ROOT / ".kafka" / "libs"


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
