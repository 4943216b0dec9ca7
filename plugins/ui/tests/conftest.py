"""Fixtures for conveyor-ui's tests: one real project per session with several runs (one of
them failed on validation), two model versions, a promotion and a rollback, and monitored
batches with drift, all made through the real `conveyor` console script."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conveyor.testing import (
    Project,
    conveyor_executable,
    copy_project,
    prepared_once,
)

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def _history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Made once per session, shared by xdist's workers, on SQLite (`copy_project` loads it
    into a test's PostgreSQL database)."""
    return prepared_once(tmp_path_factory, "ui-project", _make_history) / "shop"


def _make_history(root: Path) -> None:
    env = {**os.environ, "DVC_SITE_CACHE_DIR": str(root / "dvc-site-cache"), "COLUMNS": "200"}
    env.pop("CONVEYOR_STORE_URL", None)

    def conveyor(*args: str, cwd: Path, ok: tuple[int, ...] = (0,)) -> None:
        done = subprocess.run([conveyor_executable(), *args], cwd=cwd, capture_output=True,
                              text=True, env=env, timeout=600)
        assert done.returncode in ok, f"conveyor {' '.join(args)}: {done.stdout}{done.stderr}"

    conveyor("init", "shop", cwd=root)
    shop = root / "shop"
    conveyor("run", cwd=shop)                                   # v1, champion by the gate
    conveyor("run", "model.params.max_depth=3", cwd=shop)       # v2
    _batches(shop)
    conveyor("monitor", "--data", "batch-ok.csv", cwd=shop)
    conveyor("monitor", "--data", "batch-shifted.csv", cwd=shop, ok=(1,))
    conveyor("run", "data.source=bad.csv", cwd=shop, ok=(1,))  # fails validation
    conveyor("models", "promote", "shop", "1", "--reason", "v1 holds up better on new weeks",
             cwd=shop)
    conveyor("models", "rollback", "shop", "--reason", "promotion was premature", cwd=shop)


def _batches(shop: Path) -> None:
    import numpy as np
    import pandas as pd
    from conveyor_sklearn.datagen import customers

    def clean(rows: int, seed: int) -> pd.DataFrame:
        frame = customers(rows, seed=seed)
        frame["monthly_charges"] = frame["monthly_charges"].clip(15, 127)
        frame["support_calls"] = frame["support_calls"].clip(0, 7)
        return frame

    clean(600, 11).to_csv(shop / "batch-ok.csv", index=False)
    shifted = clean(600, 12)
    rng = np.random.default_rng(3)
    shifted["tenure_months"] = rng.integers(1, 12, len(shifted))
    shifted["monthly_charges"] = (shifted["monthly_charges"] * 1.4).clip(15, 127)
    shifted.to_csv(shop / "batch-shifted.csv", index=False)
    bad = pd.read_csv(shop / "data" / "customers.csv")
    bad.loc[:40, "monthly_charges"] = -5.0  # outside the schema's range
    bad.to_csv(shop / "bad.csv", index=False)


@pytest.fixture(scope="session")
def shop_history(_history: Path) -> Project:
    """The session's project, shared read-only by the tests that only look (on SQLite)."""
    return Project(_history)


@pytest.fixture
def shop_copy(tmp_path: Path, _history: Path) -> Project:
    """A private copy for tests that change the registry."""
    return copy_project(_history, tmp_path / "shop", symlinks=True)
