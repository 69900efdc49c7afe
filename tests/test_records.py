"""The message contract: every bad input gets its DLQ reason, encoders round-trip."""

from datetime import datetime, timezone

import numpy as np
import orjson
import pytest

from hiertcn.inference import Ranked
from stream.errors import BadEvent, StreamError
from stream.records import (SCHEMA_VERSION, Click, Deployment, ModelRef, decode_click,
                            decode_deployment, decode_dlq, decode_item_vector,
                            decode_recommendation, encode_click, encode_deployment,
                            encode_dlq, encode_embedding, encode_item_vector,
                            encode_recommendation)

GOOD = {"user_id": "42", "item_id": "318", "ts": 1260759144, "event_id": "42:17"}


def dumps(**changes) -> bytes:
    obj = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in obj.items() if v is not ...})


def reason(key, value, max_bytes=65536) -> str:
    with pytest.raises(BadEvent) as info:
        decode_click(key, value, max_bytes)
    return info.value.reason


def test_good_click_decodes_with_defaults():
    click = decode_click(b"42", dumps())
    assert click == Click("42", "318", 1260759144.0, "click", "42:17")
    assert isinstance(click.ts, float)


def test_int_ids_are_normalised_to_str():
    click = decode_click(b"42", dumps(user_id=42, item_id=318))
    assert (click.user_id, click.item_id) == ("42", "318")


def test_iso_ts_with_zone_and_without_zone_means_utc():
    want = datetime(2016, 10, 16, 12, 0, 1, tzinfo=timezone.utc).timestamp()
    assert decode_click(None, dumps(ts="2016-10-16T12:00:01Z")).ts == want
    assert decode_click(None, dumps(ts="2016-10-16T14:00:01+02:00")).ts == want
    assert decode_click(None, dumps(ts="2016-10-16T12:00:01")).ts == want
    assert decode_click(None, dumps(ts=1476619201.25)).ts == 1476619201.25


def test_session_end_needs_no_item():
    click = decode_click(b"42", dumps(event="session_end", item_id=...))
    assert click.event == "session_end" and click.item_id is None


def test_expire_names_the_offset_it_expires_or_forgets_now():
    sweep = decode_click(b"42", dumps(event="expire", item_id=..., applied_offset=17))
    assert sweep.event == "expire" and sweep.item_id is None and sweep.applied_offset == 17
    assert decode_click(b"42", dumps(event="expire", item_id=...)).applied_offset is None
    assert reason(b"42", dumps(event="expire", applied_offset="17")) == "wrong_type:applied_offset"
    assert reason(b"42", dumps(event="expire", applied_offset=-1)) == "wrong_type:applied_offset"


def test_no_key_is_accepted_and_event_id_is_optional():
    assert decode_click(None, dumps(event_id=...)).event_id is None


def test_payload_over_the_limit_is_too_large_before_parsing():
    huge = dumps(item_id="x" * (1 << 20))  # 1 MB of otherwise valid JSON
    assert reason(b"42", huge) == "too_large"
    assert reason(b"42", dumps(), max_bytes=10) == "too_large"


@pytest.mark.parametrize("value", [b"", b"{", b"not json", b"\xff\xfe\x00garbage",
                                   '{"user_id": "é"}'.encode("latin-1"), None])
def test_unparsable_bytes_are_not_json(value):
    assert reason(b"42", value) == "not_json"


@pytest.mark.parametrize("value", [b"[1, 2]", b'"click"', b"42", b"null"])
def test_json_that_is_not_an_object(value):
    assert reason(b"42", value) == "not_object"


@pytest.mark.parametrize("name", ["user_id", "item_id", "ts"])
def test_missing_field_names_the_field(name):
    assert reason(None, dumps(**{name: ...})) == f"missing_field:{name}"
    assert reason(None, dumps(**{name: None})) == f"missing_field:{name}"


@pytest.mark.parametrize("name,value", [("user_id", 4.2), ("user_id", True), ("user_id", [1]),
                                        ("item_id", {"id": 1}), ("item_id", False),
                                        ("event_id", 3.5), ("ts", [1]), ("ts", True)])
def test_wrong_type_names_the_field(name, value):
    assert reason(None, dumps(**{name: value})) == f"wrong_type:{name}"


@pytest.mark.parametrize("ts", ["yesterday", "2016-13-45T00:00:00", -1, 1476619201000, ""])
def test_bad_ts(ts):
    # 1476619201000 is milliseconds: accepted it would be the year 48 761
    assert reason(None, dumps(ts=ts)) == "bad_ts"


@pytest.mark.parametrize("event", ["view", "", 1, None, ["click"]])
def test_bad_event(event):
    assert reason(None, dumps(event=event)) == "bad_event"


def test_empty_key():
    assert reason(b"", dumps()) == "empty_key"


@pytest.mark.parametrize("key", [b"43", b"042", b"\xff"])
def test_key_must_be_the_user(key):
    assert reason(key, dumps()) == "key_mismatch"


def test_bad_event_is_a_stream_error_with_the_reason_as_message():
    with pytest.raises(StreamError, match="^not_json$"):
        decode_click(None, b"{")


def test_encode_click_round_trips_through_decode():
    value = encode_click(42, 318, 1260759144, event_id="42:17")
    assert decode_click(b"42", value) == Click("42", "318", 1260759144.0, "click", "42:17")
    end = encode_click("42", None, 1.5, "session_end")
    assert decode_click(b"42", end) == Click("42", None, 1.5, "session_end", None)


def test_recommendation_round_trip_keeps_order_and_numpy_scores():
    items = [("318", np.float32(0.75)), ("296", 0.5), ("593", np.float64(0.25))]
    value = encode_recommendation("42", "42:17", 1260759144.0, 3, items, "hiertcn-abc", 4.2)
    rec = decode_recommendation(value)
    assert rec == {"v": SCHEMA_VERSION, "user_id": "42", "event_id": "42:17",
                   "ts": 1260759144.0, "session": 3, "model": "hiertcn-abc", "latency_ms": 4.2,
                   "items": [{"item_id": "318", "score": 0.75}, {"item_id": "296", "score": 0.5},
                             {"item_id": "593", "score": 0.25}]}
    assert "latency_ms" not in decode_recommendation(
        encode_recommendation("42", None, 1.0, 0, [], "m"))


def test_recommendation_from_ranked_rows_equals_the_list_of_pairs():
    """top_k's Ranked rows encode to the very bytes the (item_id, float(score)) pairs
    made: same keys, order and values, float32 scores as the same doubles."""
    rng = np.random.default_rng(7)
    for n in (0, 1, 5, 20, 70):
        ids = [str(x) for x in rng.integers(0, 10**6, n)]
        ids[-1:] = ['odd "id",\\ é'][:n]  # JSON escapes too
        scores32 = (rng.standard_normal(n) * 10 ** rng.uniform(-8, 8, n)).astype(np.float32)
        pairs = [(i, float(s)) for i, s in zip(ids, scores32)]  # what top_k used to give
        ranked = Ranked(list(ids), scores32.tolist())
        for event_id, latency in ((None, None), ("u:1", 3.25)):
            old = encode_recommendation("u", event_id, 1.5e9, 2, pairs, "m", latency)
            new = encode_recommendation("u", event_id, 1.5e9, 2, ranked, "m", latency)
            assert new == old
            assert decode_recommendation(new) == decode_recommendation(old)
            assert [(i["item_id"], i["score"]) for i in decode_recommendation(new)["items"]] \
                == pairs


def test_embedding_round_trip_is_float32_exact():
    vector = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    obj = orjson.loads(encode_embedding("42", 10.0, vector, "m"))
    assert obj["v"] == SCHEMA_VERSION and obj["user_id"] == "42" and obj["model"] == "m"
    np.testing.assert_array_equal(np.asarray(obj["embedding"], np.float32), vector)
    # a float64 or non-contiguous input is sent as float32 too
    wide = np.stack([vector, vector], 1).astype(np.float64)[:, 0]
    assert orjson.loads(encode_embedding("42", 10.0, wide, "m"))["embedding"] == obj["embedding"]
    with pytest.raises(ValueError, match="1-D"):
        encode_embedding("42", 10.0, vector.reshape(8, 8), "m")


def test_dlq_keeps_non_utf8_originals_and_says_where_they_came_from():
    original = b"\xff\xfe\x00 not json"
    obj = decode_dlq(encode_dlq(original, "not_json", "clicks", 3, 1234))
    assert obj["original"] == original
    assert obj["source"] == "clicks[3]@1234"
    assert (obj["reason"], obj["topic"], obj["partition"], obj["offset"]) == \
        ("not_json", "clicks", 3, 1234)
    assert decode_dlq(encode_dlq(None, "not_json", "clicks", 0, 0))["original"] == b""


def test_decode_recommendation_rejects_other_versions():
    with pytest.raises(BadEvent, match="bad_version"):
        decode_recommendation(b'{"v": 2, "items": []}')
    with pytest.raises(BadEvent, match="not_object"):
        decode_recommendation(b"[]")


def test_deployment_round_trips_and_bad_ones_are_refused_by_reason():
    a, b = ModelRef("abc123", "/models/a"), ModelRef("def456", "/models/b")
    for d in (Deployment(a), Deployment(a, b, 0.05), Deployment(b, previous=a)):
        assert decode_deployment(encode_deployment(d)) == d
    good = orjson.loads(encode_deployment(Deployment(a, b, 0.05)))
    for change, why in (({"canary_share": 1.5}, "wrong_type:canary_share"),
                        ({"canary_share": "0.1"}, "wrong_type:canary_share"),
                        ({"current": None}, "missing_field:current"),
                        ({"candidate": {"version": "x"}}, "wrong_type:candidate"),
                        ({"v": 99}, "bad_version")):
        with pytest.raises(BadEvent) as info:
            decode_deployment(orjson.dumps({**good, **change}))
        assert info.value.reason == why
    with pytest.raises(BadEvent, match="not_object"):
        decode_deployment(None)  # a tombstone on the models topic deploys nothing


def test_item_vectors_as_json_or_base64_and_tombstones_retire():
    vector = np.random.default_rng(3).standard_normal(16).astype(np.float32)
    for form in (False, True):
        item, got = decode_item_vector(b"item-7", encode_item_vector(vector, base64_form=form))
        assert item == "item-7"
        np.testing.assert_array_equal(got, vector)
        assert got.dtype == np.float32
    assert decode_item_vector(b"item-7", None) == ("item-7", None)
    for key, value, why in ((b"", b"[1.0]", "empty_key"), (None, b"[1.0]", "empty_key"),
                            (b"i", b"{", "not_json"), (b"i", b'{"v": [1]}', "wrong_type:vector"),
                            (b"i", b'[1, "2"]', "wrong_type:vector"),
                            (b"i", b'"abc"', "wrong_type:vector"),  # 2 bytes: not float32s
                            (b"i", b"[]", "bad_vector"),
                            (b"i", encode_item_vector(np.array([np.nan]), True), "bad_vector")):
        with pytest.raises(BadEvent) as info:
            decode_item_vector(key, value)
        assert info.value.reason == why, (key, value)
