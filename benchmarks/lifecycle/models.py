"""The two models of a rollout: the same HierTCN (default sizes) trained on the
shipped MovieLens with two seeds, each within a time budget on one CPU thread, and
exported as the worker loads them. Trained by the project's own CLI when missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hiertcn.errors import CheckpointError, ConfigError
from hiertcn.inference import StreamModel

SEEDS = {"a": 0, "b": 1}  # model A serves before the rollout, B after


def commands(where: Path, seed: int, seconds: int) -> list[list[str]]:
    run = where / f"run-seed{seed}"
    return [["python", "-m", "hiertcn", "train", "--seed", str(seed), "--max-seconds",
             str(seconds), "--out", str(run)],
            ["python", "-m", "hiertcn", "export", "--checkpoint", str(run),
             "--out", str(where / f"export-seed{seed}")]]


def ensure(where: Path, seconds: int, log) -> tuple[dict[str, StreamModel], list[str]]:
    """Models A and B from `where`, trained and exported first if missing; (models,
    the commands that made them)."""
    models, made = {}, []
    for name, seed in SEEDS.items():
        steps = commands(where, seed, seconds)
        made += [" ".join(_shown(part) for part in cmd) for cmd in steps]
        export_dir = Path(steps[1][-1])
        if not (export_dir / "meta.json").exists():
            log(f"training model {name.upper()} (seed {seed}, {seconds} s on one thread)")
            for cmd in steps:
                _run([sys.executable, *cmd[1:]])
        try:
            models[name] = StreamModel.load(export_dir)
        except CheckpointError as err:
            raise ConfigError(f"model {name.upper()} in {export_dir}: {err}") from None
    return models, made


def _shown(part: str) -> str:
    """A path inside the repository as a relative one, so the command reads anywhere."""
    repo = Path(__file__).resolve().parents[2]
    path = Path(part)
    return str(path.relative_to(repo)) if path.is_absolute() and path.is_relative_to(repo) else part


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    if done.returncode:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise ConfigError(f"{' '.join(cmd[1:])} failed: {tail[0]}")
