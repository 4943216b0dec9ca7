"""Artifact write and read of 100 MB: object storage (S3) beside the local disk, standalone:
`.venv/bin/python tests/bench/bench_artifacts.py [--mb 100] [--repeat 3] [--json FILE]`.

A float64 data frame of `--mb` MB goes through the real `arrow` codec (conveyor-sklearn's) into
an `ArtifactStore`: once with the local default (`.conveyor/artifacts/`), once with
`store.artifacts = s3://bucket/bench` on moto's S3 server on 127.0.0.1 (standing in for the
cloud: no network in the figure, so it shows the cost of the S3 protocol and the local
cache, not of a real link). Write = `put` (encode, hash, store); read = `load` of the same
reference by a fresh store (download into the cache, hash check, decode); a warm read reuses
the checked cached copy. Best of `--repeat`. Needs the venv of `make install` (moto[server],
s3fs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from conveyor.plugins import PluginHost
from conveyor.store import ArtifactStore
from conveyor.testing import S3Server

BUCKET = "conveyor-bench"


class NoRows:
    """The store's database is not what is measured: artifact rows are dropped."""

    def record_artifact(self, ref: Any) -> None:
        pass


def best(repeat: int, work: Any) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(frame: pd.DataFrame, codec: Any, folder: Path, url: str | None,
            repeat: int) -> dict[str, float]:
    def fresh_root() -> Path:
        shutil.rmtree(folder, ignore_errors=True)
        return folder / ".conveyor"

    refs = []
    write = best(repeat, lambda: refs.append(
        ArtifactStore(fresh_root(), NoRows(), url=url).put(frame, codec)))
    if url:  # later puts found the object: time a first upload
        write = best(repeat, lambda: (_empty_bucket(), refs.append(
            ArtifactStore(fresh_root(), NoRows(), url=url).put(frame, codec))))
    ref = refs[-1]

    def cold() -> None:
        shutil.rmtree(folder / ".conveyor" / "cache", ignore_errors=True)
        ArtifactStore(folder / ".conveyor", NoRows(), url=url).load(ref, codec)

    read = best(repeat, cold)
    warm_store = ArtifactStore(folder / ".conveyor", NoRows(), url=url)
    warm_store.load(ref, codec)
    warm = best(repeat, lambda: warm_store.load(ref, codec))
    return {"write_s": write, "read_s": read, "warm_read_s": warm, "bytes": ref.size}


_server: S3Server | None = None


def _empty_bucket() -> None:
    client = _server.client()
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])


def main() -> int:
    global _server
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="artifact size in MB (default 100)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    codec = next(c for c in PluginHost().load().contributions.codecs if c.name == "arrow")
    rows = args.mb * 1_000_000 // 8 // 4
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"c{i}": rng.random(rows) for i in range(4)})
    print(f"artifact: a {args.mb} MB float64 frame through the arrow codec, best of "
          f"{args.repeat}", flush=True)
    results: dict[str, Any] = {"mb": args.mb, "repeat": args.repeat}
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-artifacts-") as tmp, \
            S3Server() as server:
        _server = server
        os.environ.update(server.env)
        server.create_bucket(BUCKET)
        for name, url in (("local", None), ("s3", f"s3://{BUCKET}/bench")):
            print(f"  {name}: measuring…", flush=True)
            results[name] = measure(frame, codec, Path(tmp) / name, url, args.repeat)
    size_mb = results["local"]["bytes"] / 1e6
    print(f"{'':8}{'write MB/s':>12}{'read MB/s':>12}{'warm read MB/s':>16}")
    for name in ("local", "s3"):
        figures = results[name]
        for kind in ("write", "read", "warm_read"):
            figures[f"{kind}_mb_s"] = round(size_mb / figures[f"{kind}_s"], 1)
        print(f"{name:8}{figures['write_mb_s']:>12}{figures['read_mb_s']:>12}"
              f"{figures['warm_read_mb_s']:>16}")
    results["ratio"] = {kind: round(results["s3"][f"{kind}_s"] / results["local"][f"{kind}_s"], 2)
                        for kind in ("write", "read", "warm_read")}
    print("s3 / local time: " + ", ".join(f"{k} {v}x" for k, v in results["ratio"].items()))
    if args.json:
        save(results, args.json)
    return 0


def save(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"figures written to {path}")


if __name__ == "__main__":
    sys.exit(main())
