"""TLS material for the local broker's SSL listeners: a self-signed CA and a broker
certificate signed by it, made with the openssl command-line tool."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from stream.errors import BrokerError

TLS_DIR = "tls"  # under the broker dir: ca.pem, broker.p12 (made by make_certs)


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
