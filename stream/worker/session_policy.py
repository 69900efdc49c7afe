"""The session policy (gap, max session length) the stream applies: the one the model
was trained with, as the export records it in meta.json under "session", unless the
operator overrides it (StreamConfig.session_gap_s / max_session_len), which is logged.
A model deployed later (or a canary) brings its own training policy: `for_model` gives
the policy its users' events go through. The one place a `Policy` is built."""

from __future__ import annotations

import logging
from dataclasses import replace

from hiertcn.inference import export_session_config
from stream.config import ENV, StreamConfig
from stream.worker.recommend import Policy

log = logging.getLogger(__name__)


def resolve_policy(config: StreamConfig) -> Policy:
    """The export's session policy, with the config's explicit overrides."""
    # one reader of the export's meta.json: an export without them is a one-line error
    trained = export_session_config(config.export_dir)
    gap, length = trained["gap_s"], trained["max_session_len"]
    for name, ours, theirs in (("session_gap_s", config.session_gap_s, gap),
                               ("max_session_len", config.max_session_len, length)):
        if ours is not None:  # given on purpose: say so, louder when it differs
            level = logging.INFO if ours == theirs else logging.WARNING
            log.log(level, "%s=%s set by --%s or $%s overrides the model's training value "
                    "%s", name, ours, name.replace("_", "-"), ENV[name], theirs)
    policy = Policy(top_k=config.top_k, exclude_clicked=config.exclude_clicked,
                    session_gap_s=float(config.session_gap_s or gap),
                    max_session_len=int(config.max_session_len or length),
                    history_events=config.history_events)
    log.info("session policy: gap %.0f s, at most %d clicks per session", policy.session_gap_s,
             policy.max_session_len)
    return policy


def for_model(policy: Policy, config: StreamConfig, model) -> Policy:
    """`policy` with `model`'s own training session policy where the operator set
    none: a model deployed after the start, trained with another gap, is fed sessions
    cut as in its training."""
    trained = model.session_policy
    if not trained:  # built by hand, no export meta: the start's policy
        return policy
    gap = float(config.session_gap_s or trained["gap_s"])
    length = int(config.max_session_len or trained["max_session_len"])
    if (gap, length) == (policy.session_gap_s, policy.max_session_len):
        return policy
    return replace(policy, session_gap_s=gap, max_session_len=length)
