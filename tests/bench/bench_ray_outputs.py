"""A stage on Ray returning a large frame: the driver's memory and the run's time, standalone:
`.venv/bin/python tests/bench/bench_ray_outputs.py [--mb 200] [--baseline DIR] [--output FILE]`.

One stage (`ray.stages.frame`) makes a pandas frame of `--mb` MB of float64 in a Ray task on a
cluster `ray start --head` started for the benchmark on 127.0.0.1; `conveyor run` is the
driver. Reported: the run's wall time, the driver's peak resident memory (the `conveyor run`
process's ru_maxrss) and the task's own line (time in the task, of it storing the outputs).

Since the task stores its outputs itself (`conveyor.StoredOutputs`), the frame no longer travels
through Ray's object store to the driver, which stored it again. `--baseline DIR` runs the same
with the code of another checkout first (its `framework` and `plugins/ray/src` ahead on
PYTHONPATH, for the cluster and the driver alike), e.g. a `git worktree` of the commit before:
the figures side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
CONVEYOR = str(BIN / "conveyor")

STAGES = '''
import numpy as np
import pandas as pd

import conveyor


def _frame(ctx):
    rows = int(ctx.settings["mb"]) * 1_000_000 // (8 * 5)
    data = np.random.default_rng(0).random((rows, 5))
    return {"frame": pd.DataFrame(data, columns=[f"c{i}" for i in range(5)])}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("local.frame", _frame))
'''


def measure(label: str, mb: int, env: dict[str, str]) -> dict[str, Any]:
    from conveyor_ray.testing import ray_head

    saved = dict(os.environ)
    os.environ.update(env)  # the cluster's workers run the same code as the driver
    try:
        return _measure(label, mb, env, ray_head)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _measure(label: str, mb: int, env: dict[str, str], ray_head: Any) -> dict[str, Any]:
    import yaml

    with tempfile.TemporaryDirectory(prefix="bench-ray-out-") as tmp, \
            ray_head(num_cpus=2) as head:
        project = Path(tmp) / "big"
        project.mkdir()
        config = {"defaults": ["conveyor/defaults", "_self_"], "project": "big",
                  "plugins": {"local": ["frame_stages"]},
                  "pipeline": {"frame": {"uses": "local.frame", "mb": mb}},
                  "ray": {"stages": {"frame": {"num_cpus": 1}}}}
        (project / "conveyor.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (project / "frame_stages.py").write_text(STAGES)
        out = Path(tmp) / "out.txt"
        started = time.perf_counter()
        with open(out, "w") as handle:
            process = subprocess.Popen([CONVEYOR, "run"], cwd=project, stdout=handle,
                                       stderr=subprocess.STDOUT,
                                       env={**os.environ, **env, **head.env})
            _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        text = out.read_text()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{label}: conveyor run failed:\n{text[-3000:]}")
        task = next((line.strip() for line in text.splitlines() if "on Ray node" in line), "")
        stored = sum(p.stat().st_size for p in (project / ".conveyor" / "artifacts").rglob("*")
                     if p.is_file())
    return {"label": label, "frame_mb": mb, "wall_s": round(wall, 2),
            "driver_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "stored_mb": round(stored / 1e6, 1), "task": task.split("frame: ", 1)[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the frame, MB")
    parser.add_argument("--baseline", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    results = []
    if args.baseline is not None:
        base = args.baseline.resolve()
        path = os.pathsep.join([str(base / "framework"), str(base / "plugins" / "ray" / "src")])
        results.append(measure(f"baseline ({base.name})", args.mb,
                               {"PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}))
        print(json.dumps(results[-1]), flush=True)
    results.append(measure("this checkout", args.mb, {}))
    print(json.dumps(results[-1]), flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
