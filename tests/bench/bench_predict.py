"""`conveyor predict` on 1M and 10M rows with the compiled form, beside the scikit-learn
pipeline on the same rows, in one run.

    .venv/bin/python tests/bench/bench_predict.py --rows 1000000
    .venv/bin/python tests/bench/bench_predict.py --rows 1000000 --big-rows 10000000 --json ...
    .venv/bin/python tests/bench/bench_predict.py --quick        # a check of the harness

The model is bench_serve.py's (a 20-feature HistGradientBoosting classifier trained with
`conveyor run`; its compiled form, ONNX, is built and checked when it is registered). The data
is a Parquet file of `--rows` rows (and one of `--big-rows`) written in row groups of 100,000,
so neither the data nor the scoring ever needs the whole file in memory. Cases, each on the
same file:

  sklearn   the pipeline's predict_proba in-process, on the same chunks read by pyarrow
            (`to_pandas`, then predict_proba: what scoring costs with no framework at all);
            then its final estimator alone, timed on rows its earlier steps prepared: the
            model's own arithmetic, which bounds what any scorer evaluating the same trees at
            scikit-learn's speed could gain
  python    `conveyor predict --no-compiled` (the Python model, the command's whole work)
  onnx      `conveyor predict` (the compiled form: columns straight from the pyarrow chunks)

Rows/s of a command are the rows over its wall time, start-up included; its peak RSS is the
child's ru_maxrss. Every process gets OMP_NUM_THREADS=1 (and the compiled model one intra-op
thread) so the cases compare the work, not the cores they take.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_serve import BIN, RESULTS, load_average, make_project, write_results  # noqa: E402

GROUP_ROWS = 100_000
CHUNK_ROWS = 100_000


def write_rows(path: Path, rows: int, columns: int = 20) -> None:
    """`rows` rows of wide_classification's features (with an id column), written a row group
    at a time with fresh random numbers: memory stays one group whatever `rows`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    writer = None
    done = 0
    while done < rows:
        n = min(GROUP_ROWS, rows - done)
        data = {f"f{i:02d}": rng.normal(size=n) for i in range(columns)}
        table = pa.table(data)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        done += n
    writer.close()


def sklearn_floor(project: Path, data: Path, chunk_rows: int) -> dict[str, Any]:
    """predict_proba of the Python pipeline on the file's chunks, in-process; then, on the same
    chunks, its steps timed apart: what the trees alone cost (the final estimator on rows the
    earlier steps already prepared) is the least any scorer of this model could take."""
    import pyarrow.parquet as pq
    from conveyor import api

    model = api.load_model(project, "bench").model
    rows = 0
    started = time.perf_counter()
    for batch in pq.ParquetFile(data).iter_batches(batch_size=chunk_rows):
        model.predict_proba(batch.to_pandas())
        rows += batch.num_rows
    seconds = time.perf_counter() - started
    trees = 0.0
    for batch in pq.ParquetFile(data).iter_batches(batch_size=chunk_rows):
        prepared = model[:-1].transform(batch.to_pandas())
        start = time.perf_counter()
        model[-1].predict_proba(prepared)
        trees += time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
            "estimator": type(model[-1]).__name__, "estimator_seconds": trees,
            "estimator_rows_per_s": rows / trees}


PROBE = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
         "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
         "print('BENCH', done.returncode, time.perf_counter() - t, "
         "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
         "print(done.stdout); print(done.stderr, file=sys.stderr)")


def predict(project: Path, data: Path, env: dict[str, str], *extra: str) -> dict[str, Any]:
    """`conveyor predict` on `data`: wall seconds, peak RSS, rows/s, and what scored."""
    output = data.with_name(f"{data.stem}.{'python' if extra else 'onnx'}.parquet")
    done = subprocess.run([sys.executable, "-c", PROBE, str(BIN / "conveyor"), "predict",
                           "--data", str(data), "-o", str(output), "--chunk-rows",
                           str(CHUNK_ROWS), *extra], cwd=project, env=env, text=True,
                          capture_output=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), "")
    parts = line.split()
    if len(parts) != 4 or parts[1] != "0":
        raise SystemExit(f"conveyor predict failed:\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    seconds, peak_kb = float(parts[2]), int(parts[3])
    scored = re.search(r"scored ([\d,]+) rows in \d+ chunk\(s\), ([\d.]+)s \(([\d,]+) rows/s, "
                       r"scored by ([^)]*\)?)\)", done.stdout)
    rows = int(scored[1].replace(",", "")) if scored else 0
    output.unlink(missing_ok=True)
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
            "scoring_seconds": float(scored[2]) if scored else None,
            "scoring_rows_per_s": int(scored[3].replace(",", "")) if scored else None,
            "scored_by": scored[4] if scored else None, "peak_rss_mb": peak_kb / 1024}


def table(figures: dict[str, Any]) -> list[str]:
    rows = ["| file | case | rows/s (wall, start-up included) | rows/s (scoring only) | "
            "seconds | peak RSS MB | scored by |", "|---|---|---|---|---|---|---|"]
    for size, cases in figures.items():
        for name, f in cases.items():
            rows.append(f"| {size} | {name} | {f['rows_per_s']:,.0f} | "
                        f"{(f.get('scoring_rows_per_s') or f['rows_per_s']):,.0f} | "
                        f"{f['seconds']:.1f} | {f.get('peak_rss_mb') or 0:.0f} | "
                        f"{f.get('scored_by') or 'in-process predict_proba'} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the main file")
    parser.add_argument("--big-rows", type=int, default=0,
                        help="rows of the large file (onnx only: rows/s and peak RSS), 0: none")
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="small files: checks the harness")
    parser.add_argument("--json", type=Path, default=RESULTS / "predict.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.big_rows = 200_000, min(args.big_rows, 400_000)
    os.environ["OMP_NUM_THREADS"] = "1"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CONVEYOR_INFERENCE_THREADS": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    load_before = load_average()
    root = Path(tempfile.mkdtemp(prefix="conveyor-bench-predict-"))
    print(f"predict benchmark · {os.cpu_count()} cores · load average {load_before} · {root}",
          flush=True)
    figures: dict[str, Any] = {}
    try:
        print("training the model ...", flush=True)
        project = make_project(root, args.train_rows, env)
        data = root / "rows.parquet"
        print(f"writing {args.rows:,} rows ...", flush=True)
        write_rows(data, args.rows)
        main_figures: dict[str, Any] = {}
        print("  sklearn predict_proba in-process ...", flush=True)
        main_figures["sklearn"] = sklearn_floor(project, data, CHUNK_ROWS)
        print("  conveyor predict --no-compiled ...", flush=True)
        main_figures["python"] = predict(project, data, env, "--no-compiled")
        print("  conveyor predict (compiled) ...", flush=True)
        main_figures["onnx"] = predict(project, data, env)
        figures[f"{args.rows:,} rows"] = main_figures
        data.unlink()
        if args.big_rows:
            big = root / "big.parquet"
            print(f"writing {args.big_rows:,} rows ...", flush=True)
            write_rows(big, args.big_rows)
            print("  conveyor predict (compiled) ...", flush=True)
            figures[f"{args.big_rows:,} rows"] = {"onnx": predict(project, big, env)}
            big.unlink()
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    main_figures = figures[f"{args.rows:,} rows"]
    onnx, python, floor = main_figures["onnx"], main_figures["python"], main_figures["sklearn"]
    goals = {"onnx_vs_sklearn_rows_per_s": onnx["rows_per_s"] / floor["rows_per_s"],
             "onnx_vs_python_command_rows_per_s": onnx["rows_per_s"] / python["rows_per_s"],
             "goal_10x_sklearn": onnx["rows_per_s"] >= 10 * floor["rows_per_s"]}
    goals["sklearn_share_in_estimator"] = floor["estimator_seconds"] / floor["seconds"]
    goals["ceiling_vs_sklearn_if_only_the_estimator_cost"] = (floor["seconds"]
                                                             / floor["estimator_seconds"])
    lines = table(figures)
    lines.append("")
    lines.append(f"of scikit-learn's {floor['seconds']:.1f} s, its {floor['estimator']} alone "
                 f"(on rows already prepared) took {floor['estimator_seconds']:.1f} s "
                 f"({floor['estimator_rows_per_s']:,.0f} rows/s): a scorer that spent nothing "
                 f"but that arithmetic, at scikit-learn's speed, would be "
                 f"{goals['ceiling_vs_sklearn_if_only_the_estimator_cost']:.1f}x scikit-learn")
    lines.append(f"conveyor predict (onnx) / scikit-learn predict_proba on the same {args.rows:,} "
                 f"rows: {goals['onnx_vs_sklearn_rows_per_s']:.1f}x (goal >= 10x); / conveyor "
                 f"predict --no-compiled: {goals['onnx_vs_python_command_rows_per_s']:.1f}x")
    if args.big_rows:
        big = figures[f"{args.big_rows:,} rows"]["onnx"]
        goals["peak_rss_growth_mb"] = big["peak_rss_mb"] - onnx["peak_rss_mb"]
        lines.append(f"peak RSS {onnx['peak_rss_mb']:.0f} MB at {args.rows:,} rows, "
                     f"{big['peak_rss_mb']:.0f} MB at {args.big_rows:,} rows "
                     f"({goals['peak_rss_growth_mb']:+.0f} MB)")
    meta = {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(),
            "load_before": load_before, "load_after": load_average(), "quick": args.quick,
            "chunk_rows": CHUNK_ROWS, "omp_threads": 1, "inference_threads": 1}
    write_results(args.json, lines, meta, goals, figures)
    return 0

if __name__ == "__main__":
    sys.exit(main())
