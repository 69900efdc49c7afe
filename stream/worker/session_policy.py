"""The session policy (gap, max session length) the stream applies: the one the model
was trained with, as the export records it in meta.json under "session", unless the
operator overrides it (StreamConfig.session_gap_s / max_session_len), which is logged.
The one place a `Policy` is built."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hiertcn.data.sessions import SessionConfig
from stream.config import ENV, StreamConfig
from stream.errors import ConfigError
from stream.worker.recommend import Policy

log = logging.getLogger(__name__)


def trained_session(export_dir: Path) -> dict:
    """{"gap_s", "max_session_len"} the export was trained with. An export that does not
    record them (an older one) gets SessionConfig's defaults, with a warning."""
    path = Path(export_dir) / "meta.json"
    try:
        recorded = json.loads(path.read_text()).get("session") or {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the model export's {path}: {exc}") from None
    defaults = SessionConfig()
    out = {"gap_s": recorded.get("gap_s"), "max_session_len": recorded.get("max_session_len")}
    missing = [k for k, v in out.items() if v is None]
    if missing:
        out.update({k: getattr(defaults, k) for k in missing})
        log.warning("%s records no training %s: using SessionConfig's defaults %s", path,
                    "/".join(missing), {k: out[k] for k in missing})
    return out


def resolve_policy(config: StreamConfig) -> Policy:
    """The export's session policy, with the config's explicit overrides."""
    trained = trained_session(config.export_dir)
    gap, length = trained["gap_s"], trained["max_session_len"]
    for name, ours, theirs in (("session_gap_s", config.session_gap_s, gap),
                               ("max_session_len", config.max_session_len, length)):
        if ours is not None:  # given on purpose: say so, louder when it differs
            level = logging.INFO if ours == theirs else logging.WARNING
            log.log(level, "%s=%s set by --%s or $%s overrides the model's training value "
                    "%s", name, ours, name.replace("_", "-"), ENV[name], theirs)
    policy = Policy(top_k=config.top_k, exclude_clicked=config.exclude_clicked,
                    session_gap_s=float(config.session_gap_s or gap),
                    max_session_len=int(config.max_session_len or length))
    log.info("session policy: gap %.0f s, at most %d clicks per session", policy.session_gap_s,
             policy.max_session_len)
    return policy
