"""conveyor ui: how long the runs page takes over a store with thousands of runs.

    python tests/bench/bench_ui.py                   # 5,000 runs
    python tests/bench/bench_ui.py --runs 20000 --repeat 5

A store is filled through the public `conveyor.store` API with N runs shaped like real ones
(34 params, 3 metrics, 6 stages, 2 data files each; 5% failed), then the real `conveyor ui`
serves it and each page is fetched over HTTP: the first page (newest first), the same sorted
by a metric, filtered by a param, and the last page. Time is the median of --repeat requests
after one warm-up, the whole response read. The baseline, measured in the same run, is the
same request against a store of 50 runs (one page): the ratio is what thousands of runs cost.
The target is under 1 s for 5,000 runs. Results go to bench-results/ui.json as well.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "ui" / "tests"))

from _ui_support import running_ui
from conveyor.store import open_store

STAGES = ["load", "validate", "split", "train", "evaluate", "register"]
PAGES = {
    "first page": "/runs",
    "sorted by a metric": "/runs?sort=metric:accuracy&dir=desc",
    "filtered by a param": "/runs?q=model.params.max_depth%3D6",
    "last page": "/runs?page=100000",
}
TARGET_SECONDS = 1.0


def fill(project: Path, runs: int) -> None:
    project.mkdir(parents=True, exist_ok=True)
    (project / "conveyor.yaml").write_text("defaults:\n  - conveyor/defaults\n  - _self_\n"
                                           "project: bench\npipeline: {}\n")
    store = open_store(project)
    rng = random.Random(7)
    start = time.time() - runs * 60
    with store.write() as conn:
        for n in range(runs):
            run_id = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(start + n * 60))}-{n:06x}"
            failed = rng.random() < 0.05
            depth = rng.choice([3, 6, 9, None])
            params = {f"data.p{k}": json.dumps(f"value-{k}") for k in range(28)}
            params.update({"model.params.max_depth": json.dumps(depth),
                           "model.params.learning_rate": json.dumps(rng.choice([0.05, 0.1])),
                           "model.params.max_iter": "200", "seed": "0", "project": '"bench"',
                           "model._target_": '"sklearn.ensemble.HistGradientBoostingClassifier"'})
            conn.execute(
                "INSERT INTO runs (id, project, status, created_at, finished_at, duration, "
                "command, overrides, config, config_hash, git_commit, git_dirty, packages) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, "bench", "failed" if failed else "completed", start + n * 60,
                 start + n * 60 + 9, 9.0 + rng.random(), "run",
                 json.dumps([f"model.params.max_depth={depth}"]), "{}", f"{n:064x}",
                 "0" * 40, 0, "{}"))
            conn.executemany("INSERT INTO params VALUES (?,?,?)",
                             [(run_id, k, v) for k, v in params.items()])
            if not failed:
                conn.executemany("INSERT INTO metrics VALUES (?,?,?,?)", [
                    (run_id, "evaluate", key, rng.random())
                    for key in ("accuracy", "balanced_accuracy", "f1_macro")])
            conn.executemany(
                "INSERT INTO stages (run_id, name, position, type, status, cached, reason, "
                "started_at, duration, upstream, outputs) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(run_id, name, i, f"sklearn.{name}", "completed", int(i < 3),
                  "unchanged" if i < 3 else "setting changed", start + n * 60 + i, 1.0,
                  json.dumps({STAGES[i - 1]: "f"} if i else {}), "{}")
                 for i, name in enumerate(STAGES)])
            conn.executemany("INSERT INTO data_inputs VALUES (?,?,?,?)", [
                (run_id, "data/customers.csv", f"md5:{n % 7:032x}", 1000),
                (run_id, "schema.yaml", f"{1:064x}", 100)])
    store.close()


def timed(url: str, repeat: int) -> float:
    def once() -> float:
        clock = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as response:
            response.read()
            assert response.status == 200
        return time.perf_counter() - clock

    once()
    return statistics.median(once() for _ in range(repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--baseline-runs", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--output", type=Path, default=Path("bench-results/ui.json"))
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, runs in (("baseline", args.baseline_runs), ("store", args.runs)):
            project = Path(tmp) / label
            clock = time.perf_counter()
            fill(project, runs)
            print(f"{label}: {runs:,} runs recorded in {time.perf_counter() - clock:.1f} s",
                  flush=True)
            with running_ui(project) as ui:
                results[label] = {name: timed(ui.base + path, args.repeat)
                                  for name, path in PAGES.items()}
    print(f"\nconveyor ui, runs page, median of {args.repeat} (baseline: {args.baseline_runs} "
          f"runs; target < {TARGET_SECONDS:.0f} s with {args.runs:,})")
    print(f"{'page':<22}{f'{args.runs:,} runs':>12}{'baseline':>12}{'ratio':>8}{'vs 1 s':>9}")
    ok = True
    for name in PAGES:
        big, small = results["store"][name], results["baseline"][name]
        ok &= big < TARGET_SECONDS
        print(f"{name:<22}{big * 1000:>10.1f}ms{small * 1000:>10.1f}ms{big / small:>7.2f}x"
              f"{big / TARGET_SECONDS:>8.1%}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"runs": args.runs, "baseline_runs": args.baseline_runs,
                                       "repeat": args.repeat, "seconds": results,
                                       "target_seconds": TARGET_SECONDS}, indent=2))
    print("within target" if ok else "OVER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
