"""The DVC plugin's two speed figures, standalone: `.venv/bin/python tests/bench/bench_dvc.py`.

1. Tracking a new 1 GiB data file, against `md5sum` on the same file (the hashing floor for DVC's
   md5). "Ours" is exactly what a run does for a new file, in a fresh Python process timed from
   before DVC is imported: `conveyor_file_fingerprint` (hash once, DVC imported meanwhile on a
   thread, md5 saved in DVC's state) then `conveyor_before_run` (DVC's `repo.add` in-process:
   finds the md5 in its state and only links the file into its cache). Target: within 1.3x.
2. A fully cached `conveyor run` over 1 GiB of unchanged data, against `dvc repro` with nothing
   to do on the same file. Target: faster, and independent of the data size (the same run over
   a 1 MiB file is shown alongside).

The data is generated in a temporary folder (on the same filesystem as the project, so hardlinks
work) and removed afterwards. Needs the venv of `make install` (conveyor, conveyor-dvc, dvc).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BIN = Path(sys.executable).parent
CONVEYOR = str(BIN / "conveyor")
DVC = str(BIN / "dvc")

STAGES = '''
import conveyor


def _size(ctx):
    size = (ctx.project_dir / ctx.settings["source"]).stat().st_size
    ctx.log_metrics({"bytes": size})
    return {"size": size}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("bench.size", _size,
                                input_files=lambda settings: [settings["source"]]))
'''

CONFIG = """\
defaults: [conveyor/defaults, _self_]
project: bench
plugins: {local: [benchstages], disable: [sklearn]}
pipeline:
  size: {uses: bench.size, source: data/big.bin}
"""

TRACK = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
started = time.perf_counter()
import conveyor_dvc
project, path = Path(sys.argv[1]), Path(sys.argv[2])
digest = conveyor_dvc.conveyor_file_fingerprint(path=path, project_dir=project, verify=False)
hashed = time.perf_counter()
run = SimpleNamespace(project_dir=project, data_versions={"data/big.bin": digest})
conveyor_dvc.conveyor_before_run(run=run, config={})
conveyor_dvc.conveyor_after_run(run=run, status="completed")
done = time.perf_counter()
print(hashed - started, done - started, digest)
"""

DVC_YAML = """\
stages:
  size:
    cmd: python3 -c "import os; open('size.txt','w').write(str(os.path.getsize('data/big.bin')))"
    deps: [data/big.bin]
    outs: [size.txt]
"""


def sh(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def timed(*args: str, cwd: Path, repeat: int = 1) -> float:
    """Best wall time of `repeat` runs of a command."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        sh(*args, cwd=cwd)
        times.append(time.perf_counter() - started)
    return min(times)


def make_data(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(min(size, 64 * 2**20))
    with open(path, "wb") as handle:
        written = 0
        while written < size:
            handle.write(block[: size - written])
            written += min(len(block), size - written)


def make_project(folder: Path, size: int) -> Path:
    """A git + DVC repository (as `git init`, `dvc init` and `dvc remote add -d` make one) with
    one pipeline stage reading a data file of `size` bytes."""
    folder.mkdir(parents=True)
    (folder / "benchstages.py").write_text(textwrap.dedent(STAGES))
    (folder / "conveyor.yaml").write_text(CONFIG)
    (folder / ".gitignore").write_text(".conveyor/\n__pycache__/\n")
    make_data(folder / "data" / "big.bin", size)
    sh("git", "init", "-q", cwd=folder)
    sh(DVC, "init", "-q", cwd=folder)
    sh(DVC, "config", "core.analytics", "false", cwd=folder)
    sh(DVC, "remote", "add", "-d", "local", "../.conveyor/dvc-remote", cwd=folder)
    with (folder / ".dvcignore").open("a") as handle:
        handle.write("/.conveyor/\n")
    return folder


def drop_page_cache_fairness(path: Path) -> None:
    """Read the file once so md5sum and ours both start with it in the page cache."""
    with open(path, "rb") as handle:
        while handle.read(16 * 2**20):
            pass


def bench(root: Path, size_mib: int, repeat: int) -> dict:
    size = size_mib * 2**20
    results: dict = {"size_mib": size_mib}

    # 1. Tracking a new data file.
    project = make_project(root / "project", size)
    data = project / "data" / "big.bin"
    drop_page_cache_fairness(data)
    results["md5sum_s"] = timed("md5sum", str(data), cwd=root, repeat=repeat)
    out = sh(sys.executable, "-c", TRACK, str(project), str(data), cwd=project).stdout.split()
    results["ours_hash_s"], results["ours_track_s"] = float(out[0]), float(out[1])
    results["track_ratio"] = results["ours_track_s"] / results["md5sum_s"]
    results["linked"] = os.stat(data).st_nlink > 1
    assert (project / "data" / "big.bin.dvc").is_file(), "the file was not versioned"

    # DVC's own CLI on the same data, for context: `dvc add` with its default cache type.
    other = make_project(root / "dvc-add", 0)
    (other / "data" / "big.bin").unlink()
    shutil.copyfile(data, other / "data" / "big.bin")
    drop_page_cache_fairness(other / "data" / "big.bin")
    results["dvc_add_s"] = timed(DVC, "add", "-q", "data/big.bin", cwd=other)
    shutil.rmtree(other)

    # 2. A cached re-run over the unchanged file.
    sh(CONVEYOR, "run", "--quiet", cwd=project)  # versions nothing new: tracked above
    results["ours_cached_s"] = timed(CONVEYOR, "run", "--quiet", cwd=project, repeat=repeat)
    (project / "dvc.yaml").write_text(DVC_YAML)
    sh(DVC, "repro", "-q", cwd=project)
    results["dvc_repro_noop_s"] = timed(DVC, "repro", "-q", cwd=project, repeat=repeat)
    results["cached_ratio"] = results["ours_cached_s"] / results["dvc_repro_noop_s"]

    small = make_project(root / "small", 2**20)
    sh(CONVEYOR, "run", "--quiet", cwd=small)
    results["ours_cached_1mib_s"] = timed(CONVEYOR, "run", "--quiet", cwd=small, repeat=repeat)
    results["size_independence"] = results["ours_cached_s"] / results["ours_cached_1mib_s"]
    return results


def report(r: dict) -> None:
    gib = f"{r['size_mib'] / 1024:g} GiB" if r["size_mib"] >= 1024 else f"{r['size_mib']} MiB"
    ok = {True: "ok", False: "MISSED"}
    print(f"tracking a new {gib} data file")
    print(f"  md5sum                                  {r['md5sum_s']:6.2f} s")
    print(f"  conveyor-dvc, in-process                {r['ours_track_s']:6.2f} s   "
          f"{r['track_ratio']:.2f}x md5sum   (target <= 1.3x: {ok[r['track_ratio'] <= 1.3]})")
    print(f"    of which hashing (DVC imported alongside) {r['ours_hash_s']:5.2f} s; "
          f"{'hard-linked' if r['linked'] else 'copied/reflinked'} into DVC's cache")
    print(f"  dvc add (CLI, DVC's default cache type) {r['dvc_add_s']:6.2f} s   "
          f"{r['dvc_add_s'] / r['md5sum_s']:.2f}x md5sum   (context)")
    print(f"a cached re-run over {gib} of unchanged data")
    print(f"  dvc repro, nothing to do                {r['dvc_repro_noop_s']:6.2f} s")
    print(f"  conveyor run, fully cached              {r['ours_cached_s']:6.2f} s   "
          f"{r['cached_ratio']:.2f}x dvc repro   (target < 1x: {ok[r['cached_ratio'] < 1]})")
    print(f"  conveyor run, fully cached, 1 MiB       {r['ours_cached_1mib_s']:6.2f} s   "
          f"{gib} / 1 MiB: {r['size_independence']:.2f}x (independent of size: ~1x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="data size (default 1024)")
    parser.add_argument("--repeat", type=int, default=5, help="best of N for timings (default 5)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to make the temporary folder (default: the system's temp)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="conveyor-bench-dvc-", dir=args.dir))
    os.environ.setdefault("DVC_SITE_CACHE_DIR", str(root / "dvc-site-cache"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for key, value in (("GIT_AUTHOR_NAME", "bench"), ("GIT_COMMITTER_NAME", "bench"),
                       ("GIT_AUTHOR_EMAIL", "bench@conveyor.invalid"),
                       ("GIT_COMMITTER_EMAIL", "bench@conveyor.invalid")):
        os.environ.setdefault(key, value)
    try:
        results = bench(root, args.size_mib, args.repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
