"""`conveyor data status | push | pull` and `conveyor reproduce RUN`.

Thin wrappers over DVC's API that speak in Conveyor's terms: the versions a project needs are
the current `.dvc` versions of its data files plus every version a recorded run read, so that
any run can be reproduced from the remote. Nothing in the workspace is ever overwritten.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import conveyor

from conveyor_dvc import state


@dataclass
class Version:
    md5: str
    path: str
    current: bool = False  # what the file's .dvc records now
    runs: list[str] = field(default_factory=list)


def _settings(app: Any) -> Any:
    from conveyor import api

    from conveyor_dvc.settings import settings_from

    return settings_from(api.load_config(app).data)


def open_project(app: Any, remote: str | None) -> tuple[Any, Any]:
    from conveyor_dvc.dvcrepo import DvcProject, not_a_dvc_repo

    project_dir = app.project_dir
    if not state.is_dvc_repo(project_dir):
        raise not_a_dvc_repo(project_dir)
    settings = _settings(app)
    return DvcProject(project_dir, remote=remote or settings.remote,
                      lock_timeout=settings.lock_timeout), settings


def needed_versions(project_dir: Path) -> list[Version]:
    """The current version of each DVC-tracked data file and every version runs read."""
    from conveyor.store import Runs, open_store

    from conveyor_dvc.dvcrepo import tracked_files

    versions: dict[tuple[str, str], Version] = {}
    for rel in tracked_files(project_dir):
        md5 = state.tracked_md5(project_dir, rel)
        versions[(rel, md5)] = Version(md5, rel, current=True)
    store = open_store(project_dir)
    try:
        inputs = Runs(store).data_inputs_versioned("md5:")
    finally:
        store.close()
    for item in inputs:
        rel = state.relative(project_dir / item.path, project_dir) or item.path
        key = (rel, str(item.version)[4:])
        versions.setdefault(key, Version(key[1], rel)).runs.append(item.run_id)
    return sorted(versions.values(), key=lambda v: (v.path, not v.current, v.md5))


def workspace_state(project_dir: Path, rel: str, md5: str) -> str:
    from conveyor_dvc.dvcrepo import md5_file

    path = project_dir / rel
    if not path.is_file():
        return "missing"
    now = state.lookup(project_dir, path) or md5_file(path)[0]
    return "unchanged" if now == md5 else "modified"


# --- conveyor data -----------------------------------------------------------------------------


def configure_data(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    status = sub.add_parser("status", help="each data version: workspace, local cache, remote")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    push = sub.add_parser("push", help="send every version the project needs to the remote")
    pull = sub.add_parser("pull", help="fetch missing versions; restore missing data files")
    for action in (status, push, pull):
        action.add_argument("--remote", "-r", metavar="NAME_OR_URL",
                            help="a DVC remote name or URL instead of dvc.remote / the default")


def run_data(args: argparse.Namespace, app: Any) -> int:
    action = {"status": data_status, "push": data_push, "pull": data_pull}.get(
        args.data_command or "")
    if action is None:
        raise conveyor.UsageError("say what to do: conveyor data status | push | pull",
                                  hint="see `conveyor data --help`")
    project, settings = open_project(app, args.remote)
    try:
        return action(args, app.project_dir, project, settings)
    finally:
        project.close()


def data_status(args: argparse.Namespace, project_dir: Path, project: Any, settings: Any) -> int:
    versions = needed_versions(project_dir)
    remote = project.remote()
    where = project.remote_status(v.md5 for v in versions)
    rows = []
    for version in versions:
        rows.append({
            "path": version.path, "version": f"md5:{version.md5}", "current": version.current,
            "workspace": workspace_state(project_dir, version.path, version.md5)
            if version.current else None,
            "cache": project.in_cache(version.md5),
            "remote": where.get(version.md5) in ("both", "remote"),
            "runs": version.runs})
    remote_missing = remote.local_path is not None and not Path(remote.local_path).is_dir()
    if args.json:
        print(json.dumps({"repository": str(project_dir), "remote": {
            "name": remote.name, "url": remote.url, "exists": not remote_missing},
            "versions": rows}, indent=2))
        return 0
    print(f"DVC repository {project_dir} · {remote.describe()}"
          + (" · the remote folder does not exist yet (nothing pushed)" if remote_missing else ""))
    if not rows:
        print("no data versioned yet: `conveyor run` versions the data files it reads")
        return 0
    for path in dict.fromkeys(r["path"] for r in rows):
        print(path)
        for row in (r for r in rows if r["path"] == path):
            label = "current" if row["current"] else "earlier"
            workspace = f" · workspace: {row['workspace']}" if row["current"] else ""
            runs = len(row["runs"])
            print(f"  {row['version']}  {label}{workspace} · cache: "
                  f"{'yes' if row['cache'] else 'NO'} · remote: "
                  f"{'yes' if row['remote'] else 'no'} · used by {runs} run{'s' * (runs != 1)}")
    unpushed = [r for r in rows if r["cache"] and not r["remote"]]
    lost = [r for r in rows if not r["cache"] and not r["remote"]]
    modified = [r for r in rows if r["workspace"] == "modified"]
    absent = [r for r in rows if r["workspace"] == "missing"]
    if unpushed:
        print(f"{len(unpushed)} version(s) only in the local cache: `conveyor data push` sends "
              f"them to {remote.describe()}")
    if modified:
        print(f"{len(modified)} file(s) changed since their .dvc version: the next "
              "`conveyor run` versions them")
    if absent:
        print(f"{len(absent)} file(s) missing from the workspace: `conveyor data pull` "
              "restores them")
    if lost:
        print(f"{len(lost)} version(s) neither in the local cache nor on the remote (or the "
              "remote cannot be reached): runs that used them cannot be reproduced here")
    return 0


def data_push(args: argparse.Namespace, project_dir: Path, project: Any, settings: Any) -> int:
    versions = needed_versions(project_dir)
    remote = project.remote()
    present = {v.md5 for v in versions if project.in_cache(v.md5)}
    absent = sorted({v.md5 for v in versions} - present)
    done, failed = project.push(present)
    where = project.remote_status(present)  # what the remote has now, whatever DVC reported
    failed |= {m for m in present if where.get(m) not in ("both", "remote")}
    done -= failed
    already = present - done - failed
    if absent:
        print(f"warning: {len(absent)} version(s) that runs used are not in the local cache, so "
              "they were not pushed: " + ", ".join(f"md5:{m[:12]}" for m in absent),
              file=sys.stderr)
    if failed:
        raise conveyor.ConveyorError(
            f"{len(failed)} data version(s) could not be pushed to {remote.describe()}"
            + (f" ({len(done)} were)" if done else "") + ": "
            + ", ".join(f"md5:{m[:12]}" for m in sorted(failed))
            + (f"; DVC says: {project.last_error}" if project.last_error else ""),
            hint="check that the remote is reachable and that you may write to it")
    print(f"pushed {len(done)} data version(s) to {remote.describe()}"
          + (f"; {len(already)} already there" if already else ""))
    return 0


def data_pull(args: argparse.Namespace, project_dir: Path, project: Any, settings: Any) -> int:
    versions = needed_versions(project_dir)
    remote = project.remote()
    missing = sorted({v.md5 for v in versions if not project.in_cache(v.md5)})
    fetched: set[str] = set()
    if missing:
        fetched, _ = project.fetch(missing)
    still = {m for m in missing if not project.in_cache(m)}
    restore = [v.path for v in versions if v.current and v.md5 not in still
               and not (project_dir / v.path).exists()]
    if restore:
        project.checkout(restore, settings.link_min_mb * 2**20)
    modified = [v.path for v in versions if v.current and (project_dir / v.path).exists()
                and workspace_state(project_dir, v.path, v.md5) == "modified"]
    print(f"fetched {len(fetched)} data version(s) from {remote.describe()}; "
          f"restored {len(restore)} file(s) in the workspace"
          + (": " + ", ".join(restore) if restore else ""))
    for path in modified:
        print(f"{path}: changed in the workspace since its .dvc version, left as it is")
    current_lost = sorted({v.path for v in versions if v.current and v.md5 in still})
    earlier_lost = sorted({v.md5 for v in versions if not v.current and v.md5 in still})
    if earlier_lost:
        print(f"warning: {len(earlier_lost)} earlier version(s) used by runs are on neither "
              f"the local cache nor {remote.describe()}", file=sys.stderr)
    if current_lost:
        raise conveyor.ConveyorError(
            f"the current version of {', '.join(current_lost)} is neither in the local cache nor "
            f"on {remote.describe()}" + _unreachable(remote, project.last_error),
            hint="push it from a machine that has it (`conveyor data push`), or check the remote")
    return 0


def _unreachable(remote: Any, reason: str | None = None) -> str:
    if remote.local_path is not None and not Path(remote.local_path).is_dir():
        return f" (the remote folder {remote.local_path} does not exist)"
    if reason:
        return f" (the remote cannot be reached: {reason})"
    return " (or the remote cannot be reached)"


DATA = conveyor.CliCommand(
    name="data", help="DVC versions of the project's data: status | push | pull",
    description="The project's data versions under DVC: the current version of each data file "
                "(its .dvc file) and every version a recorded run read. `status` says where "
                "each one is (workspace, local cache, remote); `push` sends them all to the "
                "remote (dvc.remote in conveyor.yaml, else the repository's default remote); "
                "`pull` fetches the missing ones and restores data files missing from the "
                "workspace, leaving files you changed alone.",
    configure=configure_data, run=run_data)


# --- conveyor reproduce ------------------------------------------------------------------------


def configure_reproduce(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="the run to reproduce (a unique prefix of its id is enough)")
    parser.add_argument("--remote", "-r", metavar="NAME_OR_URL",
                        help="where to fetch data versions missing from the local cache")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary workspace (printed) for inspection")
    parser.add_argument("--json", action="store_true", help="machine-readable result")


def run_reproduce(args: argparse.Namespace, app: Any) -> int:
    from conveyor_dvc.reproduce import reproduce

    project, settings = open_project(app, args.remote)
    try:
        return reproduce(app, args.run, project, settings, keep=args.keep,
                         as_json=args.json)
    finally:
        project.close()


REPRODUCE = conveyor.CliCommand(
    name="reproduce", help="run a recorded run again on its data version and config; compare",
    description="Restore the data versions a recorded run read (from DVC's cache, or the remote "
                "when the cache lacks them) into a temporary workspace, run the pipeline there "
                "with that run's resolved config, and compare the metrics. Exit 0 when they are "
                "identical, 1 when they differ or the run fails. Warns when the code or package "
                "versions differ from the run's. The project itself is not touched.",
    configure=configure_reproduce, run=run_reproduce)
