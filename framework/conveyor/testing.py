"""Pytest helpers for Conveyor and its plugins (registered as the `conveyor` pytest plugin).

    def test_my_stage(conveyor_project):
        project = conveyor_project({"pipeline": {...}})
        result = project.run("seed=3")
        assert result.returncode == 0, result.stderr
        assert project.runs()[0]["status"] == "completed"

Runs go through the real `conveyor` console script in a temporary folder, so a plugin is
tested exactly as users run it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def conveyor_executable() -> str:
    found = shutil.which("conveyor", path=str(Path(sys.executable).parent))
    return found or "conveyor"


def plugin_host(project_dir: Path | None = None) -> Any:
    """The installed plugins (and a project's `plugins.local`), loaded as `conveyor` loads
    them: for calling `conveyor.validation.validate_frame` and the like from a test."""
    from conveyor.cli.app import load_host

    return load_host(project_dir)


class Project:
    """A project folder with helpers to run the real CLI in it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def cli(self, *args: str, check: bool = False, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([conveyor_executable(), *args], cwd=self.path, text=True,
                                capture_output=True, timeout=timeout,
                                env={**os.environ, "COLUMNS": "200", **(env or {})})
        if check and result.returncode != 0:
            raise AssertionError(f"conveyor {' '.join(args)} exited {result.returncode}\n"
                                 f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def run(self, *overrides: str, check: bool = False) -> subprocess.CompletedProcess:
        return self.cli("run", *overrides, check=check)

    def runs(self) -> list[dict[str, Any]]:
        return json.loads(self.cli("runs", "list", "--json", "--limit", "1000", check=True).stdout)

    def show(self, run_id: str) -> dict[str, Any]:
        return json.loads(self.cli("runs", "show", run_id, "--json", check=True).stdout)


@pytest.fixture
def conveyor_project(tmp_path: Path) -> Callable[..., Project]:
    """Make a project from a config mapping (written as conveyor.yaml) and optional files."""

    def make(config: dict[str, Any] | str, files: dict[str, str] | None = None) -> Project:
        import yaml

        folder = tmp_path / "project"
        folder.mkdir(exist_ok=True)
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        (folder / "conveyor.yaml").write_text(text)
        for name, content in (files or {}).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(content)
        return Project(folder)

    return make
