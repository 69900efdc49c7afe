"""A failure in the model work is logged without the user data its message may quote,
unless the operator turns `log_user_data` on."""

from __future__ import annotations

import logging

import pytest

from stream.config import StreamConfig
from stream.worker import failures
from stream.worker.recommend import Incoming, Policy, process_batch
from tests.modelkit import tiny_stream_model

SECRET_USER = "user-4711-secret"


@pytest.fixture(scope="module")
def sm(tmp_path_factory):
    return tiny_stream_model(tmp_path_factory.mktemp("export"), n_items=20)


def failing_load(user):
    raise KeyError(f"no row for {user}")  # a message that quotes the user id


def run_failing_batch(sm, caplog) -> str:
    events = [Incoming(SECRET_USER, sm.item_ids[1], 10.0, "click", "k", 0, 7)]
    with caplog.at_level(logging.INFO, logger="stream"):
        result = process_batch(sm, events, failing_load, Policy())
    assert [reason for _, reason in result.rejected] == ["processing_error"]
    return caplog.text


def test_failures_are_logged_by_type_and_frames_without_the_message(sm, caplog):
    failures.reveal_user_data(False)
    text = run_failing_batch(sm, caplog)
    assert SECRET_USER not in text
    assert "KeyError" in text and "failing_load" in text  # enough to find the bug
    assert "[0]@7" in text  # the event is named by partition and offset


def test_log_user_data_shows_the_full_traceback(sm, caplog, monkeypatch):
    monkeypatch.setenv("HIERTCN_LOG_USER_DATA", "true")
    assert StreamConfig.resolve({}).log_user_data is True
    failures.reveal_user_data(True)
    try:
        text = run_failing_batch(sm, caplog)
    finally:
        failures.reveal_user_data(False)
    assert SECRET_USER in text
