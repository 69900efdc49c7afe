"""The stream benchmark's load generator, its pure part (benchmarks/streambench/schedule.py):
the schedule of many users replaying their own click sequences at once."""

from __future__ import annotations

from collections import defaultdict

import orjson
import pandas as pd
import pytest

from benchmarks.streambench.schedule import Send, build, histories

# two users; u1 has a 2 h gap (a session end, capped to 1 h), u2 one session
ROWS = [("u1", "a", 0), ("u1", "b", 10), ("u1", "c", 7210), ("u1", "d", 7240),
        ("u2", "x", 5), ("u2", "y", 5), ("u2", "z", 65)]


def events(rows=ROWS) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["user", "item", "ts"])
    df["event"] = "click"
    df["event_id"] = df["user"] + ":" + df.index.astype(str)
    return df.sort_values("ts", kind="stable", ignore_index=True)


def by_user(sends: list[Send]) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for s in sends:
        click = orjson.loads(s.value)
        assert s.key.decode() == click["user_id"] and s.event_id == click["event_id"]
        out[click["user_id"]].append({**click, "at": s.at})
    return out


def test_each_user_replays_its_own_sequence_in_order():
    sched = build(histories(events()), users=2, rate=50, duration_s=20, seed=1)
    assert [s.at for s in sched.sends] == sorted(s.at for s in sched.sends)
    for user, clicks in by_user(sched.sends).items():
        own = [i for u, i, _ in ROWS if u == user]
        items = [c["item_id"] for c in clicks]
        start = own.index(items[0])  # joined somewhere in its loop, then in order
        assert items == [own[(start + k) % len(own)] for k in range(len(items))]
        assert all(a["ts"] <= b["ts"] for a, b in zip(clicks, clicks[1:]))


def test_offered_rate_is_met_evenly():
    rows = [(f"u{i}", f"i{(i * 7 + k) % 50}", 1000 * i + 30 * k)
            for i in range(40) for k in range(20)]
    sched = build(histories(events(rows)), users=400, rate=250, duration_s=8)
    assert len(sched.sends) == 2000 and sched.info["offered_events_per_s"] == 250
    at = [s.at for s in sched.sends]
    assert at[-1] == pytest.approx(8.0) and at[0] >= 0
    halves = sum(a < 4 for a in at), sum(a >= 4 for a in at)
    assert abs(halves[0] - halves[1]) < 0.15 * 2000  # no ramp: users already there


def test_gaps_capped_in_event_time_and_one_scale_in_wall_time():
    sched = build(histories(events()), users=2, rate=None, duration_s=4 * 7300,
                  time_scale=0.001, max_gap_s=3600)
    u1 = by_user(sched.sends)["u1"]
    gaps = {(a["item_id"], b["item_id"]): (b["ts"] - a["ts"], b["at"] - a["at"])
            for a, b in zip(u1, u1[1:])}
    assert gaps[("a", "b")] == (10, pytest.approx(0.010))
    assert gaps[("b", "c")] == (3600, pytest.approx(3.6))  # 2 h capped: still > 30 min
    assert gaps[("c", "d")] == (30, pytest.approx(0.030))
    assert gaps[("d", "a")][0] == 3600  # the loop comes back after a capped gap


def test_rate_rescales_every_user_alike():
    sched = build(histories(events()), users=2, rate=5, duration_s=40)
    scale = sched.info["wall_s_per_event_s"]
    for clicks in by_user(sched.sends).values():
        for a, b in zip(clicks, clicks[1:]):
            assert b["at"] - a["at"] == pytest.approx((b["ts"] - a["ts"]) * scale)


def test_more_users_than_the_data_reuses_them_under_new_ids():
    sched = build(histories(events()), users=6, rate=20, duration_s=60, seed=3)
    users = by_user(sched.sends)
    assert set(users) == {"u1", "u2", "u1#1", "u2#1", "u1#2", "u2#2"}
    assert sched.info["reused_users"] == 4 and "'<uid>#<k>'" in sched.info["note"]
    ids = [s.event_id for s in sched.sends]
    assert len(set(ids)) == len(ids)
    for uid, clicks in users.items():
        src = [i for u, i, _ in ROWS if u == uid.split("#")[0]]
        assert {c["item_id"] for c in clicks} <= set(src)
    # own start points: the copies are not in step with their source
    firsts = {uid: clicks[0]["ts"] for uid, clicks in users.items()}
    assert len({firsts["u1"], firsts["u1#1"], firsts["u1#2"]}) > 1


def test_histories_keep_the_real_order_of_same_second_clicks():
    h = histories(events())
    u2 = h.users.index("u2")
    assert list(h.items[h.starts[u2]:h.starts[u2 + 1]]) == ["x", "y", "z"]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        build(histories(events()), users=0, rate=10, duration_s=1)
    with pytest.raises(ValueError):
        build(histories(events()), users=2, rate=None, duration_s=1)


class FakeProducer:
    def __init__(self):
        self.sent = []

    def produce(self, topic, value, key, timestamp=None):
        self.sent.append((topic, key, value, timestamp))

    def poll(self, _):
        return 0


def test_sender_follows_the_schedule_and_stamps_each_click_with_its_send_time():
    from benchmarks.streambench.loadgen import send_schedule
    sched = build(histories(events()), users=4, rate=200, duration_s=0.1)
    producer = FakeProducer()
    sent = send_schedule(producer, "clicks", sched.sends)
    assert [k for _, k, _, _ in producer.sent] == [s.key for s in sched.sends]
    stamps = [ts for _, _, _, ts in producer.sent]
    assert stamps == sorted(stamps) and list(sent.sent_ms.values()) == stamps
    assert list(sent.sent_ms) == [s.event_id for s in sched.sends]
    span_ms = (sched.sends[-1].at - sched.sends[0].at) * 1000
    assert span_ms > 50 and stamps[-1] - stamps[0] >= span_ms - 5  # paced, not at once


def test_stacks_buckets_each_sample_once_from_the_leaf():
    """py-spy's collapsed stacks (benchmarks/streambench/stacks.py): a sample goes to
    the first bucket matched from the leaf, asyncio frames passed over; inclusive
    counts every bucket on the stack."""
    from benchmarks.streambench import stacks
    sp, repo = "/v/lib/python3.11/site-packages", "/work/main"
    loop = (f"thread (101): MainThread;"
            f"BaseEventLoop.run_forever ({sp[:-14]}/asyncio/base_events.py:600);"
            f"BaseEventLoop._run_once ({sp[:-14]}/asyncio/base_events.py:1900)")
    agent = f"{loop};handle_batch ({repo}/stream/worker/agents.py:130)"
    lines = [
        f"{loop};select ({sp[:-14]}/selectors.py:468) 10",
        f"{agent};process_batch ({repo}/stream/worker/recommend.py:90);"
        f"step_many ({repo}/hiertcn/model.py:99);forward ({sp}/torch/nn/modules/linear.py:114) 5",
        f"{agent};process_batch ({repo}/stream/worker/recommend.py:90);"
        f"StreamModel.top_k ({repo}/hiertcn/inference.py:126);search ({sp}/faiss/__init__.py:3) 3",
        f"{agent};decode_batch ({repo}/stream/worker/agents.py:160);"
        f"decode_click ({repo}/stream/records.py:60) 2",
        f"{agent};Table.__setitem__ ({sp}/faust/tables/table.py:80);"
        f"Collection.send_changelog ({sp}/faust/tables/base.py:300);"
        f"create_task ({sp[:-14]}/asyncio/base_events.py:430) 4",
        f"{loop};_run ({sp[:-14]}/asyncio/events.py:80) 1",
        "thread (102): outputs-poll;Publisher._poll (/work/main/stream/worker/publisher.py:160) 30",
    ]
    threads = stacks.summarise(lines + ["", "  "])
    main = stacks.main_thread(threads)
    assert main.thread.endswith("MainThread") and main.samples == 25
    own = {b.split(" (")[0]: n for b, n in main.own.items()}
    assert own == {"asyncio/selector idle": 10, "model": 5, "faiss search": 3, "decode": 2,
                   "Faust producer/changelog": 4, "asyncio loop": 1}
    incl = {b.split(" (")[0]: n for b, n in main.inclusive.items()}
    assert incl["plan/recommend python"] == 14  # agents.py frames under every batch
    assert incl["table reads/writes"] == 4 and incl["asyncio loop"] == 25
    assert sum(main.own.values()) == main.samples
    assert main.leaves["decode_click (stream/records.py)"] == 2
    text = stacks.report(threads)
    assert "outputs-poll" in text and "40.0%" in text  # idle 10 of 25
    assert stacks.parse_frame("thread") == ("thread", "", 0)
