"""Helpers shared by the DVC plugin's tests (fixtures are in conftest.py)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml
from conveyor.testing import Project, free_port, store_rows


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def dvc_md5(path: Path) -> str | None:
    """The md5 the file's .dvc records."""
    dvcfile = path.with_name(path.name + ".dvc")
    if not dvcfile.exists():
        return None
    return yaml.safe_load(dvcfile.read_text())["outs"][0]["md5"]


def cache_object(project: Project, digest: str) -> Path:
    return project.path / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]


def runs_in_store(project: Project) -> list[dict[str, Any]]:
    """The project's run rows, oldest first, read past the API on either store backend."""
    return store_rows(project.path, "SELECT * FROM runs ORDER BY created_at")


def data_inputs(project: Project, run_id: str) -> dict[str, str]:
    rows = store_rows(project.path, "SELECT path, sha256 FROM data_inputs WHERE run_id=:run_id",
                      run_id=run_id)
    return {row["path"]: row["sha256"] for row in rows}


def stages(project: Project, run_id: str) -> dict[str, dict]:
    return {s["name"]: s for s in project.show(run_id)["stages"]}


def latest_run(project: Project) -> dict[str, Any]:
    return json.loads(project.cli("runs", "list", "--json", "--limit", "1", check=True).stdout)[0]


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True,
                          text=True).stdout


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on: a remote there is unreachable."""
    return free_port()


def set_remote(project: Project, remote: str) -> None:
    """dvc.remote in the project's conveyor.yaml."""
    config = yaml.safe_load((project.path / "conveyor.yaml").read_text())
    config["dvc"] = {"remote": remote}
    (project.path / "conveyor.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
