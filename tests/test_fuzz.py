"""The fuzz corpus (stream/tools/fuzz.py): every malformed message gets the DLQ reason
it was built for, odd but valid ones decode, every corrupted row costs its user one
event and no one else anything; then all of it against a real worker."""

from __future__ import annotations

from collections import Counter

import pytest

from stream.errors import BadEvent
from stream.records import decode_click
from stream.tools import fuzz
from stream.worker.recommend import Incoming, Policy, process_batch
from stream.worker.rows import UserState
from tests.modelkit import tiny_stream_model

README_REASONS = {"not_json", "not_object", "missing_field", "wrong_type", "bad_ts",
                  "bad_event", "empty_key", "key_mismatch", "too_large"}


def outcome(case: fuzz.Case) -> str | None:
    try:
        click = decode_click(case.key, case.value)
    except BadEvent as bad:
        return bad.reason
    assert case.reason is not None or click.user_id == case.user
    return None


def test_every_malformed_message_gets_the_reason_it_was_built_for():
    cases = fuzz.malformed(2000, ["42", "u1", "g\u200f7"], "318", seed=3)
    assert len(cases) == 2000 and all(c.reason for c in cases)
    wrong = [(c.kind, c.reason, outcome(c)) for c in cases if outcome(c) != c.reason]
    assert not wrong, wrong[:10]
    assert {c.reason.split(":")[0] for c in cases} == README_REASONS
    assert len({c.kind for c in cases}) >= 30
    kinds = {c.kind for c in cases}
    assert {"tombstone", "deep_nesting", "lone_surrogate", "nan_literal", "not_utf8",
            "dup_key_last_bad", "too_large", "empty_key"} <= kinds


def test_odd_but_valid_events_decode_and_keep_their_odd_ids():
    cases = fuzz.odd_valid(120, "318", seed=3)
    assert [c for c in cases if outcome(c) is not None] == []
    users = {decode_click(c.key, c.value).user_id for c in cases}
    assert any("\u0000" in u for u in users) and any("\U0001F600" in u for u in users)
    assert any("\u202e" in u for u in users)


def test_the_corpus_is_the_same_for_a_seed_and_another_for_another_seed():
    one = fuzz.malformed(300, ["a", "b"], "1", seed=1)
    assert one == fuzz.malformed(300, ["a", "b"], "1", seed=1)
    assert one != fuzz.malformed(300, ["a", "b"], "1", seed=2)


@pytest.fixture(scope="module")
def sm(tmp_path_factory):
    return tiny_stream_model(tmp_path_factory.mktemp("export"), n_items=40)


def test_every_corrupted_row_costs_its_user_one_event_and_no_one_else_anything(sm):
    gru, window = sm.fresh(1)[0]
    good = UserState(gru=gru, window=window, model=sm.version, session=1, length=1,
                     clicked=[3], last_ts=5.0, offset=0, partition=0, applied=1).to_row()
    cases = fuzz.corrupt_rows(good, 17 * 4, seed=5)
    stored = {f"r{k}": case.row for k, case in enumerate(cases)}
    stored["ok"] = good
    events = []  # two clicks per user, all users in one batch, interleaved
    for j in range(2):
        events += [Incoming(user, f"i{j + 1}", 10.0 + j, "click", f"{user}:{j}", 0, 10 + j)
                   for user in stored]
    load = lambda user: UserState.from_row(stored[user]) if user in stored else None  # noqa: E731
    result = process_batch(sm, events, load, Policy(top_k=3))
    want = {f"r{k}:0": case.reason for k, case in enumerate(cases) if case.reason}
    assert {ev.event_id: why for ev, why in result.rejected} == want
    assert {why.split(":")[1] for why in want.values()} == {"format", "truncated", "meta",
                                                            "shape"}
    answered = Counter(o.event_id for o in result.outputs)
    assert set(answered) == {ev.event_id for ev in events} - set(want)
    assert max(answered.values()) == 1
    assert result.counts["bad_states"] == len(want)
    assert result.counts["model_resets"] == sum(1 for c in cases if c.reason is None)
    assert result.counts["batch_retries"] == 0  # a bad row is no failure of the batch
    # every user's new state parses, and records the last event applied or met
    assert all(UserState.from_row(st.to_row()).offset == 11 for st in result.states.values())


@pytest.mark.integration
def test_a_real_worker_survives_the_corpus_and_bad_rows(kafka_bootstrap, tmp_path):
    from stream.tools.fuzz_run import run_scenario
    from stream.tools.harness import make_export

    export_dir = make_export(tmp_path / "model")
    out = run_scenario(kafka_bootstrap, export_dir, tmp_path, malformed_n=1000, good_n=600,
                       bad_rows=34, odd_n=60, users=30, timeout=60)
    assert out["worker_restarts"] == 0 and out["health"] == "ok", out
    assert out["malformed"] == 1000 and out["bad_rows"] == 32  # 2 of 34: other model
    assert out["dlq_right"], out["wrong"]
    assert out["dlq"] == 1000 + 32 and out["bad_states"] == 32
    assert out["good_answered"] == out["good"] == 600 + 60 + 34 * 3 - 32, \
        out["answered_by_kind"]
