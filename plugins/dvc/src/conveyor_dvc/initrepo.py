"""`conveyor init`: the new project becomes a git + DVC repository with a default remote."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from conveyor_dvc import state
from conveyor_dvc.dvcrepo import DvcProject, quiet_dvc

REMOTE_NAME = "local"
REMOTE_DIR = Path(".conveyor") / "dvc-remote"


def make_repository(project_dir: Path, template: str) -> list[str]:
    """git init (unless git is missing or the folder is already inside a git work tree), DVC
    init, a default local folder remote, the template's data files versioned by DVC, and a
    first commit when git knows who you are. Returns what to tell the user."""
    from dvc.repo import Repo

    said = []
    git = shutil.which("git")
    parent = _git_toplevel(project_dir) if git else None
    if git and parent is None:
        _git(project_dir, "init", "-q")
    with quiet_dvc():
        repo = Repo.init(str(project_dir), no_scm=not git, subdir=parent is not None)
        with repo.config.edit() as conf:
            # Relative to the current folder when written; DVC stores it relative to .dvc/.
            conf["remote"][REMOTE_NAME] = {
                "url": os.path.relpath(project_dir / REMOTE_DIR, Path.cwd())}
            conf["core"]["remote"] = REMOTE_NAME
        repo.close()
    ignore = project_dir / ".dvcignore"
    with ignore.open("a") as handle:  # Conveyor's store is not data for DVC to walk
        handle.write("\n# Conveyor's store and runs\n/.conveyor/\n")

    data = [p for p in sorted((project_dir / "data").rglob("*"))
            if p.is_file() and not p.name.startswith(".") and p.suffix != ".dvc"] \
        if (project_dir / "data").is_dir() else []
    project = DvcProject(project_dir)
    try:
        for path in data:
            rel = state.relative(path, project_dir)
            digest = project.hash_and_record(path)
            project.track(rel, digest, link_min_bytes=64 * 2**20)
    finally:
        project.close()
    tracked = ", ".join(f"{state.relative(p, project_dir)}" for p in data)
    said.append(f"dvc: data versioned by DVC{': ' + tracked if tracked else ''}; default remote "
                f"'{REMOTE_NAME}' is the folder {REMOTE_DIR.as_posix()} (set dvc.remote in "
                "conveyor.yaml for S3, GCS, Azure or SSH)")

    if not git:
        said.append("git: not installed, so DVC works without it (dvc init --no-scm); code "
                    "versions are not recorded")
    elif parent is not None:
        said.append(f"git: inside the repository at {parent}; commit the new project there")
    else:
        _git(project_dir, "add", "-A")
        commit = subprocess.run(
            ["git", "commit", "-q", "-m", f"New Conveyor project ('{template}' template)"],
            cwd=project_dir, capture_output=True, text=True)
        if commit.returncode == 0:
            head = _git(project_dir, "rev-parse", "--short", "HEAD").strip()
            said.append(f"git: new repository, first commit {head}")
        else:
            said.append("git: new repository, nothing committed yet (git does not know who you "
                        "are: set user.name and user.email, then `git commit`)")
    return said


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                          check=True).stdout


def _git_toplevel(folder: Path) -> str | None:
    found = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=folder,
                           capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 and found.stdout.strip() else None
