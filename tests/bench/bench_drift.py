"""Drift speed: conveyor-monitor's batch check against a stored reference profile, side by side
with plain numpy/scipy (the peer: `np.histogram` PSI on the reference's quantile bins +
`scipy.stats.ks_2samp`), in one run, with the verdicts compared.

    python tests/bench/bench_drift.py                    # 1M vs 1M rows, then 10M rows
    python tests/bench/bench_drift.py --rows 100000 --big-rows 0 --repeat 1

Data: 20 float64 columns, reference N(0, 1). The current batch: columns 0-4 unchanged, 5-9
shifted by 0.02 sd (KS sees it at 1M rows, PSI does not), 10-14 shifted by 0.5 sd, 15-19
scaled by 1.3: every verdict both ways is exercised.

"ours" is what `conveyor monitor` does per batch once the model version's reference profile
exists: count the batch chunk by chunk (100,000 rows) against the profile (quantile grid of
10,000 per column, 10 PSI bins) and run the psi and ks detectors on the counts. Building the
profile (once per model version) is timed separately. Times are the best of --repeat.

Bounded memory: the --big-rows batch (10M rows by default) is written as Parquet in row groups
and checked by a separate process that reads it in chunks; its peak RSS (VmHWM: everything
the process touched, the interpreter and its imports included) is reported against the 1 GiB
goal. Results go to
bench-results/drift.json as well.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = 20
PSI_THRESHOLD, KS_THRESHOLD = 0.2, 0.05
CHUNK = 100_000


def make(rows: int, seed: int, shifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {}
    for i in range(COLUMNS):
        x = rng.standard_normal(rows)
        if shifted and 5 <= i < 10:
            x += 0.02
        elif shifted and 10 <= i < 15:
            x += 0.5
        elif shifted and i >= 15:
            x *= 1.3
        data[f"f{i:02d}"] = x
    return pd.DataFrame(data)


def plain(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The peer: np.histogram PSI on the reference's deciles, scipy's ks_2samp."""
    from scipy.stats import ks_2samp

    out = {}
    for name in reference.columns:
        ref, cur = reference[name].to_numpy(), current[name].to_numpy()
        edges = np.quantile(ref, np.linspace(0, 1, 11))
        edges[0], edges[-1] = -np.inf, np.inf
        expected = np.maximum(np.histogram(ref, edges)[0] / len(ref), 1e-4)
        actual = np.maximum(np.histogram(cur, edges)[0] / len(cur), 1e-4)
        psi = float(np.sum((actual - expected) * np.log(actual / expected)))
        ks = ks_2samp(ref, cur)
        out[name] = {"psi": psi, "ks_statistic": float(ks.statistic), "ks_p": float(ks.pvalue)}
    return out


class Settings:
    grid, bins, max_categories = 10_000, 10, 100


def build_profile(reference: pd.DataFrame) -> dict[str, Any]:
    from conveyor_monitor import profile as prof

    return {name: prof.profile_column(name, reference[name], Settings()) for name in reference}


def ours(profiles: dict[str, Any], chunks: Any) -> dict[str, dict[str, float]]:
    from conveyor_monitor import detectors
    from conveyor_monitor import profile as prof

    counter = prof.BatchCounter(profiles)
    for chunk in chunks:
        for name in profiles:
            counter.add_numeric(name, chunk[name].to_numpy(dtype=np.float64))
    out = {}
    for name in profiles:
        dist = counter.distributions(name)
        psi = detectors._psi(dist, PSI_THRESHOLD)
        ks = detectors._ks(dist, KS_THRESHOLD)
        out[name] = {"psi": psi.score, "ks_statistic": ks.statistic, "ks_p": ks.score,
                     "grid_error": dist.grid_error}
    return out


def in_chunks(frame: pd.DataFrame) -> Any:
    for start in range(0, len(frame), CHUNK):
        yield frame.iloc[start:start + CHUNK]


def verdicts(result: dict[str, dict[str, float]]) -> dict[str, tuple[bool, bool]]:
    return {n: (r["psi"] >= PSI_THRESHOLD, r["ks_p"] < KS_THRESHOLD) for n, r in result.items()}


def best(repeat: int, work: Any) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return min(times), result


BIG_CHILD = """
import json, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[3])
from bench_drift import Settings, ours
from conveyor_monitor import profile as prof, reading
profiles = prof.load(Path(sys.argv[1])).features
started = time.perf_counter()
result = ours(profiles, reading.read_chunks(Path(sys.argv[2]), chunk_rows=100_000))
seconds = time.perf_counter() - started
# VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork + exec)
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
            if line.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "peak_rss": peak,
                  "drifted": sum(r["psi"] >= 0.2 or r["ks_p"] < 0.05 for r in result.values())}))
"""


def big_batch(profiles: dict[str, Any], rows: int, folder: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from conveyor_monitor import profile as prof

    path = folder / "big.parquet"
    writer = None
    step = 1_000_000
    for index, start in enumerate(range(0, rows, step)):
        part = make(min(step, rows - start), 100 + index, shifted=True)
        table = pa.Table.from_pandas(part, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=CHUNK)
    writer.close()
    saved = folder / "profile.npz"
    prof.save(prof.Profile("bench", 1, 0, "bench", profiles), saved)
    done = subprocess.run([sys.executable, "-c", BIG_CHILD, str(saved), str(path),
                           str(Path(__file__).parent)], capture_output=True, text=True,
                          check=True)
    measured = json.loads(done.stdout)
    measured.update(rows=rows, file_bytes=path.stat().st_size)
    return measured


def evidently(python: Path, reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, Any]:
    """Evidently's DataDriftPreset on the same frames, in its own virtualenv (pandas < 3)."""
    if not python.exists():
        return {"skipped": f"no Evidently virtualenv at {python} (make bench makes it)"}
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / "reference.parquet", Path(folder) / "current.parquet"]
        reference.to_parquet(paths[0])
        current.to_parquet(paths[1])
        done = subprocess.run([str(python), str(Path(__file__).with_name("evidently_drift.py")),
                               *map(str, paths)], capture_output=True, text=True)
    if done.returncode != 0:
        return {"skipped": "Evidently failed: " + (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("bench-results/drift.json"))
    parser.add_argument("--evidently-python", type=Path, default=None,
                        help="python of a virtualenv with Evidently (pandas < 3): its "
                             "DataDriftPreset on the same data, for context")
    args = parser.parse_args(argv)

    reference = make(args.rows, 1, shifted=False)
    current = make(args.rows, 2, shifted=True)
    build_seconds, profiles = best(1, lambda: build_profile(reference))
    ours_seconds, ours_result = best(args.repeat, lambda: ours(profiles, in_chunks(current)))
    plain_seconds, plain_result = best(args.repeat, lambda: plain(reference, current))
    ours_verdicts, plain_verdicts = verdicts(ours_result), verdicts(plain_result)
    same = ours_verdicts == plain_verdicts
    ratio = ours_seconds / plain_seconds
    row: dict[str, Any] = {
        "rows_reference": args.rows, "rows_current": args.rows, "columns": COLUMNS,
        "profile_build_seconds": build_seconds, "ours_seconds": ours_seconds,
        "plain_seconds": plain_seconds, "ratio": ratio, "goal_ratio": 0.5,
        "verdicts_identical": same,
        "drifted_psi": sum(v[0] for v in ours_verdicts.values()),
        "drifted_ks": sum(v[1] for v in ours_verdicts.values()),
        "max_psi_difference": max(abs(ours_result[n]["psi"] - plain_result[n]["psi"])
                                  for n in ours_result),
        "max_ks_statistic_difference": max(
            abs(ours_result[n]["ks_statistic"] - plain_result[n]["ks_statistic"])
            for n in ours_result),
        "max_grid_error": max(r["grid_error"] for r in ours_result.values()),
        "peak_rss_this_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    print(f"drift, {COLUMNS} numeric columns, {args.rows:,} reference vs {args.rows:,} current rows")
    print(f"  plain numpy PSI + scipy ks_2samp  {plain_seconds:7.3f} s")
    print(f"  ours, against the stored profile  {ours_seconds:7.3f} s   "
          f"{ratio:.3f}x plain (goal <= 0.5x)")
    print(f"  profile, once per model version   {build_seconds:7.3f} s")
    print(f"  verdicts identical: {same} (PSI drifted {row['drifted_psi']}, KS drifted "
          f"{row['drifted_ks']}); largest |PSI diff| {row['max_psi_difference']:.2e}, "
          f"|KS D diff| {row['max_ks_statistic_difference']:.2e} "
          f"(grid bound {row['max_grid_error']:.2e})")
    if args.evidently_python is not None:
        row["evidently"] = evidently(args.evidently_python, reference, current)
        found = row["evidently"]
        if "seconds" in found:
            print(f"  Evidently {found['evidently']} DataDriftPreset  {found['seconds']:7.3f} s   "
                  f"ours {ours_seconds / found['seconds']:.4f}x of it; it flagged "
                  f"{len(found['drifted'])} of {COLUMNS} columns (its own tests and thresholds); "
                  f"peak RSS {found['peak_rss'] / 2**30:.2f} GiB")
        else:
            print(f"  Evidently: {found['skipped']}")
    if args.big_rows:
        with tempfile.TemporaryDirectory() as folder:
            big = big_batch(profiles, args.big_rows, Path(folder))
        row["big"] = big
        print(f"  {big['rows']:,} current rows from Parquet ({big['file_bytes'] / 2**30:.2f} GiB) "
              f"in {big['seconds']:.2f} s, peak RSS {big['peak_rss'] / 2**20:,.0f} MiB "
              f"(goal < 1024 MiB)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps([row], indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
