"""`POST /recommend` under load, side by side with the same requests scored in-process.

    .venv/bin/python tests/bench/bench_recommend.py --json bench-results/recommend.json
    .venv/bin/python tests/bench/bench_recommend.py --quick      # a check of the harness

A seeded synthetic catalogue (10,000 items in 20 categories, 100,000 users who each prefer one
category and pick items in it by a Zipf-like popularity, about 10 interactions each; numpy
only, a second or two: the retail simulator is built for realism, not this scale) is written
to a temporary recommender project, and an ALS model is trained, evaluated and registered by
the real CLI (`conveyor run recsys.model=als`). Then k=10 slates are asked for two ways:

  in-process  `model.recommend(user_id, 10)` in a loop on the model `conveyor.api.load_model`
              gives (per-call p50/p99, calls/s): the floor, no HTTP and no JSON
  http        `conveyor serve` (BentoML, its defaults: the slate log on), driven by wrk (one
              thread, keep-alive, closed loop) at concurrency 1 (p50/p99) and 32 (requests/s,
              p99); a Lua script draws the user ids, 5% of them unknown (the fallback)

Both draw user ids from the same distribution: uniform over 105,000 ids of which the last
5,000 are unknown. Runs alternate --repeat times; medians are reported (requests and errors
summed). Every process gets OMP_NUM_THREADS=1. The table and bench-results/recommend.json
(with .md) are written at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_serve import (
    BIN,
    RESULTS,
    WRK_REPORT,
    Server,
    check,
    load_arguments,
    load_average,
    load_setup,
    median_run,
    ms,
    wrk,
)
from conveyor.testing import free_port

SEED = 5
USERS, ITEMS, CATEGORIES = 100_000, 10_000, 20
UNKNOWN = 5_000  # ids USERS .. USERS + UNKNOWN - 1 were never seen: the fallback
K = 10

CONFIG = """\
defaults:
  - conveyor/defaults
  - pipeline: recommend
  - _self_
project: bench
recsys:
  source: data/interactions.parquet
  event_column: null
  k: 10
  model: als
  als: {factors: 32, iterations: 8}
  split: {method: temporal, test_fraction: 0.1}
evaluate:
  metrics: [ndcg@10, hit_rate@10]
"""

# Each request asks for a user drawn uniformly from 0 .. USERS + UNKNOWN - 1.
WRK_SCRIPT = """\
math.randomseed(%(seed)d)
local headers = {["Content-Type"] = "application/json"}
request = function()
  local user = math.random(0, %(last)d)
  return wrk.format("POST", nil, headers,
                    string.format('{"user_id": %%d, "k": %(k)d, "exclude_seen": true}', user))
end
response = function(status, headers, body)
  if status ~= 200 then io.write("unexpected ", status, " ", body, "\\n") end
end
"""


def interactions(users: int = USERS, items: int = ITEMS, seed: int = SEED) -> Any:
    """About 10 interactions per user: a favourite category each (80% of their picks), items
    within a category by a Zipf-like popularity, timestamps over 60 days."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    per_user = rng.poisson(9, users) + 1
    user = np.repeat(np.arange(users), per_user)
    favourite = rng.integers(0, CATEGORIES, users)[user]
    category = np.where(rng.random(len(user)) < 0.8, favourite,
                        rng.integers(0, CATEGORIES, len(user)))
    size = items // CATEGORIES
    rank = np.minimum((rng.pareto(1.2, len(user)) * 3).astype(np.int64), size - 1)
    item = category * size + rng.permutation(size)[rank]  # popular ranks spread over ids
    start = np.datetime64("2026-01-05T00:00:00", "s")
    seconds = rng.integers(0, 60 * 86400, len(user))
    return pd.DataFrame({"user_id": user, "item_id": item,
                         "timestamp": start + seconds.astype("timedelta64[s]"),
                         "weight": np.where(rng.random(len(user)) < 0.2, 5.0, 1.0)})


def make_project(root: Path, env: dict[str, str]) -> tuple[Path, float, float]:
    """The project, and the seconds spent generating the data and in `conveyor run`."""
    project = root / "bench"
    (project / "data").mkdir(parents=True)
    started = time.perf_counter()
    interactions().to_parquet(project / "data" / "interactions.parquet", index=False)
    generated = time.perf_counter() - started
    (project / "conveyor.yaml").write_text(CONFIG)
    started = time.perf_counter()
    check([str(BIN / "conveyor"), "run"], project, env)
    return project, generated, time.perf_counter() - started


def asked_users(count: int, seed: int = SEED) -> list[int]:
    import numpy as np

    return np.random.default_rng(seed).integers(0, USERS + UNKNOWN, count).tolist()


def in_process(project: Path, seconds: float) -> dict[str, Any]:
    """`model.recommend` in a loop for `seconds` over the same draw of user ids."""
    from conveyor import api

    model = api.load_model(project, "bench").model
    users = asked_users(200_000)
    for user in users[:2000]:  # warm-up, as the server's wrk warm-up
        model.recommend(user, K, exclude_seen=True)
    times: list[float] = []
    fallbacks = 0
    end = time.perf_counter() + seconds
    for user in users:
        start = time.perf_counter()
        slate = model.recommend(user, K, exclude_seen=True)
        times.append(time.perf_counter() - start)
        fallbacks += slate.fallback
        if start > end:
            break
    return {"calls": len(times), "p50_us": statistics.median(times) * 1e6,
            "p99_us": statistics.quantiles(times, n=100)[98] * 1e6,
            "calls_per_s": len(times) / sum(times), "fallback_share": fallbacks / len(times),
            "model": repr(model)}


def table(figures: dict[str, Any]) -> list[str]:
    floor, c1, c32 = figures["in_process"], figures["http"]["c1"], figures["http"]["c32"]
    return [
        "| k=10 slates | p50 ms | p99 ms | per second | errors |",
        "|---|---|---|---|---|",
        f"| in-process model.recommend | {ms(floor['p50_us'])} | {ms(floor['p99_us'])} | "
        f"{floor['calls_per_s']:.0f} calls/s | - |",
        f"| conveyor serve POST /recommend, c=1 | {ms(c1['p50_us'])} | {ms(c1['p99_us'])} | "
        f"{c1['rps']:.0f} req/s | {c1['errors']} of {c1['requests']} |",
        f"| conveyor serve POST /recommend, c=32 | {ms(c32['p50_us'])} | {ms(c32['p99_us'])} | "
        f"{c32['rps']:.0f} req/s | {c32['errors']} of {c32['requests']} |",
        "",
        f"http / in-process: c=1 p50 {c1['p50_us'] / floor['p50_us']:.0f}x, c=1 p99 "
        f"{c1['p99_us'] / floor['p99_us']:.0f}x; c=32 throughput "
        f"{c32['rps'] / floor['calls_per_s']:.2f}x the in-process calls/s "
        f"({floor['fallback_share']:.1%} of the users asked for were unknown: the fallback)",
    ]


def main(argv: list[str] | None = None) -> int:
    args = load_arguments(__doc__, RESULTS / "recommend.json", seconds32=15.0).parse_args(argv)
    env = load_setup(args)
    load_before = load_average()
    root = Path(tempfile.mkdtemp(prefix="conveyor-bench-recommend-"))
    print(f"recommend benchmark · {os.cpu_count()} cores · load average {load_before} · {root}",
          flush=True)
    server = None
    try:
        print(f"generating {USERS:,} users x {ITEMS:,} items and training ALS (conveyor run) ...",
              flush=True)
        project, generated_s, run_s = make_project(root, env)
        print(f"  data in {generated_s:.1f} s, conveyor run in {run_s:.1f} s", flush=True)
        script = root / "recommend.lua"
        script.write_text(WRK_SCRIPT % {"seed": SEED, "last": USERS + UNKNOWN - 1, "k": K}
                          + WRK_REPORT)
        server = Server("conveyor", [str(BIN / "conveyor"), "serve", "--port",
                                     str(port := free_port())], project, env, port)
        server.wait_ready()
        wrk(server, script, "", 4, seconds=2, path="/recommend")  # warm-up
        print("in-process ...", flush=True)
        figures: dict[str, Any] = {"in_process": in_process(project, args.seconds)}
        runs: dict[str, list] = {"c1": [], "c32": []}
        for rep in range(args.repeat):
            for name, connections, seconds in (("c1", 1, args.seconds),
                                               ("c32", 32, args.seconds32)):
                print(f"  http c={connections} {seconds:.0f}s (run {rep + 1}) ...", flush=True)
                runs[name].append(wrk(server, script, "", connections, seconds=seconds,
                                      path="/recommend"))
        figures["http"] = {name: median_run(found) for name, found in runs.items()}
        exit_code = server.stop()
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    meta = {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(),
            "load_before": load_before, "load_after": load_average(), "quick": args.quick,
            "users": USERS, "items": ITEMS, "unknown_users": UNKNOWN, "k": K, "seed": SEED,
            "data_seconds": generated_s, "conveyor_run_seconds": run_s,
            "load_generator": "wrk 4.1 (-t1, keep-alive, closed loop)", "omp_threads": 1,
            "repeat": args.repeat, "seconds_c32": args.seconds32, "seconds_c1": args.seconds,
            "conveyor_exit_code": exit_code}
    lines = table(figures)
    lines.append(f"load average {load_before} -> {meta['load_after']} on {os.cpu_count()} cores "
                 "shared with other work: figures are noisy when it is above 1")
    print("\n" + "\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "figures": figures}, indent=2))
    args.json.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.json} and {args.json.with_suffix('.md').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
