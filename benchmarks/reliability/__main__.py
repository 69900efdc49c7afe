"""`python -m benchmarks.reliability [--only a,b] [--events N] [--small]`: run the fault
scenarios (see the package docstring) and write benchmarks/results/reliability.json."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import benchmarks.reliability as package
from benchmarks.reliability import report
from benchmarks.reliability.lab import SMALL, Lab, Scenario, Sizes, log
from benchmarks.reliability.scenarios import SCENARIOS
from stream.tools.harness import REPO, make_export

RESULTS = REPO / "benchmarks" / "results"


def run(scenarios: list[Scenario], sizes: Sizes, bootstrap: str | None, work: Path,
        figures: Path | None = None, export_dir: Path | None = None) -> dict:
    """Run the scenarios; `bootstrap` None starts a local broker, shared by all but
    those that stop it (own_broker), which always get one of their own."""
    from stream.tools import localkafka
    export_dir = export_dir or make_export(work / "model")
    results, shared = {}, None
    try:
        for scenario in scenarios:
            name = scenario.name
            log(f"{name}: start")
            broker = None
            if scenario.own_broker:
                broker = localkafka.start(work / f"kafka-{name}")
            elif bootstrap is None and shared is None:
                shared = localkafka.start(work / "kafka")
            lab = Lab(broker.bootstrap if broker else bootstrap or shared.bootstrap,
                      work / name, export_dir, name, broker=broker, figures=figures)
            try:
                results[name] = scenario.run(lab, sizes)
            finally:
                lab.close()
                if lab.broker is not None:
                    lab.broker.stop()
            log(f"{name}: {json.dumps(results[name])}")
    finally:
        if shared is not None:
            shared.stop()
    return results


def parse_args(argv=None) -> argparse.Namespace:
    names = [s.name for s in SCENARIOS]
    p = argparse.ArgumentParser(prog="python -m benchmarks.reliability",
                                description=package.__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(names),
                   help=f"comma-separated scenarios (default: all: {','.join(names)})")
    p.add_argument("--events", type=int, default=Sizes.events,
                   help="good events of kill9 and poison (default: %(default)s)")
    p.add_argument("--small", action="store_true", help="the test sizes (about 4 minutes)")
    p.add_argument("--keep", action="store_true",
                   help="keep the workers' logs and stores even when every target is met")
    p.add_argument("--out", type=Path, default=RESULTS / "reliability.json",
                   help="results file (default: %(default)s)")
    args = p.parse_args(argv)
    args.names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(args.names) - set(names)
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {', '.join(names)}")
    if args.events < 1000:
        p.error("--events must be at least 1000")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    scenarios = [s for s in SCENARIOS if s.name in args.names]
    scenarios.sort(key=lambda s: args.names.index(s.name))  # in the order asked
    sizes = SMALL if args.small else replace(Sizes(), events=args.events,
                                             malformed=args.events // 10)
    work = Path(tempfile.mkdtemp(prefix="reliability-"))
    t0 = time.monotonic()
    results = run(scenarios, sizes, os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), work,
                  figures=args.out.parent)
    command = "python -m benchmarks.reliability " + " ".join(sys.argv[1:] if argv is None else argv)
    out = report.write(args.out, results, command.strip(), sizes, time.monotonic() - t0)
    print(json.dumps(out["targets"], indent=2))
    log(f"wrote {args.out}")
    met = all(out["targets"].values())
    if met and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
        return 0
    # the workers' logs and stores are what a missed target is diagnosed from
    log(f"{'' if met else 'targets missed: '}worker logs and stores kept in {work}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
