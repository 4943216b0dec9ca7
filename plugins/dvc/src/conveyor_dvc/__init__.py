"""Conveyor's DVC plugin: a project's data is versioned by DVC, every run records the DVC
version (md5) of each data file it read, and `conveyor reproduce RUN` gets that run back.

Hooks: `conveyor_after_init` (git + DVC repository, default remote), `conveyor_file_fingerprint`
(data versions from DVC's own hash cache, read without importing DVC), `conveyor_before_run`
(new versions go into DVC's cache and `.dvc` files), `conveyor_after_run`, plus the `dvc`
config section and the `data` and `reproduce` commands. DVC is imported inside functions only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import conveyor

from conveyor_dvc import state
from conveyor_dvc.settings import SCHEMA, settings_from

__version__ = "0.1.0"

# One DvcProject per project folder for the length of a run or command (a CLI process runs
# one at a time; closed by conveyor_after_run).
_projects: dict[Path, Any] = {}


def project_for(project_dir: Path, **options: Any) -> Any:
    from conveyor_dvc.dvcrepo import DvcProject

    key = Path(project_dir).resolve()
    if key not in _projects:
        _projects[key] = DvcProject(key)
    for name, value in options.items():  # the run's settings, once its config is known
        setattr(_projects[key], name, value)
    return _projects[key]


def close_project(project_dir: Path) -> None:
    project = _projects.pop(Path(project_dir).resolve(), None)
    if project is not None:
        project.close()


@conveyor.hookimpl
def conveyor_config_schemas(register: Callable[[conveyor.ConfigSchema], None]) -> None:
    register(SCHEMA)


@conveyor.hookimpl(trylast=True)  # after other plugins added their files (a schema, ...)
def conveyor_after_init(project_dir: Path, template: str) -> None:
    from conveyor_dvc.initrepo import make_repository

    for line in make_repository(Path(project_dir), template):
        print(line)


@conveyor.hookimpl
def conveyor_file_fingerprint(path: Path, project_dir: Path, verify: bool) -> str | None:
    """DVC's md5 of a data file inside a DVC repository (None elsewhere: the core's sha256).
    Unchanged files: looked up in DVC's state by metadata, no DVC import, no read; with
    `verify` (`conveyor run --force`) read again, and DVC's state corrected."""
    project_dir = Path(project_dir)
    rel = state.relative(path, project_dir)
    if not state.is_dvc_repo(project_dir) or rel is None:
        return None
    if not Path(f"{path}.dvc").is_file() and _tracked_by_git(project_dir, rel):
        return None  # code and config (a schema file, say) are versioned by git, not DVC
    md5 = None if verify else state.lookup(project_dir, Path(path))
    if md5 is None:
        md5 = project_for(project_dir).hash_and_record(Path(path))
    return f"md5:{md5}"


def _tracked_by_git(project_dir: Path, rel: Any) -> bool:
    import subprocess

    try:
        done = subprocess.run(["git", "ls-files", "--error-unmatch", str(rel)], cwd=project_dir,
                              capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@conveyor.hookimpl
def conveyor_before_run(run: Any, config: Mapping[str, Any]) -> None:
    """Every data version the run recorded is in DVC's cache with its `.dvc` file, so the run
    can be reproduced; usually there is nothing to do and DVC is not imported."""
    project_dir = Path(run.project_dir)
    if not state.is_dvc_repo(project_dir):
        return
    pending = []
    for name, digest in run.data_versions.items():
        rel = state.relative(project_dir / name, project_dir)  # names may be absolute
        if rel is None or not str(digest).startswith("md5:"):
            continue
        md5 = digest[4:]
        if state.tracked_md5(project_dir, rel) == md5 and \
                state.cache_object(project_dir, md5).is_file():
            continue
        pending.append((rel, md5))
    if not pending:
        return
    settings = settings_from(config)
    project = project_for(project_dir, lock_timeout=settings.lock_timeout)
    for rel, md5 in pending:
        project.track(rel, md5, link_min_bytes=settings.link_min_mb * 2**20)


@conveyor.hookimpl
def conveyor_after_run(run: Any, status: str) -> None:
    close_project(Path(run.project_dir))


@conveyor.hookimpl
def conveyor_cli_commands(register: Callable[[conveyor.CliCommand], None]) -> None:
    from conveyor_dvc import commands

    register(commands.DATA)
    register(commands.REPRODUCE)
