"""Helpers shared by the DVC plugin's tests (fixtures are in conftest.py)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import yaml
from conveyor.testing import Project, free_port


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
    db = project.path / ".conveyor" / "store.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY created_at")]


def data_inputs(project: Project, run_id: str) -> dict[str, str]:
    with sqlite3.connect(project.path / ".conveyor" / "store.db") as conn:
        return dict(conn.execute("SELECT path, sha256 FROM data_inputs WHERE run_id=?",
                                 (run_id,)).fetchall())


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
