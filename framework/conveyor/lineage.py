"""Where a run came from: the code version (git), and the versions of the packages involved."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

WATCHED_PACKAGES = ("hydra-core", "omegaconf", "pluggy", "numpy", "pandas", "scikit-learn", "skops")


def git_state(project_dir: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding the project, or (None, None) outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "."],
                                cwd=project_dir, capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def package_versions(plugin_distributions: list[str]) -> dict[str, str]:
    versions = {}
    for name in ("conveyor", *plugin_distributions, *WATCHED_PACKAGES):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
