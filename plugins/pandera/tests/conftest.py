"""Fixtures for conveyor-pandera's tests: template projects made with the real `conveyor init`,
and bad data derived from their CSV. Everything runs through the real console script."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from conveyor.testing import Project, conveyor_executable, copy_project

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one OpenMP thread per CLI subprocess


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pandera-template")
    subprocess.run([conveyor_executable(), "init", "shop"], cwd=root, check=True,
                   capture_output=True)
    return root / "shop"


@pytest.fixture
def shop(tmp_path: Path, _template: Path) -> Project:
    """A fresh copy of the classification template (it ships schema.yaml)."""
    return copy_project(_template, tmp_path / "shop")


@pytest.fixture
def write_csv() -> Callable[..., str]:
    """Write the template's customers, as text, with `changes` applied: {(row, column): value}."""

    def write(project: Project, name: str, changes: dict, *, drop: tuple[str, ...] = (),
              add: dict | None = None) -> str:
        frame = pd.read_csv(project.path / "data" / "customers.csv", dtype=str,
                            keep_default_na=False)
        for (row, column), value in changes.items():
            frame.loc[row, column] = value
        frame = frame.drop(columns=list(drop)).assign(**(add or {}))
        frame.to_csv(project.path / "data" / name, index=False)
        return f"data/{name}"

    return write
