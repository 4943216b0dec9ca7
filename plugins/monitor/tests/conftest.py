"""Fixtures for conveyor-monitor's tests: one trained classification project per session
(real `conveyor init` + `conveyor run`), copied per test, and batches drawn from its data
generator, kept inside the ranges its schema allows."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conveyor.testing import Project, conveyor_executable, copy_project, prepared_once

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def _trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def build(root: Path) -> None:
        env = {**os.environ, "DVC_SITE_CACHE_DIR": str(root / "dvc-site-cache")}
        env.pop("CONVEYOR_STORE_URL", None)  # on SQLite: copy_project loads it into a test's
        for args, cwd in ((["init", "shop"], root), (["run"], root / "shop")):
            subprocess.run([conveyor_executable(), *args], cwd=cwd, check=True,
                           capture_output=True, env=env)

    return prepared_once(tmp_path_factory, "monitor-template", build) / "shop"


@pytest.fixture
def shop(tmp_path: Path, _trained: Path) -> Project:
    """A trained copy of the classification template: champion shop v1."""
    return copy_project(_trained, tmp_path / "shop")


@pytest.fixture
def batch() -> Callable[..., Path]:
    """Write a frame as a batch file into the project: batch(project, "b.csv", frame)."""

    def write(project: Project, name: str, frame: Any) -> Path:
        path = project.path / name
        if name.endswith(".parquet"):
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        return path

    return write
