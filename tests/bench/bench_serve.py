"""`conveyor serve` under load, side by side in one run with its floor and its peer.

    .venv/bin/python tests/bench/bench_serve.py --json bench-results/serve.json
    .venv/bin/python tests/bench/bench_serve.py --quick      # a check of the harness

A 20-feature HistGradientBoosting classifier (conveyor_sklearn.datagen.wide_classification,
seed 0, a schema from `conveyor schema infer`) is trained with `conveyor run`, then answers
single-record requests three ways:

  floor    the model's in-process predict_proba on a one-row DataFrame (no HTTP at all)
  compiled floor  the compiled form's in-process predict_columns on one row (conveyor.compiled:
           ONNX, one intra-op thread), the least a compiled answer can cost
  fastapi  the peer: a minimal FastAPI `async def` endpoint with a pydantic record type, run by
           uvicorn (one process, access log off like ours), the same model object
  conveyor `conveyor serve` (BentoML), its defaults: the compiled form, adaptive batching,
           schema checks, the prediction log on
  python   `conveyor serve` with serve.compiled=false: the Python model (the path before
           issue 18), everything else the same

Load: wrk (C, closed loop, keep-alive, one thread) POSTing the same record, at concurrency 1
for --seconds and at concurrency 32 for --seconds32 (20 s: at least 10,000 requests at the
throughput asked for, the issue's 10,000-request load test); the servers' cases alternate,
a pause of SETTLE_SECONDS before each (the previous server's prediction log flushes then),
--repeat times, and the medians are reported (errors and requests are summed). wrk's latency percentiles are
its own (no coordinated-omission correction: at c=32 they are the latency a client sees).
Every process gets OMP_NUM_THREADS=1. The server's resident memory (the process tree) is read
before and after the c=32 runs.
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

from conveyor.testing import free_port, stop_process

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BIN = Path(sys.executable).parent
RESULTS = REPO / "bench-results"
SEED = 0
# Between cases: the server just measured flushes its prediction log up to serve's
# log_flush_seconds (2 s) after its last request. Without a pause that flush (11,000 rows after a
# c=1 run) lands in the next case's first seconds, on the same 2 cores: it put conveyor's c=1 p99
# at 2.9-3.7 ms where the same server alone measures 1.4-1.6 ms.
SETTLE_SECONDS = 3.0
RSS_GROWTH_BOUND_MB = 50.0  # the "no memory growth beyond a stated bound", per 10k

CONFIG = """\
defaults:
  - conveyor/defaults
  - pipeline: train
  - model: hist_gradient_boosting
  - _self_
project: bench
data:
  source: data/bench.csv
  schema: schema.yaml
  target: target
evaluate:
  metrics: [accuracy, roc_auc]
"""

FASTAPI_APP = '''\
"""The peer: a minimal FastAPI app serving the same model (what one would write by hand)."""
import sys

import pandas as pd
import uvicorn
from conveyor import api
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

project, port = sys.argv[1], int(sys.argv[2])
model = api.load_model(project, "bench").model
Record = type("Record", (BaseModel,), {
    "__annotations__": {name: float for name in model.feature_names_in_},
    "model_config": ConfigDict(extra="forbid")})
app = FastAPI()


@app.post("/predict")
async def predict(records: list[Record]) -> list[dict]:
    frame = pd.DataFrame([r.model_dump() for r in records])
    proba = model.predict_proba(frame)
    classes = [c.item() for c in model.classes_]
    return [{"prediction": classes[row.argmax()], "probabilities": dict(zip(classes, row.tolist()))}
            for row in proba]


@app.get("/readyz")
async def ready() -> str:
    return "ok"


uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")
'''

# wrk's summary as one JSON line (shared by bench_recommend.py's script)
WRK_REPORT = """\
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""
WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
""" + WRK_REPORT


def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def check(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, text=True, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n"
                         f"{done.stderr}")
    return done.stdout


def make_project(root: Path, rows: int, env: dict[str, str]) -> Path:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from conveyor_sklearn.datagen import wide_classification

    project = root / "bench"
    (project / "data").mkdir(parents=True)
    frame = wide_classification(rows, 20, seed=SEED)
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False),
                    project / "data" / "bench.csv")
    (project / "conveyor.yaml").write_text(CONFIG)
    check([str(BIN / "conveyor"), "schema", "infer", "data/bench.csv", "-o", "schema.yaml"],
          project, env)
    check([str(BIN / "conveyor"), "run"], project, env)
    return project


class Server:
    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str],
                 port: int) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = cwd / f"{name}-{port}.log"
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self.log.open("w"),
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.name} not ready in {timeout}s:\n{self.log.read_text()}")

    def rss_mb(self) -> float:
        import psutil

        root = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20

    def stop(self) -> int | None:
        return stop_process(self.process)


def wrk(server: Server, script: Path, body: str, connections: int,
        seconds: float, path: str = "/predict") -> dict[str, Any]:
    """One wrk run of `seconds` against `path` (the script reads BENCH_BODY); a non-200
    answer, a timeout (10 s) or a socket error is an error."""
    env = {**os.environ, "BENCH_BODY": body}
    done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout",
                           "10s", "-s", str(script), f"{server.url}{path}"],
                          env=env, text=True, capture_output=True)
    line = [x for x in done.stdout.splitlines() if x.startswith("BENCH ")]
    if done.returncode != 0 or not line:
        raise SystemExit(f"wrk failed against {server.name}:\n{done.stdout}\n{done.stderr}")
    result = json.loads(line[0][6:])
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def floor(project: Path, record: dict[str, float], seconds: float) -> dict[str, Any]:
    """In-process predict_proba on a one-row frame, sequentially, for `seconds`; and the same
    records 32 at a time (what batching could reach at best)."""
    import pandas as pd
    from conveyor import api

    model = api.load_model(project, "bench").model
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        model.predict_proba(pd.DataFrame.from_records([record]))
        times.append(time.perf_counter() - start)
    batch = [record] * 32
    batches = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds / 2:
        model.predict_proba(pd.DataFrame.from_records(batch))
        batches += 1
    batched = batches * 32 / (time.perf_counter() - start)
    return {"requests": len(times), "p50_us": statistics.median(times) * 1e6,
            "p99_us": statistics.quantiles(times, n=100)[98] * 1e6,
            "rps": len(times) / sum(times), "batched32_records_per_s": batched}


def compiled_floor(project: Path, record: dict[str, float], seconds: float) -> dict[str, Any]:
    """The compiled form's predict_columns on one row, in-process, for `seconds`."""
    import numpy as np
    from conveyor import api

    compiled = api.load_model(project, "bench", compiled=True, threads=1).compiled
    if compiled is None:
        raise SystemExit("the benchmark's model has no compiled form")
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        compiled.predict_columns({k: np.array([v], dtype=np.float64) for k, v in record.items()})
        times.append(time.perf_counter() - start)
    return {"requests": len(times), "p50_us": statistics.median(times) * 1e6,
            "p99_us": statistics.quantiles(times, n=100)[98] * 1e6,
            "rps": len(times) / sum(times)}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {k: statistics.median(r[k] for r in runs) for k in ("p50_us", "p99_us", "rps")}
    out["errors"] = sum(r["errors"] for r in runs)
    out["requests"] = sum(r["requests"] for r in runs)
    out["runs"] = runs
    return out


def ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def table(figures: dict[str, Any]) -> list[str]:
    f, fa, co = figures["floor"], figures["fastapi"], figures["conveyor"]
    cf, py = figures["compiled_floor"], figures["python"]
    rows = [
        "| case | c=1 p50 ms | c=1 p99 ms | c=1 req/s | c=32 p50 ms | c=32 p99 ms | c=32 req/s "
        "| c=32 errors | RSS before -> after c=32 (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| floor: in-process predict_proba | {ms(f['p50_us'])} | {ms(f['p99_us'])} | "
        f"{f['rps']:.0f} | - | - | {f['batched32_records_per_s']:.0f} records/s in batches "
        "of 32 | - | - |",
        f"| compiled floor: in-process predict_columns (ONNX) | {ms(cf['p50_us'])} | "
        f"{ms(cf['p99_us'])} | {cf['rps']:.0f} | - | - | - | - | - |",
    ]
    for name, label in (("fastapi", "peer: FastAPI async + uvicorn (Python model)"),
                        ("python", "conveyor serve, serve.compiled=false (Python model)"),
                        ("conveyor", "conveyor serve (compiled: ONNX)")):
        c1, c32 = figures[name]["c1"], figures[name]["c32"]
        rss = figures[name]["rss_mb"]
        rows.append(f"| {label} | {ms(c1['p50_us'])} | {ms(c1['p99_us'])} | {c1['rps']:.0f} | "
                    f"{ms(c32['p50_us'])} | {ms(c32['p99_us'])} | {c32['rps']:.0f} | "
                    f"{c32['errors']} of {c32['requests']} | {rss[0]:.0f} -> {rss[-1]:.0f} |")
    rows.append("")
    rows.append(f"conveyor / fastapi throughput at c=32: {co['c32']['rps'] / fa['c32']['rps']:.2f}x"
                f" (goal >= 1.0, zero errors); conveyor p99 c=1 {ms(co['c1']['p99_us'])} ms "
                f"(goal < 3), c=32 {ms(co['c32']['p99_us'])} ms (goal < 100); conveyor c=1 p50 "
                f"{co['c1']['p50_us'] / cf['p50_us']:.1f}x the compiled floor's")
    rows.append(f"compiled / Python path (both conveyor serve): c=32 throughput "
                f"{co['c32']['rps'] / py['c32']['rps']:.2f}x (goal >= 3), c=1 p50 "
                f"{py['c1']['p50_us'] / co['c1']['p50_us']:.1f}x and p99 "
                f"{py['c1']['p99_us'] / co['c1']['p99_us']:.1f}x lower; compiled floor "
                f"{f['p50_us'] / cf['p50_us']:.0f}x below the scikit-learn floor (p50)")
    return rows


def write_results(path: Path, lines: list[str], meta: dict[str, Any], goals: dict[str, Any],
                  figures: dict[str, Any]) -> None:
    """Print the table (and the load the figures were taken under); write `path` (JSON) and
    its .md beside it (bench_predict.py's too)."""
    lines.append(f"load average {meta['load_before']} -> {meta['load_after']} on "
                 f"{os.cpu_count()} cores shared with other work: figures are noisy when it is "
                 "above 1")
    print("\n" + "\n".join(lines))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "goals": goals, "figures": figures}, indent=2))
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"\nwrote {path} and {path.with_suffix('.md').name}")


def load_arguments(doc: str, json_path: Path, seconds32: float) -> argparse.ArgumentParser:
    """The options every wrk benchmark takes (bench_recommend.py's too)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs: checks the harness")
    parser.add_argument("--repeat", type=int, default=2, help="runs per case and concurrency")
    parser.add_argument("--seconds32", type=float, default=seconds32,
                        help="length of a c=32 run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a c=1 run")
    parser.add_argument("--json", type=Path, default=json_path)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser


def load_setup(args: argparse.Namespace) -> dict[str, str]:
    """--quick applied, wrk checked, one OpenMP thread here; the environment for children."""
    if args.quick:
        args.repeat, args.seconds32, args.seconds = 1, 3.0, 2.0
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (make wrk)")
    os.environ["OMP_NUM_THREADS"] = "1"
    return {**os.environ, "OMP_NUM_THREADS": "1", "BENTOML_DO_NOT_TRACK": "True",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def main(argv: list[str] | None = None) -> int:
    parser = load_arguments(__doc__, RESULTS / "serve.json", seconds32=20.0)
    parser.add_argument("--rows", type=int, default=20_000, help="training rows")
    args = parser.parse_args(argv)
    env = load_setup(args)
    load_before = load_average()
    root = Path(tempfile.mkdtemp(prefix="conveyor-bench-serve-"))
    print(f"serve benchmark · {os.cpu_count()} cores · load average {load_before} · {root}",
          flush=True)
    servers: list[Server] = []
    try:
        print("training the model ...", flush=True)
        project = make_project(root, args.rows, env)
        import pandas as pd

        row = pd.read_csv(project / "data" / "bench.csv", nrows=1).drop(columns=["target"])
        record = {k: float(v) for k, v in row.iloc[0].items()}
        body = json.dumps([record])
        script = root / "post.lua"
        script.write_text(WRK_SCRIPT)
        (root / "fastapi_app.py").write_text(FASTAPI_APP)
        fastapi = Server("fastapi", [str(BIN / "python"), str(root / "fastapi_app.py"),
                                     str(project), str(port := free_port())], root, env, port)
        conveyor = Server("conveyor", [str(BIN / "conveyor"), "serve", "--port",
                                       str(port := free_port())], project, env, port)
        python = Server("python", [str(BIN / "conveyor"), "serve", "--port",
                                   str(port := free_port()), "+serve.compiled=false"],
                        project, env, port)
        servers = [fastapi, python, conveyor]
        for server in servers:
            server.wait_ready()
            wrk(server, script, body, 4, seconds=2)  # warm-up
        import httpx

        served = {s.name: httpx.get(f"{s.url}/metadata", timeout=10).json()["inference"]
                  for s in (conveyor, python)}
        if served["conveyor"]["served_by"] != "onnx" or served["python"]["served_by"] != "python":
            raise SystemExit(f"not served as the cases need: {served}")
        print("floor (in-process) ...", flush=True)
        figures: dict[str, Any] = {"floor": floor(project, record, args.seconds),
                                   "compiled_floor": compiled_floor(project, record,
                                                                    args.seconds)}
        runs: dict[str, dict[str, list]] = {s.name: {"c1": [], "c32": [], "rss": []}
                                           for s in servers}
        for rep in range(args.repeat):
            for server in servers:
                print(f"  {server.name} c=1 {args.seconds:.0f}s (run {rep + 1}) ...", flush=True)
                time.sleep(SETTLE_SECONDS)
                runs[server.name]["c1"].append(wrk(server, script, body, 1,
                                                   seconds=args.seconds))
            for server in servers:
                print(f"  {server.name} c=32 {args.seconds32:.0f}s (run {rep + 1}) ...",
                      flush=True)
                runs[server.name]["rss"].append(server.rss_mb())
                time.sleep(SETTLE_SECONDS)
                runs[server.name]["c32"].append(wrk(server, script, body, 32,
                                                    seconds=args.seconds32))
                runs[server.name]["rss"].append(server.rss_mb())
        for server in servers:
            mine = runs[server.name]
            figures[server.name] = {"c1": median_run(mine["c1"]), "c32": median_run(mine["c32"]),
                                    "rss_mb": mine["rss"]}
        exits = {s.name: s.stop() for s in servers}
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    co = figures["conveyor"]
    growth = co["rss_mb"][-1] - co["rss_mb"][1]  # after the first 10k, to after the last
    meta = {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(),
            "load_before": load_before, "load_after": load_average(), "quick": args.quick,
            "load_generator": "wrk 4.1 (-t1, keep-alive, closed loop)", "omp_threads": 1,
            "repeat": args.repeat, "seconds_c32": args.seconds32, "seconds_c1": args.seconds,
            "conveyor_exit_code": exits.get("conveyor")}
    goals = {
        "c32_throughput_vs_fastapi": co["c32"]["rps"] / figures["fastapi"]["c32"]["rps"],
        "c32_zero_errors": co["c32"]["errors"] == 0,
        "c32_min_requests_per_run": min(r["requests"] for r in co["c32"]["runs"]),
        "c1_p99_under_10ms": co["c1"]["p99_us"] < 10_000,
        "c1_p99_under_3ms": co["c1"]["p99_us"] < 3_000,
        "c32_throughput_vs_python_path": co["c32"]["rps"] / figures["python"]["c32"]["rps"],
        "c32_3x_python_path": co["c32"]["rps"] >= 3 * figures["python"]["c32"]["rps"],
        "python_path_c32_errors": figures["python"]["c32"]["errors"],
        "c32_p99_under_100ms": co["c32"]["p99_us"] < 100_000,
        "rss_growth_mb_after_warm": growth,
        "rss_growth_within_bound": growth < RSS_GROWTH_BOUND_MB,
    }
    lines = table(figures)
    lines.append(f"conveyor RSS growth over the later c=32 runs: {growth:+.1f} MB (bound "
                 f"{RSS_GROWTH_BOUND_MB:.0f} MB); exit code on SIGTERM "
                 f"{exits.get('conveyor')}")
    write_results(args.json, lines, meta, goals, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
