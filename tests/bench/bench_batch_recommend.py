"""`conveyor recommend --users FILE` on 100,000 users over a 10,000-item ALS model.

    .venv/bin/python tests/bench/bench_batch_recommend.py [--json bench-results/batch_recommend.json]

The catalogue and interactions are bench_recommend's (seeded, numpy only); the ALS model is
trained and registered by the real CLI. The users file holds 100,000 ids: 95,000 the model
knows and 5,000 it never saw (the fallback), shuffled, as Parquet. The command is run --repeat
times (k=10, exclude_seen); the median of its own users/s (reading the model and the file
excluded) and of the whole command's wall time are reported, beside the floor: the same users
through `model.recommend` one at a time in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_recommend import UNKNOWN, USERS, K, make_project
from bench_serve import BIN, check

ASKED = 100_000


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    root = Path(tempfile.mkdtemp(prefix="conveyor-bench-batch-recommend-"))
    try:
        print("training ALS on 100,000 users x 10,000 items (conveyor run) ...", flush=True)
        project, _, run_s = make_project(root, env)
        rng = np.random.default_rng(7)
        users = np.concatenate([rng.choice(USERS, ASKED - UNKNOWN, replace=False),
                                np.arange(USERS, USERS + UNKNOWN)])
        rng.shuffle(users)
        pd.DataFrame({"user_id": users}).to_parquet(project / "users.parquet", index=False)
        runs = []
        for rep in range(args.repeat):
            started = time.perf_counter()
            out = check([str(BIN / "conveyor"), "recommend", "--users", "users.parquet", "-o",
                         "slates.parquet", "--k", str(K), "--json"], project, env)
            wall = time.perf_counter() - started
            summary = json.loads(out)
            runs.append({"users_per_s": summary["users_per_second"], "wall_s": wall,
                         "fallback": summary["fallback"], "rows": summary["rows_written"]})
            print(f"  run {rep + 1}: {summary['users_per_second']:,} users/s "
                  f"(command {wall:.1f} s wall, {summary['rows_written']:,} rows)", flush=True)
        from conveyor import api

        model = api.load_model(project, "bench").model
        sample = users[:20_000].tolist()
        started = time.perf_counter()
        for user in sample:
            model.recommend(user, K, exclude_seen=True)
        floor = len(sample) / (time.perf_counter() - started)
        figures = {"users": ASKED, "items": 10_000, "k": K, "train_s": run_s,
                   "users_per_s": statistics.median(r["users_per_s"] for r in runs),
                   "wall_s": statistics.median(r["wall_s"] for r in runs),
                   "fallback": runs[0]["fallback"], "recommend_loop_users_per_s": floor,
                   "cores": os.cpu_count()}
        print(f"conveyor recommend: {figures['users_per_s']:,.0f} users/s (median), "
              f"{figures['wall_s']:.1f} s for the whole command; model.recommend one by one: "
              f"{floor:,.0f} users/s", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
