"""Phase 1, no Kafka: the per-event cost of `stream.worker.recommend.process_batch`
(the user's state loaded from its `user_state` row, StreamModel step, faiss top-20 over
the whole MovieLens catalogue) and what the agent does around it.

- synthetic batches of 200 distinct users whose session already has 1, 10 or 50
  events, with default threads and one thread; the naive alternative (re-encoding the
  whole session, HierTCN.encode) as a contrast;
- the real MovieLens stream cut into 200-event batches, state carried from batch to
  batch as the worker does;
- the agent's own cost per event: decode, the row unpacked into a UserState, outputs
  and the row encoded;
- cProfiles of both kinds of batch -> results/stream_profile.txt (profile.py).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from benchmarks.streambench.common import BATCH, SESSION_LENS, log
from benchmarks.streambench.profile import write_profiles


def set_threads(n: int) -> None:
    import faiss
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


class HotPath:
    """process_batch on the full-size model; a table is a dict user -> `user_state` row
    (stream/worker/rows.py: session meta, GRU state and TCN window in one record), read
    and written as the agent does."""

    def __init__(self, export_dir):
        from hiertcn.inference import StreamModel
        from stream.worker.recommend import Policy
        self.model = StreamModel.load(export_dir)
        self.policy = Policy()
        self.rng = np.random.default_rng(0)
        self.n_items = len(self.model.item_ids)
        self.offset = 0
        self.default_threads = torch.get_num_threads()

    def events_for(self, users, last_items, ts) -> tuple[list, list[int]]:
        """One click per user at time `ts`, never the user's last item (a repeat would
        not be fed: training drops them); (events, items)."""
        from stream.worker.recommend import Incoming
        out, items = [], []
        for u, last in zip(users, last_items):
            item = int(self.rng.integers(self.n_items))
            while item == last:
                item = int(self.rng.integers(self.n_items))
            self.offset += 1
            out.append(Incoming(u, self.model.item_ids[item], ts, "click",
                                f"{u}:{self.offset}", 0, self.offset, received=time.time()))
            items.append(item)
        return out, items

    def process(self, events, table: dict):
        """process_batch over `table`'s rows, as the agent's `load` reads them."""
        from stream.worker.recommend import UserState, process_batch
        load = lambda u: UserState.from_row(table[u]) if u in table else None  # noqa: E731
        return process_batch(self.model, events, load, self.policy)

    @staticmethod
    def write(table: dict, result) -> None:
        for u, st in result.states.items():
            table[u] = st.to_row()

    def prepare(self, length: int) -> tuple:
        """BATCH users whose current session holds `length` events: (users, table,
        last items, next ts)."""
        from stream.worker.recommend import UserState
        users = [f"u{length}-{i}" for i in range(BATCH)]
        table: dict[str, bytes] = {}
        last, ts = [-1] * BATCH, 1.0e9
        set_threads(1)  # not timed: the quick way
        for _ in range(length):
            events, last = self.events_for(users, last, ts)
            self.write(table, self.process(events, table))
            ts += 60.0
        assert all(UserState.from_row(table[u]).length == length for u in users)
        return users, table, last, ts


def time_session_lengths(hp: HotPath, prepared: dict, reps: int) -> dict[str, list[float]]:
    """Seconds per batch of every variant: incremental step at each session length
    (default threads, one thread) and the naive re-encode. Timed round-robin, so a
    neighbour's load on this shared machine falls on all of them alike; the first
    round is a warm-up."""
    from hiertcn.model import Batch

    def synthetic(length, threads=None):
        users, table, last, ts = prepared[length]
        events = hp.events_for(users, last, ts)[0]  # rows not written back: length stays
        def run():
            set_threads(threads or hp.default_threads)
            hp.process(events, table)
        return run

    def naive(length):
        items = torch.from_numpy(hp.rng.integers(hp.n_items, size=(BATCH, 1, length + 1)))
        batch = Batch(items=items, reset=torch.ones(BATCH, 1, dtype=torch.bool),
                      valid=torch.ones(BATCH, 1, dtype=torch.bool))
        h = hp.model.model.zero_state(BATCH)
        def run():
            set_threads(1)  # compared with the incremental step on one thread
            with torch.no_grad():
                hp.model.model.encode(batch, h)
        return run

    makers = {**{str(n): (lambda n=n: synthetic(n)) for n in SESSION_LENS},
              **{f"{n}_one_thread": (lambda n=n: synthetic(n, 1)) for n in SESSION_LENS},
              **{f"naive_{n}": (lambda n=n: naive(n)) for n in SESSION_LENS}}
    times: dict[str, list[float]] = {name: [] for name in makers}
    for rep in range(reps + 1):
        for name, make in makers.items():
            if name.startswith("naive") and rep > max(3, reps // 3):
                continue  # the contrast needs fewer repeats
            run = make()
            t0 = time.perf_counter()
            run()
            if rep:
                times[name].append(time.perf_counter() - t0)
    set_threads(hp.default_threads)
    return times


def movielens_batches(hp: HotPath, messages: list, stream_batches: int) -> tuple[dict, list]:
    """The real input: the MovieLens stream in event-time order, 200 events a batch,
    state carried from batch to batch as the worker does; default threads and one
    thread interleaved batch by batch, each with its own table. (figures, batches)"""
    from stream.records import decode_click
    from hiertcn.inference import BatchState
    from stream.worker.recommend import Incoming
    decoded = [decode_click(k, v) for k, v, _ in messages[:stream_batches * BATCH]]
    stream = [Incoming(c.user_id, c.item_id, c.ts, c.event, c.event_id, 0, i)
              for i, c in enumerate(decoded)]
    batches = [stream[i:i + BATCH] for i in range(0, len(stream), BATCH)]
    tables = {"default": {}, "one_thread": {}}
    seconds: dict[str, list[float]] = {"default": [], "one_thread": []}
    calls = _ModelCalls(BatchState)
    for events in batches:
        for variant, threads in (("default", hp.default_threads), ("one_thread", 1)):
            set_threads(threads)
            calls.start()
            t0 = time.perf_counter()
            result = hp.process(events, tables[variant])
            seconds[variant].append(time.perf_counter() - t0)
            calls.stop()
            hp.write(tables[variant], result)
    calls.restore()
    set_threads(hp.default_threads)
    users_per_batch = [len({e.user_id for e in b}) for b in batches]
    figures = {
        "batches": len(batches),
        "ms_per_event": round(sum(seconds["default"]) / len(stream) * 1000, 4),
        "ms_per_event_one_thread": round(sum(seconds["one_thread"]) / len(stream) * 1000, 4),
        "mean_users_per_batch": round(float(np.mean(users_per_batch)), 1),
        "mean_model_calls_per_batch": round(calls.per_batch(), 2),
        "note": "model calls = TCN steps (one per phase) + GRU rolls + resets: a batch "
                "costs 1 + (the most session ends of one user in it) phases, however "
                "bursty its users (MovieLens users rate in bursts: few users per batch)"}
    return figures, batches


def agent_cost(hp: HotPath, prepared: dict, reps: int) -> dict[str, float]:
    """ms/event of what the agent does around process_batch (synthetic, length 10).
    The keys are those of earlier results: `state_from_rows` is now the one
    `user_state` row unpacked into a UserState, `encode_outputs_and_meta` the outputs
    and the row (meta + GRU + window) encoded."""
    from stream.records import decode_click, encode_click, encode_embedding, encode_recommendation
    from stream.worker.recommend import UserState
    users, table, last, ts = prepared[10]
    events = hp.events_for(users, last, ts)[0]
    raw = [(e.user_id.encode(), encode_click(e.user_id, e.item_id, e.ts, "click", e.event_id))
           for e in events]

    def per_event(fn) -> float:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return round((time.perf_counter() - t0) / reps / BATCH * 1000, 4)

    result = hp.process(events, table)

    def encode():
        for st in result.states.values():
            st.to_row()
        for o in result.outputs:
            encode_embedding(o.user_id, o.ts, result.embeddings[o.embedding_row], o.model,
                             o.event_id)
            encode_recommendation(o.user_id, o.event_id, o.ts, o.session, o.items, o.model, 1.0)

    return {"decode_click": per_event(lambda: [decode_click(k, v) for k, v in raw]),
            "state_from_rows": per_event(lambda: [UserState.from_row(table[u]) for u in users]),
            "encode_outputs_and_meta": per_event(encode)}


def hot_path(export_dir, reps: int, stream_batches: int, messages: list,
             profile_path) -> dict:
    """Every figure of phase 1, under the results keys of benchmarks/results/stream.json;
    the profiles' report to `profile_path`."""
    hp = HotPath(export_dir)
    prepared = {length: hp.prepare(length) for length in SESSION_LENS}
    times = time_session_lengths(hp, prepared, reps)
    ms = {name: round(statistics.median(t) / BATCH * 1000, 4) for name, t in times.items()}
    ms_min = {name: round(min(t) / BATCH * 1000, 4) for name, t in times.items()}
    per_event = {str(n): ms[str(n)] for n in SESSION_LENS}
    one_thread = {str(n): ms[f"{n}_one_thread"] for n in SESSION_LENS}
    naive_ms = {str(n): ms[f"naive_{n}"] for n in SESSION_LENS}
    log(f"hot path ms/event by session length (median of {reps} batches of {BATCH}): "
        f"{per_event}; on one thread: {one_thread}; naive re-encode (one thread): "
        f"{naive_ms}")
    movielens, batches = movielens_batches(hp, messages, stream_batches)
    log(f"MovieLens stream batches: {movielens['ms_per_event']} ms/event "
        f"({movielens['ms_per_event_one_thread']} on one thread), "
        f"{movielens['mean_users_per_batch']} users and "
        f"{movielens['mean_model_calls_per_batch']} model calls per 200-event batch")
    cost = agent_cost(hp, prepared, reps)
    tops = write_profiles(hp, batches, prepared[10], movielens, profile_path)
    return {"per_event_ms_by_session_len": per_event,
            "per_event_ms_by_session_len_min": {str(n): ms_min[str(n)] for n in SESSION_LENS},
            "per_event_ms_by_session_len_one_thread": one_thread,
            "naive_encode_ms_by_session_len": naive_ms,
            "movielens_stream_batches": movielens,
            "agent_cost_ms_per_event": cost,
            "profile_top": tops, "torch_threads": hp.default_threads}


class _ModelCalls:
    """Counts BatchState's model calls (step_many, end_sessions, reset) while started."""

    NAMES = ("step_many", "end_sessions", "reset")

    def __init__(self, cls):
        self.cls, self.on, self.calls, self.batches = cls, False, 0, 0
        self.originals = {name: getattr(cls, name) for name in self.NAMES}
        for name, method in self.originals.items():
            setattr(cls, name, self._counting(method))

    def _counting(self, method):
        def counted(*args, **kwargs):
            self.calls += self.on
            return method(*args, **kwargs)
        return counted

    def start(self) -> None:
        self.on = True

    def stop(self) -> None:
        self.on, self.batches = False, self.batches + 1

    def per_batch(self) -> float:
        return self.calls / max(1, self.batches)

    def restore(self) -> None:
        for name, method in self.originals.items():
            setattr(self.cls, name, method)
