"""An 8-job sweep on a local Ray cluster beside Hydra's joblib launcher, standalone:
`.venv/bin/python tests/bench/bench_ray_sweep.py [--jobs 8] [--cpus 2] [--output FILE]`.

The same project (`conveyor init`'s classification template: load, validate, split, train a
HistGradientBoosting model, evaluate, register) and the same overrides
(`model.params.max_depth=1,...,8`), each launcher on a fresh copy, so no job finds another
sweep's cached results (jobs of one sweep share the cached load/validate/split, alike for both):

* joblib: `hydra/launcher=joblib`, its default n_jobs (the machine's cores), processes forked
  by loky on this machine;
* Ray: `hydra/launcher=ray_cluster` (conveyor-ray's preset) on a cluster `ray start --head`
  started for the benchmark on 127.0.0.1 with `--cpus` CPUs, one CPU per job; the cluster's
  start-up is timed apart (it is paid once per cluster, not per sweep).

Reported: the sweep's wall time (the whole `conveyor run --multirun`, summary included), the
per-job time (each run's recorded duration: mean and max), and Ray's wall time over joblib's.
Needs the venv of `make install` (conveyor, conveyor-ray, hydra-joblib-launcher).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
CONVEYOR = str(BIN / "conveyor")


def sweep(project: Path, launcher: str, jobs: int, env: dict[str, str]) -> dict[str, Any]:
    depths = ",".join(str(d) for d in range(1, jobs + 1))
    started = time.perf_counter()
    result = subprocess.run([CONVEYOR, "run", "--multirun", f"hydra/launcher={launcher}",
                             f"model.params.max_depth={depths}"], cwd=project, text=True,
                            capture_output=True, env={**os.environ, **env})
    wall = time.perf_counter() - started
    if result.returncode not in (0, 1) or f"sweep: {jobs} jobs" not in result.stdout:
        raise SystemExit(f"the {launcher} sweep failed ({result.returncode}):\n"
                         f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    runs = json.loads(subprocess.run([CONVEYOR, "runs", "list", "--json"], cwd=project,
                                     text=True, capture_output=True, check=True).stdout)
    durations = [float(r["duration"]) for r in runs]
    if len(runs) != jobs:
        raise SystemExit(f"the {launcher} sweep recorded {len(runs)} runs, not {jobs}")
    return {"launcher": launcher, "jobs": jobs, "wall_s": round(wall, 2),
            "job_mean_s": round(statistics.mean(durations), 2),
            "job_max_s": round(max(durations), 2),
            "statuses": sorted({r["status"] for r in runs})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray cluster")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    from conveyor_ray.testing import ray_head

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        template = Path(tmp) / "template"
        template.mkdir()
        subprocess.run([CONVEYOR, "init", "shop"], cwd=template, check=True,
                       capture_output=True)
        copies = {}
        for name in ("joblib", "ray"):
            copies[name] = Path(tmp) / name / "shop"
            shutil.copytree(template / "shop", copies[name])
        print(f"sweep of {args.jobs} jobs (model.params.max_depth=1..{args.jobs}), "
              f"{os.cpu_count()} cores", flush=True)
        joblib = sweep(copies["joblib"], "joblib", args.jobs, {})
        print(f"joblib: {joblib}", flush=True)
        started = time.perf_counter()
        with ray_head(num_cpus=args.cpus) as head:
            start_s = time.perf_counter() - started
            print(f"ray cluster started in {start_s:.1f} s at {head.address}", flush=True)
            ray = sweep(copies["ray"], "ray_cluster", args.jobs, head.env)
            ray["cluster_start_s"] = round(start_s, 1)
        print(f"ray:    {ray}", flush=True)
    figures = {"joblib": joblib, "ray": ray,
               "ray_over_joblib_wall": round(ray["wall_s"] / joblib["wall_s"], 2),
               "ray_over_joblib_job_mean": round(ray["job_mean_s"] / joblib["job_mean_s"], 2)}
    print(f"Ray / joblib: wall {figures['ray_over_joblib_wall']}x, "
          f"per job {figures['ray_over_joblib_job_mean']}x")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
