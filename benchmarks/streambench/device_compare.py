"""The stream's model work on the CPU and on a CUDA GPU, in one run on one machine:
`process_batch` (rows unpacked, the TCN step of every user's click, faiss/torch top-20
over the whole catalogue, rows packed) for micro-batches of B distinct users whose open
session already holds L events. Kafka-free, so it runs on a GPU machine that has no
broker: it prices the part of the worker that a GPU can take over.

    python -m benchmarks.streambench.device_compare --export DIR [--out FILE]

Imports only the model side (hiertcn, stream.worker.recommend), so that a machine with
torch, numpy, faiss and orjson runs it. Writes benchmarks/results/stream_device.json
unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

BATCHES = (200, 1000, 4000)
LENGTHS = (1, 10, 50)
RESULTS = Path(__file__).resolve().parents[1] / "results" / "stream_device.json"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Bench:
    def __init__(self, export_dir: Path):
        self.export_dir = export_dir
        self.offset = 0

    def model(self, device: str):
        from hiertcn.inference import StreamModel
        return StreamModel.load(self.export_dir, device)

    def clicks(self, sm, users: list[str], ts: float, rng) -> list:
        from stream.worker.recommend import Incoming
        items = rng.integers(len(sm.item_ids), size=len(users))
        out = []
        for u, i in zip(users, items):
            self.offset += 1
            out.append(Incoming(u, sm.item_ids[int(i)], ts, "click", f"{u}:{self.offset}",
                                0, self.offset, received=time.time()))
        return out

    def run(self, sm, events, table: dict):
        from stream.worker.recommend import Policy, UserState, process_batch
        load = lambda u: UserState.from_row(table[u]) if u in table else None  # noqa: E731
        return process_batch(sm, events, load, Policy())

    def prepare(self, sm, n_users: int, length: int) -> tuple[list[str], dict, float]:
        """Rows of `n_users` users whose open session holds `length` clicks, one minute
        apart (inside the session gap). Rows are bytes: any device reads them."""
        rng = np.random.default_rng(length)
        users = [f"u{length}-{i}" for i in range(n_users)]
        table, ts = {}, 1.0e9
        for _ in range(length):
            result = self.run(sm, self.clicks(sm, users, ts, rng), table)
            table.update({u: st.to_row() for u, st in result.states.items()})
            ts += 60.0
        return users, table, ts

    def time_batch(self, sm, users, table, ts, reps: int) -> float:
        """Median seconds of one batch: one more click per user, rows not written back
        (so the session length stays L); the first run is a warm-up."""
        rng = np.random.default_rng(1)
        seconds = []
        for rep in range(reps + 1):
            events = self.clicks(sm, users, ts, rng)
            t0 = time.perf_counter()
            result = self.run(sm, events, table)
            if sm.device.type == "cuda":
                torch.cuda.synchronize()
            if rep:
                seconds.append(time.perf_counter() - t0)
            assert len(result.outputs) == len(users) and not result.rejected
        return float(np.median(seconds))


def agreement(bench: Bench, prepared: dict) -> dict:
    """The same batch on the GPU and the CPU: largest embedding difference and the
    share of top-20 lists that agree exactly (ties in float32 may reorder a few)."""
    key = min(prepared)
    users, table, ts = prepared[key]
    results = {}
    for device in ("cpu", "cuda"):
        sm = bench.model(device)
        events = bench.clicks(sm, users, ts, np.random.default_rng(7))
        results[device] = bench.run(sm, events, table)
    cpu, gpu = results["cpu"], results["cuda"]
    diff = max(float(np.abs(a - b).max()) for a, b in zip(cpu.embeddings, gpu.embeddings))
    same = [[i for i, _ in a.items] == [i for i, _ in b.items]
            for a, b in zip(cpu.outputs, gpu.outputs) if a.recommend]
    return {"case": f"B{key[0]}_L{key[1]}", "max_abs_embedding_diff": diff,
            "top20_lists_identical": round(sum(same) / max(len(same), 1), 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", type=Path, required=True, help="a model export folder")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (JSON)")
    parser.add_argument("--reps", type=int, default=7, help="timed batches per case")
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES),
                        help="micro-batch sizes B (distinct users per batch)")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS),
                        help="open-session lengths L")
    parser.add_argument("--cpu-threads", type=int, nargs="+", default=[1],
                        help="CPU thread counts to time (the worker uses 1 per process)")
    args = parser.parse_args(argv)
    if not (args.export / "meta.json").exists():
        sys.exit(f"no model export in {args.export}: build one first (see the docstring)")
    import faiss
    bench = Bench(args.export)
    devices = [("cpu", n) for n in args.cpu_threads]
    if torch.cuda.is_available():
        devices.insert(0, ("cuda", 1))
    prepare_on = bench.model(devices[0][0])
    log(f"devices: {devices}; preparing rows on {devices[0][0]}")
    prepared = {(b, n): bench.prepare(prepare_on, b, n) for b in args.batches for n in args.lengths}
    cases: dict[str, dict] = {}
    for device, threads in devices:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
        sm = bench.model(device)
        name = device if device == "cuda" else f"cpu_{threads}_threads"
        cases[name] = {"search": sm.search_backend, "ms_per_event": {}}
        for (b, n), (users, table, ts) in prepared.items():
            sec = bench.time_batch(sm, users, table, ts, args.reps)
            cases[name]["ms_per_event"][f"B{b}_L{n}"] = round(sec / b * 1000, 4)
            log(f"{name:16s} B={b:5d} L={n:3d}: {sec * 1000:8.1f} ms/batch, "
                f"{sec / b * 1e6:7.1f} us/event, {b / sec:9.0f} events/s")
    if torch.cuda.is_available():
        report_agreement = agreement(bench, prepared)
    else:
        report_agreement = None
    report = {
        "command": "python -m benchmarks.streambench.device_compare " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "torch": torch.__version__, "loadavg": [round(x, 2) for x in os.getloadavg()]},
        "what": "median ms per event of process_batch (one click per user, B distinct users, "
                "open session of L events, top-20 over the catalogue), rows as bytes in a dict",
        "cases": cases,
        "cuda_vs_cpu_agreement": report_agreement,
    }
    if "cuda" in cases:
        base = next(k for k in cases if k.startswith("cpu"))
        report["cuda_speedup_vs_" + base] = {
            key: round(cases[base]["ms_per_event"][key] / ms, 2)
            for key, ms in cases["cuda"]["ms_per_event"].items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
