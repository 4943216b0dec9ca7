"""Retraining beside a busy machine: the train stage of a real `conveyor run` (HistGradientBoosting,
the classification template's model) while another process keeps one core busy, beside the same
run on a quiet machine. Goal: within 2.5x.

    python tests/bench/bench_threads.py                  # 20,000 rows, 3 repetitions
    python tests/bench/bench_threads.py --rows 5000 --repeat 1 --baseline-timeout 30

Every command runs in the environment a user has: OMP_NUM_THREADS and OMP_WAIT_POLICY removed
(the rest of the suite pins one thread; this figure must not). The fit time is the train stage's
duration as the store recorded it; each case is the median of --repeat runs, the quiet and busy
runs alternating so drift in the machine's load hits both alike. "Quiet" means no process of
ours beside it: on a shared machine the load average printed with the figures says how quiet.

The reference, unless --no-baseline: the same fit in a plain script (conveyor_sklearn's
Pipeline, scikit-learn's default threads, no Conveyor), quiet and beside the busy core, each
stopped after --baseline-timeout seconds. Also shown, with no goal of its own: two `conveyor run`
of the same project at once (the issue's other case: minutes each, unsized). Results go to
bench-results/threads.json as well.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
CONVEYOR = str(BIN / "conveyor")
GOAL = 2.5
PINS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
        "GOMP_SPINCOUNT", "KMP_BLOCKTIME")

PLAIN_FIT = """\
import sys, time
import pandas as pd
from conveyor_sklearn.preprocess import as_model_input, build_pipeline
from sklearn.ensemble import HistGradientBoostingClassifier
frame = pd.read_csv(sys.argv[1])
X = as_model_input(frame.drop(columns=["churned", "customer_id"]))
model = build_pipeline(X, HistGradientBoostingClassifier(random_state=0))
started = time.perf_counter()
model.fit(X, frame["churned"])
print(time.perf_counter() - started)
"""


def user_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PINS}
    env["COLUMNS"] = "200"
    return env


class BusyCore:
    """Another process keeping one core busy while the block runs."""

    def __enter__(self) -> BusyCore:
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.process.kill()
        self.process.wait()


def make_project(root: Path, rows: int) -> Path:
    from conveyor_sklearn.datagen import customers

    subprocess.run([CONVEYOR, "init", "proj", "--template", "classification"], cwd=root,
                   check=True, capture_output=True, env=user_environment())
    project = root / "proj"
    customers(rows).to_csv(project / "data" / "customers.csv", index=False)
    return project


def start_run(project: Path) -> subprocess.Popen:
    # The template's schema holds the ranges of its own 3,000 rows: not the point here.
    return subprocess.Popen([CONVEYOR, "run", "--force", "data.schema=null"], cwd=project,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=user_environment())


def conveyor_fit(project: Path, proc: subprocess.Popen | None = None) -> tuple[float, str]:
    """One `conveyor run --force` (or the one started): the train stage's recorded duration
    and its threads line."""
    proc = proc or start_run(project)
    stdout, _ = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"conveyor run failed (exit {proc.returncode})\n{stdout}")
    with sqlite3.connect(project / ".conveyor" / "store.db") as conn:
        (duration,) = conn.execute(
            "SELECT duration FROM stages WHERE name='train' AND cached=0 "
            "ORDER BY started_at DESC LIMIT 1").fetchone()
    line = next((ln.strip() for ln in stdout.splitlines() if "train: threads:" in ln), "")
    return float(duration), line.removeprefix("train: ")


def plain_fit(data: Path, timeout: float) -> float | None:
    """The fit in a plain script with scikit-learn's default threads; None when it timed out."""
    try:
        proc = subprocess.run([sys.executable, "-c", PLAIN_FIT, str(data)], text=True,
                              capture_output=True, env=user_environment(), timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        raise SystemExit(f"the plain fit failed\n{proc.stderr[-2000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def seconds(value: float | None, timeout: float) -> str:
    return f"> {timeout:.0f} s (stopped)" if value is None else f"{value:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-timeout", type=float, default=60.0)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--output", type=Path, default=Path("bench-results/threads.json"))
    args = parser.parse_args(argv)

    print(f"threads benchmark · {len(os.sched_getaffinity(0))} cores · load average "
          f"{load_average()} · {args.rows:,} rows", flush=True)
    load_before = load_average()
    quiet: list[float] = []
    busy: list[float] = []
    lines: dict[str, list[str]] = {"quiet": [], "busy": []}
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-threads-") as tmp:
        project = make_project(Path(tmp), args.rows)
        conveyor_fit(project)  # warm-up: bytecode, page cache
        for rep in range(args.repeat):
            for case in ("quiet", "busy") if rep % 2 == 0 else ("busy", "quiet"):
                if case == "busy":
                    with BusyCore():
                        duration, line = conveyor_fit(project)
                    busy.append(duration)
                else:
                    duration, line = conveyor_fit(project)
                    quiet.append(duration)
                lines[case].append(line)
                print(f"  conveyor run, {case:<5}: train {duration:6.2f} s  ({line})", flush=True)
        # The other case: two `conveyor run` at once on the same machine.
        twin = Path(tmp) / "twin"
        shutil.copytree(project, twin)
        started = [start_run(project), start_run(twin)]
        together = [conveyor_fit(p, proc) for p, proc in zip((project, twin), started,
                                                              strict=True)]
        for duration, line in together:
            print(f"  conveyor run, two at once: train {duration:6.2f} s  ({line})", flush=True)
        baseline: dict[str, float | None] = {}
        if not args.no_baseline:
            data = project / "data" / "customers.csv"
            baseline["quiet"] = plain_fit(data, args.baseline_timeout)
            print(f"  plain script, quiet: fit {seconds(baseline['quiet'], args.baseline_timeout)}",
                  flush=True)
            with BusyCore():
                baseline["busy"] = plain_fit(data, args.baseline_timeout)
            print(f"  plain script, busy : fit {seconds(baseline['busy'], args.baseline_timeout)}",
                  flush=True)

    quiet_s, busy_s = statistics.median(quiet), statistics.median(busy)
    ratio = busy_s / quiet_s
    met = ratio <= GOAL
    print(f"\nHistGradientBoosting fit in `conveyor run` ({args.rows:,} rows), median of "
          f"{args.repeat}:")
    print(f"  one core kept busy by another process  {busy_s:6.2f} s")
    print(f"  quiet machine                          {quiet_s:6.2f} s")
    print(f"  ratio {ratio:.2f}x · goal <= {GOAL}x: {'met' if met else 'MISSED'}")
    print(f"  two `conveyor run` at once: train {' and '.join(f'{d:.2f} s' for d, _ in together)}")
    if baseline:
        quiet_b, busy_b = baseline.get("quiet"), baseline.get("busy")
        text = (f"{busy_b / quiet_b:.1f}x" if quiet_b and busy_b
                else "n/a (stopped)" if quiet_b else "n/a")
        print(f"  without Conveyor (plain script, default threads): busy "
              f"{seconds(busy_b, args.baseline_timeout)}, quiet "
              f"{seconds(quiet_b, args.baseline_timeout)}, ratio {text}")
    print(f"  load average {load_before} -> {load_average()}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "rows": args.rows, "repeat": args.repeat, "cores": len(os.sched_getaffinity(0)),
        "quiet_s": quiet, "busy_s": busy, "quiet_median_s": quiet_s, "busy_median_s": busy_s,
        "ratio": ratio, "goal": f"<= {GOAL}x", "met": met, "threads_lines": lines,
        "two_at_once_s": [d for d, _ in together],
        "baseline_plain_s": baseline, "baseline_timeout_s": args.baseline_timeout,
        "load_average": f"{load_before} -> {load_average()}"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
