"""Validation speed: our validate path against Pandera's plain lazy validation (the peer) and a
hand-written vectorised check of the same rules in pandas and in numpy (the floors).

    python tests/bench/bench_validate.py                 # 1M and 10M rows
    python tests/bench/bench_validate.py --rows 100000 --repeat 2

The frame: 10 columns (4 float, one of them nullable; 4 int; a text column checked with `isin`;
a bool), rules on ranges, nullability and `strict`. "ours" is what the validate stage calls:
`conveyor.validation.validate_frame` with the schema file loaded by conveyor-pandera (cached
after the first call, as in a server). Times are the best of --repeat calls after a warm-up.
Peak memory is the frame plus the most the call allocated at once (tracemalloc, which sees
numpy's and pandas' buffers; Arrow's own pool is not traced, and neither path allocates much
there), as a multiple of the frame's size.
Also timed: the same frame with 0.1% invalid rows (ours then builds the detailed report).
Results go to bench-results/validate.json as well.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FLOATS = ["f0", "f1", "f2", "f3"]
INTS = ["i0", "i1", "i2", "i3"]
CATEGORIES = ["east", "north", "south", "west"]
SCHEMA = """\
columns:
  f0: {dtype: float64, nullable: false, ge: 0.0, le: 100.0}
  f1: {dtype: float64, nullable: false, ge: 0.0, le: 100.0}
  f2: {dtype: float64, nullable: false, ge: 0.0, le: 100.0}
  f3: {dtype: float64, nullable: true, ge: 0.0, le: 100.0}
  i0: {dtype: int64, nullable: false, ge: 0, le: 999}
  i1: {dtype: int64, nullable: false, ge: 0, le: 999}
  i2: {dtype: int64, nullable: false, ge: 0, le: 999}
  i3: {dtype: int64, nullable: false, ge: 0, le: 999}
  region: {dtype: str, nullable: false, isin: [east, north, south, west]}
  active: {dtype: bool, nullable: false}
strict: true
"""


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {name: rng.uniform(0, 100, rows) for name in FLOATS}
    data["f3"][rng.random(rows) < 0.01] = np.nan
    for name in INTS:
        data[name] = rng.integers(0, 1000, rows)
    codes = rng.integers(0, len(CATEGORIES), rows)
    data["region"] = pd.array(np.array(CATEGORIES, dtype=object)[codes], dtype="str")
    data["active"] = rng.random(rows) < 0.5
    return pd.DataFrame(data)


def spoil(frame: pd.DataFrame, share: float = 0.001, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    bad = frame.copy()
    rows = rng.choice(len(bad), max(1, int(len(bad) * share)), replace=False)
    third = len(rows) // 3
    bad.loc[rows[:third], "i0"] = -1
    bad.loc[rows[third:2 * third], "f1"] = np.nan
    bad.loc[rows[2 * third:], "region"] = "mars"
    return bad


# --- the floors: the same rules, written by hand ----------------------------------------------


def handwritten_pandas(df: pd.DataFrame) -> bool:
    ok = set(df.columns) == {*FLOATS, *INTS, "region", "active"}
    for name in FLOATS:
        s = df[name]
        ok &= s.dtype == "float64"
        in_range = (s >= 0) & (s <= 100)
        ok &= bool((in_range | s.isna()).all()) if name == "f3" else bool(in_range.all())
    for name in INTS:
        s = df[name]
        ok &= s.dtype == "int64" and bool(((s >= 0) & (s <= 999)).all())
    ok &= bool(df["region"].isin(CATEGORIES).all()) and not df["region"].isna().any()
    ok &= df["active"].dtype == bool
    return bool(ok)


def handwritten_numpy(df: pd.DataFrame) -> bool:
    ok = set(df.columns) == {*FLOATS, *INTS, "region", "active"}
    for name in FLOATS:
        v = df[name].to_numpy()
        ok &= v.dtype == np.float64
        in_range = (v >= 0) & (v <= 100)
        ok &= bool((in_range | np.isnan(v)).all()) if name == "f3" else bool(in_range.all())
    for name in INTS:
        v = df[name].to_numpy()
        ok &= v.dtype == np.int64 and bool(((v >= 0) & (v <= 999)).all())
    ok &= bool(df["region"].isin(CATEGORIES).all()) and not df["region"].isna().any()
    ok &= df["active"].dtype == bool
    return bool(ok)


# --- measuring ---------------------------------------------------------------------------------


def measure(call: Callable[[], Any], repeat: int) -> tuple[float, int, Any]:
    """(best seconds, peak bytes added during one call, the call's result)."""
    result = call()  # warm-up: imports, schema loading
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - started)
    gc.collect()
    tracemalloc.start()
    call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, max(peak, 0), result


def run(sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    import pandera.pandas as pa
    from conveyor.testing import plugin_host
    from conveyor.validation import validate_frame
    from conveyor_pandera.schemas import load

    host = plugin_host()
    folder = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    (folder / "schema.yaml").write_text(SCHEMA)
    config = {"data": {"schema": "schema.yaml"}}
    schema = load("schema.yaml", folder, None).schema
    results = []
    for rows in sizes:
        frame = make_frame(rows)
        size = int(frame.memory_usage(deep=True).sum())

        def ours(df: pd.DataFrame = frame) -> bool:
            return validate_frame(host, df, config=config, project_dir=folder).ok

        def peer(df: pd.DataFrame = frame) -> bool:
            try:
                schema.validate(df, lazy=True)
            except pa.errors.SchemaErrors:
                return False
            return True

        row: dict[str, Any] = {"rows": rows, "columns": frame.shape[1], "frame_bytes": size}
        for name, call in (("ours", ours), ("pandera", peer),
                           ("pandas", lambda df=frame: handwritten_pandas(df)),
                           ("numpy", lambda df=frame: handwritten_numpy(df))):
            seconds, peak, verdict = measure(call, repeat)
            assert verdict is True, f"{name} rejected valid data"
            row[name] = {"seconds": seconds, "peak_bytes": peak,
                         "peak_x_frame": round((size + peak) / size, 3)}
        bad = spoil(frame)
        del frame
        gc.collect()
        for name, call in (("ours_invalid", lambda df=bad: ours(df)),
                           ("pandera_invalid", lambda df=bad: peer(df))):
            seconds, peak, verdict = measure(call, max(1, repeat // 2))
            assert verdict is False, f"{name} accepted invalid data"
            row[name] = {"seconds": seconds, "peak_bytes": peak,
                         "peak_x_frame": round((size + peak) / size, 3)}
        del bad
        gc.collect()
        results.append(row)
        print_row(row, header=len(results) == 1)
    return results


def print_row(row: dict[str, Any], *, header: bool) -> None:
    if header:
        print("validation of a frame of 10 columns; best times in seconds; peak memory "
              "as a multiple of the frame's size")
        print(f"{'rows':>11} {'MB':>6} | {'ours':>6} {'pandera':>7} {'pandas':>6} {'numpy':>6} | "
              f"{'ours/pandas':>11} {'ours/pandera':>12} | {'mem ours':>8} {'mem pandera':>11} "
              f"{'mem pandas':>10} | {'invalid: ours':>13} {'pandera':>7}")
    t = {k: row[k]["seconds"] for k in ("ours", "pandera", "pandas", "numpy", "ours_invalid",
                                        "pandera_invalid")}
    m = {k: row[k]["peak_x_frame"] for k in ("ours", "pandera", "pandas")}
    print(f"{row['rows']:>11,} {row['frame_bytes'] / 1e6:>6.0f} | {t['ours']:>6.3f} "
          f"{t['pandera']:>7.3f} {t['pandas']:>6.3f} {t['numpy']:>6.3f} | "
          f"{t['ours'] / t['pandas']:>11.2f} {t['ours'] / t['pandera']:>12.2f} | "
          f"{m['ours']:>7.2f}x {m['pandera']:>10.2f}x {m['pandas']:>9.2f}x | "
          f"{t['ours_invalid']:>13.3f} {t['pandera_invalid']:>7.3f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path("bench-results/validate.json"))
    args = parser.parse_args(argv)
    results = run(args.rows, args.repeat)
    for row in results:
        fast = row["ours"]["seconds"]
        met = (fast <= 1.3 * row["pandas"]["seconds"] and fast < row["pandera"]["seconds"]
               and row["ours"]["peak_x_frame"] < 1.5)
        print(f"goal at {row['rows']:,} rows (ours within 1.3x of hand-written pandas, faster "
              f"than Pandera, peak under 1.5x the frame): {'met' if met else 'MISSED'}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
