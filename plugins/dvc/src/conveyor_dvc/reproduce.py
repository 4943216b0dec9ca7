"""`conveyor reproduce RUN`: the run's data versions, restored into a temporary workspace, run
again with the run's resolved config, and the metrics compared.

The project is never touched: its data files, `.dvc` files, store and registry stay as they are
(the re-run is recorded in the workspace's own store, which is removed afterwards unless
--keep). Data versions come from DVC's local cache, or from the remote when the cache lacks
them; every restored file is checked against its md5 while it is copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import conveyor

from conveyor_dvc import state

SKIP = {".git", ".dvc", ".conveyor", ".dvcignore", "__pycache__"}


def reproduce(session: Any, run_id: str, project: Any, settings: Any, *, keep: bool,
              as_json: bool) -> int:
    from conveyor import api

    project_dir = session.project_dir
    record = api.get_run(session, run_id)
    if record.status != "completed":
        raise conveyor.UsageError(f"run {record.id} is {record.status}: only a completed run has "
                                  "results to reproduce", hint="see `conveyor runs list`")
    if record.command == "predict":
        # A scoring run reads a registered model, which the workspace (no store) does not have.
        raise conveyor.UsageError(
            f"run {record.id} scored data with `conveyor predict`: reproduce re-runs a "
            "pipeline (training, evaluating) from its data versions",
            hint="to score the same file again: conveyor predict --data FILE "
                 "--model NAME:VERSION (the version is in `conveyor runs show RUN`)")
    config, plugin_warnings = recorded_plugins(session, record)
    warnings = [*code_warnings(project_dir, record), *plugin_warnings]
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    root = project_dir / ".conveyor" / "reproduce"
    root.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix=f"{record.id}-", dir=root))
    out = sys.stderr if as_json else sys.stdout
    try:
        sources = restore_data(project_dir, record, project, workspace)
        copy_project(project_dir, workspace, skip_files=set(sources))
        print(f"reproducing run {record.id} with its config and data in {workspace}", file=out)
        for rel, source in sources.items():
            version = record.data[rel]
            shown = version if ":" in version else f"sha256:{version[:16]}"
            print(f"  {rel}: {shown} from {source}", file=out, flush=True)
        try:
            result = api.run(session.for_project(workspace), config=config, force=True,
                             quiet=as_json, command="reproduce")
        except conveyor.ConveyorError as exc:
            error = type(exc)(f"reproducing run {record.id}: {exc.message}", hint=exc.hint)
            error.exit_code = exc.exit_code
            raise error from exc
    finally:
        if not keep:
            shutil.rmtree(workspace, ignore_errors=True)
    return report(record, result, sources, warnings, workspace if keep else None, as_json)


def recorded_plugins(session: Any, record: Any) -> tuple[dict[str, Any], list[str]]:
    """The run's config with the plugins it ran with: a plugin installed since is switched off
    (`plugins.disable`) so that it cannot change the result; what differs is said (a plugin
    the run used that is missing now, or at another version)."""
    if not record.plugins:  # recorded before runs recorded their plugins
        return record.config, []
    now = {info.name: info for info in session.host.installed}
    then = {name: p for name, p in record.plugins.items() if p.get("origin") == "entry point"}
    said = []
    missing = sorted(set(then) - set(now))
    if missing:
        said.append(f"plugins run {record.id} used are not installed now: "
                    + ", ".join(f"{n} ({then[n]['distribution']} {then[n]['version']})"
                                for n in missing))
    changed = sorted(n for n in set(then) & set(now) if then[n]["version"] != now[n].version)
    if changed:
        said.append(f"plugin versions differ from run {record.id}'s: "
                    + ", ".join(f"{n} {then[n]['version']} → {now[n].version}" for n in changed))
    config = record.config
    already = set((config.get("plugins") or {}).get("disable") or [])
    added = sorted(n for n in set(now) - set(then)
                   if n not in already and now[n].distribution not in already)
    if added:
        said.append(f"switched off for the reproduction, as run {record.id} ran without them: "
                    + ", ".join(added))
        section = dict(config.get("plugins") or {})
        section["disable"] = [*(section.get("disable") or []), *added]
        config = {**config, "plugins": section}
    return config, said


def code_warnings(project_dir: Path, record: Any) -> list[str]:
    """How the code and packages now differ from the run's."""
    from conveyor import api

    said = []
    commit, _ = api.code_version(project_dir)
    dirty = code_changed(project_dir) if commit else None
    if record.git_commit is None:
        if commit is not None:
            said.append(f"run {record.id} recorded no code version (it ran outside git): the "
                        "code may differ")
    elif commit != record.git_commit:
        said.append(f"the code differs from run {record.id}'s: it ran at commit "
                    f"{record.git_commit[:10]}, the project is now at "
                    f"{(commit or 'no commit')[:10]}" + (" with uncommitted changes" if dirty
                                                         else ""))
    elif record.git_dirty:
        said.append(f"run {record.id} ran with uncommitted changes (to its code, or to .dvc "
                    f"files) on top of commit {record.git_commit[:10]}: its exact code may "
                    "differ")
    elif dirty:
        said.append(f"the project has uncommitted changes since commit {commit[:10]}, the code "
                    f"run {record.id} ran")
    changed = []
    for name, version in sorted(record.packages.items()):
        try:
            now = metadata.version(name)
        except metadata.PackageNotFoundError:
            now = "not installed"
        if now != version:
            changed.append(f"{name} {version} → {now}")
    if changed:
        said.append(f"package versions differ from run {record.id}'s: " + ", ".join(changed))
    return said


def code_changed(project_dir: Path) -> bool | None:
    """Uncommitted changes to the project's code: tracked files other than DVC's `.dvc` files
    and the .gitignore files DVC maintains (a new data version is not a code change)."""
    import subprocess

    try:
        found = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
             ":(exclude,glob)**/*.dvc", ":(exclude,glob)**/.gitignore"],
            cwd=project_dir, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(found.stdout.strip()) if found.returncode == 0 else None


def restore_data(project_dir: Path, record: Any, project: Any, workspace: Path) -> dict[str, str]:
    """Each data file the run read, at the version it read, into the workspace. Returns where
    each came from. Raises before anything runs when a version cannot be had."""
    sources: dict[str, str] = {}
    for name, digest in record.data.items():
        source = project_dir / name
        rel = state.relative(source, project_dir)
        if rel is None:  # outside the project: read where it is, if it is unchanged
            _check_unchanged(Path(name), digest, record)
            continue
        target = workspace / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if digest.startswith("md5:"):
            sources[rel] = _restore_version(project, rel, digest[4:], record, target)
        else:
            _check_unchanged(source, digest, record)
            _copy_checked(source, target, "sha256", digest, what=f"{rel}")
            sources[rel] = "the workspace (unchanged since the run)"
    return sources


def _restore_version(project: Any, rel: str, md5: str, record: Any, target: Path) -> str:
    where = "the local DVC cache"
    if not project.in_cache(md5):
        remote = project.remote()
        project.fetch([md5])
        if not project.in_cache(md5):
            missing = remote.local_path is not None and not Path(remote.local_path).is_dir()
            why = ("the remote folder does not exist" if missing else
                   f"the remote cannot be reached: {project.last_error}" if project.last_error
                   else "the remote never received it, or cannot be reached")
            raise conveyor.ConveyorError(
                f"cannot restore {rel} as run {record.id} read it (md5:{md5}): that version is "
                f"not in the local DVC cache, and {remote.describe()} did not provide it "
                f"({why}); nothing was changed",
                hint="`conveyor data push` from a machine that has the version, or point "
                     "dvc.remote (or --remote) at a remote that has it")
        where = remote.describe()
    _copy_checked(project.cache_path(md5), target, "md5", md5, what=f"DVC's copy of {rel}")
    return where


def _check_unchanged(path: Path, digest: str, record: Any) -> None:
    algorithm, _, value = digest.rpartition(":")
    algorithm = algorithm or "sha256"
    if path.is_file():
        with open(path, "rb") as handle:
            if hashlib.file_digest(handle, algorithm).hexdigest() == value:
                return
    raise conveyor.ConveyorError(
        f"cannot restore {path} as run {record.id} read it ({algorithm}:{value[:16]}): DVC did "
        "not version that file, and it has changed or gone since; nothing was changed",
        hint="data files inside a DVC project are versioned by each run from now on")


def _copy_checked(source: Path, target: Path, algorithm: str, expected: str, *, what: str) -> None:
    """Copy while hashing: the copy is used only if its content is the version expected."""
    digest = hashlib.new(algorithm)
    with open(source, "rb") as reader, open(target, "wb") as writer:
        while chunk := reader.read(8 * 2**20):
            digest.update(chunk)
            writer.write(chunk)
    if digest.hexdigest() != expected:
        target.unlink(missing_ok=True)
        raise conveyor.ConveyorError(
            f"{what} at {source} is damaged: it should be {algorithm}:{expected[:12]} but is "
            f"{algorithm}:{digest.hexdigest()[:12]}; nothing was changed",
            hint=f"remove {source} and run again to fetch the version from the remote")


def copy_project(project_dir: Path, workspace: Path, *, skip_files: set[str]) -> None:
    """The project's own files (config, local plugin modules, schemas...) without git, DVC,
    the store, `.dvc` files and DVC-versioned data (restored at the run's version instead)."""
    from conveyor_dvc.dvcrepo import tracked_files

    skip = set(skip_files) | set(tracked_files(project_dir))
    for folder, dirs, files in os.walk(project_dir):
        here = Path(folder)
        rel_dir = here.relative_to(project_dir)
        dirs[:] = [d for d in dirs if not (rel_dir == Path(".") and d in SKIP)
                   and d != "__pycache__"]
        for name in files:
            rel = (rel_dir / name).as_posix()
            if name in SKIP or name.endswith(".dvc") or rel in skip:
                continue
            destination = workspace / rel
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(here / name, destination)


def report(record: Any, result: Any, sources: dict[str, str], warnings: list[str],
           kept: Path | None, as_json: bool) -> int:
    keys = sorted(set(record.metrics) | set(result.metrics))
    metrics = {k: {"original": record.metrics.get(k), "reproduced": result.metrics.get(k),
                   "difference": _difference(record.metrics.get(k), result.metrics.get(k))}
               for k in keys}
    identical = all(m["original"] == m["reproduced"] for m in metrics.values())
    if as_json:
        print(json.dumps({"run": record.id, "reproduced_run": result.run_id,
                          "identical": identical, "metrics": metrics,
                          "data": {rel: {"version": record.data[rel], "from": source}
                                   for rel, source in sources.items()},
                          "warnings": warnings, "workspace": str(kept) if kept else None},
                         indent=2, sort_keys=True))
        return 0 if identical else 1
    if kept:
        print(f"workspace kept: {kept}")
    if identical:
        shown = "  ".join(f"{k}={v['reproduced']:.6g}" for k, v in metrics.items())
        print(f"✓ reproduced run {record.id}: {len(metrics)} metric(s) identical"
              + (f" · {shown}" if shown else ""))
        return 0
    print(f"✗ the metrics differ from run {record.id}'s (a non-deterministic estimator, or the "
          "code or packages changed):")
    for key, values in metrics.items():
        if values["original"] != values["reproduced"]:
            difference = values["difference"]
            print(f"  {key:<24} {_show(values['original'])} → {_show(values['reproduced'])}"
                  + (f"  ({difference:+.6g})" if difference is not None else ""))
    return 1


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _show(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"
