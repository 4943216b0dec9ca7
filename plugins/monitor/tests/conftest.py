"""Fixtures for conveyor-monitor's tests: one trained classification project per session
(real `conveyor init` + `conveyor run`), copied per test, and batches drawn from its data
generator, kept inside the ranges its schema allows."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conveyor.testing import Project, conveyor_executable

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def _trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("monitor-template")
    env = {**os.environ, "DVC_SITE_CACHE_DIR": str(root / "dvc-site-cache")}
    for args, cwd in ((["init", "shop"], root), (["run"], root / "shop")):
        subprocess.run([conveyor_executable(), *args], cwd=cwd, check=True,
                       capture_output=True, env=env)
    return root / "shop"


@pytest.fixture
def shop(tmp_path: Path, _trained: Path) -> Project:
    """A trained copy of the classification template: champion shop v1."""
    shutil.copytree(_trained, tmp_path / "shop")
    return Project(tmp_path / "shop")


def customers(rows: int, seed: int) -> Any:
    """Rows from the training data's generator, within the schema's ranges."""
    from conveyor_sklearn.datagen import customers as generate

    frame = generate(rows, seed=seed)
    frame["monthly_charges"] = frame["monthly_charges"].clip(15, 127)
    frame["support_calls"] = frame["support_calls"].clip(0, 7)
    return frame


def shifted(rows: int, seed: int) -> Any:
    """Customers whose behaviour changed: short tenures, month-to-month, higher charges."""
    import numpy as np

    frame = customers(rows, seed)
    rng = np.random.default_rng(seed + 100)
    frame["tenure_months"] = rng.integers(1, 12, rows)
    frame["contract"] = rng.choice(["month-to-month", "one-year", "two-year"], rows,
                                   p=[0.9, 0.05, 0.05])
    frame["monthly_charges"] = (frame["monthly_charges"] * 1.4).clip(15, 127)
    return frame


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


def configure(project: Project, section: dict[str, Any], **top: Any) -> None:
    """Add a `monitor` section (and other top-level keys) to the project's conveyor.yaml."""
    path = project.path / "conveyor.yaml"
    config = yaml.safe_load(path.read_text())
    config["monitor"] = section
    config.update(top)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
