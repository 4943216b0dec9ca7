"""The store on PostgreSQL beside SQLite: recording runs, listing them, the UI, per-stage cost.

    python tests/bench/bench_store.py                    # 5,000 runs, a table
    python tests/bench/bench_store.py --runs 1000 --json bench-results/store.json

For each backend (the project's SQLite file; a real PostgreSQL server this script starts with
`conveyor.store.postgres_server`, on 127.0.0.1) a store is filled with N runs shaped like real
ones (bench_ui.fill: 34 params, 3 metrics, 6 stages, 2 data files each), then measured:

* record: the runner's own writes for one more run (`Runs.open`, 6 x `record_stage`, `close`:
  8 transactions) on the full store, median per run of --record runs;
* runs list: `conveyor runs list` wall time (the real CLI, process start included), median;
* UI runs page: `conveyor ui`'s first page and the page sorted by a metric, over HTTP, median;
* per stage: `conveyor run --force` of a 41-stage pipeline of no-op stages minus the same with
  1 stage, divided by 40: what each stage costs (its records, cache lookups, the runner).

Printed as a table with the PostgreSQL / SQLite ratio; --json writes the figures too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ui import fill, running_ui, timed  # noqa: E402
from conveyor.store import Runs, open_store  # noqa: E402
from conveyor.store.postgres_server import PostgresServer  # noqa: E402
from conveyor.testing import conveyor_executable  # noqa: E402

MANY = 41
NOOP = '''
import conveyor


def _noop(ctx):
    return {"out": {"n": 1}}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("bench.noop", _noop))
'''


def _pipeline_project(folder: Path, stages: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "benchstages.py").write_text(NOOP)
    pipeline = "".join(f"  s{i}: {{uses: bench.noop}}\n" for i in range(stages))
    (folder / "conveyor.yaml").write_text(
        "defaults: [conveyor/defaults, _self_]\nproject: bench\n"
        f"plugins: {{local: [benchstages]}}\npipeline:\n{pipeline}")
    return folder


def _wall(command: list[str], cwd: Path, repeat: int) -> float:
    def once() -> float:
        clock = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        return time.perf_counter() - clock

    once()
    return statistics.median(once() for _ in range(repeat))


def _record(project: Path, count: int) -> float:
    store = open_store(project)
    runs = Runs(store)
    times = []
    for n in range(count):
        clock = time.perf_counter()
        run_id = f"bench-record-{n:05d}"
        runs.open(run_id, project="bench", command="run", invocation=None, overrides=[],
                  config={"seed": n}, config_hash="h", git_commit=None, git_dirty=None,
                  packages={}, params={"seed": n, "model.depth": 3},
                  data=[("data.csv", "0" * 64, 10)])
        for i in range(6):
            runs.record_stage(run_id, name=f"s{i}", position=i, type="bench.noop",
                              type_version="1", status="completed", fingerprint=f"{n}-{i}",
                              cached=False, reason="new", started_at=time.time(), duration=0.01,
                              settings={}, upstream={}, files={}, outputs={},
                              error=None, metrics={"m": 0.5} if i == 5 else None)
        runs.close(run_id, status="completed", error=None, exit_code=0)
        times.append(time.perf_counter() - clock)
    store.close()
    return statistics.median(times)


def measure(label: str, work: Path, runs: int, repeat: int, record: int) -> dict[str, float]:
    project = work / label
    clock = time.perf_counter()
    fill(project, runs)
    print(f"{label}: {runs:,} runs stored in {time.perf_counter() - clock:.1f} s", flush=True)
    figures = {"record": _record(project, record)}
    conveyor = conveyor_executable()
    figures["runs list"] = _wall([conveyor, "runs", "list", "--limit", "20"], project, repeat)
    with running_ui(project) as ui:
        figures["UI first page"] = timed(ui.base + "/runs", repeat)
        figures["UI sorted by metric"] = timed(ui.base + "/runs?sort=metric:accuracy&dir=desc",
                                               repeat)
    one = _pipeline_project(work / f"{label}-1", 1)
    many = _pipeline_project(work / f"{label}-{MANY}", MANY)
    run = [conveyor, "run", "--force", "--quiet"]
    figures["per stage"] = (_wall(run, many, repeat) - _wall(run, one, repeat)) / (MANY - 1)
    print(f"{label}: measured", flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--record", type=int, default=50, help="runs recorded and timed")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    saved = os.environ.pop("CONVEYOR_STORE_URL", None)
    with tempfile.TemporaryDirectory() as tmp, PostgresServer() as server:
        work = Path(tmp)
        results["sqlite"] = measure("sqlite", work, args.runs, args.repeat, args.record)
        os.environ["CONVEYOR_STORE_URL"] = server.new_database()
        try:
            results["postgresql"] = measure("postgresql", work, args.runs, args.repeat,
                                            args.record)
        finally:
            os.environ.pop("CONVEYOR_STORE_URL", None)
            if saved is not None:
                os.environ["CONVEYOR_STORE_URL"] = saved
    print(f"\nthe store, {args.runs:,} runs, median of {args.repeat}")
    print(f"{'':<22}{'SQLite':>12}{'PostgreSQL':>12}{'ratio':>8}")
    for name in results["sqlite"]:
        lite, pg = results["sqlite"][name], results["postgresql"][name]
        print(f"{name:<22}{lite * 1000:>10.1f}ms{pg * 1000:>10.1f}ms"
              f"{pg / lite if lite > 0 else float('nan'):>7.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": args.runs, "repeat": args.repeat,
                                         "record": args.record, "seconds": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
