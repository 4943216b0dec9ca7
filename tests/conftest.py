"""Shared fixtures: real projects in temporary folders, run through the real console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conveyor.testing import Project, conveyor_executable, copy_project, prepared_once

REPO = Path(__file__).resolve().parents[1]
RETAIL = REPO / "projects" / "retail"

# pytest-xdist already runs one worker per core: model fits in the subprocesses each spinning up
# an OpenMP pool per core oversubscribe the machine and run several times slower. One thread
# per subprocess, unless the caller chose otherwise (subprocesses inherit os.environ).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _dvc_site_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With conveyor-dvc installed, every `conveyor init` project is a DVC repository: DVC's
    per-repository state databases go to a temporary folder, not /var/tmp/dvc."""
    if "DVC_SITE_CACHE_DIR" not in os.environ:
        os.environ["DVC_SITE_CACHE_DIR"] = str(tmp_path_factory.mktemp("dvc-site-cache"))


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess]:
    """Run `conveyor ARGS` in a folder and return the completed process."""

    def run(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([conveyor_executable(), *args], cwd=cwd, text=True,
                              capture_output=True, timeout=timeout, env=_env())

    return run


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "CONVEYOR_TEST": "1"}


@pytest.fixture(scope="session")
def template_cache(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Projects made once per session with `conveyor init` (shared by xdist's workers), copied
    per test (init costs ~1 s)."""

    def get(template: str) -> Path:
        def build(root: Path) -> None:
            subprocess.run([conveyor_executable(), "init", "proj", "--template", template],
                           cwd=root, check=True, capture_output=True, env=_session_env())

        return prepared_once(tmp_path_factory, f"template-{template}", build) / "proj"

    return get


def _session_env() -> dict[str, str]:
    """What a project prepared once per session runs with: the SQLite store, whatever store a
    test chose (`copy_project` loads it into the test's)."""
    return {k: v for k, v in _env().items() if k != "CONVEYOR_STORE_URL"}


@pytest.fixture
def new_project(tmp_path: Path, template_cache: Callable[[str], Path]) -> Callable[..., Project]:
    """A fresh copy of a template project: new_project("classification")."""

    def make(template: str = "classification") -> Project:
        destination = tmp_path / template
        shutil.copytree(template_cache(template), destination)
        return Project(destination)

    return make


@pytest.fixture(scope="session")
def trained_cache(tmp_path_factory: pytest.TempPathFactory,
                  template_cache: Callable[[str], Path]) -> Callable[[str], Path]:
    """Template projects trained once per session (`conveyor run`: v1 registered and champion;
    shared by xdist's workers), on SQLite whatever the test's store (`copy_project` loads it
    into a PostgreSQL one)."""

    def get(template: str) -> Path:
        def build(root: Path) -> None:
            shutil.copytree(template_cache(template), root / "proj")
            done = subprocess.run([conveyor_executable(), "run"], cwd=root / "proj", text=True,
                                  capture_output=True, env=_session_env(), timeout=600)
            assert done.returncode == 0, done.stdout + done.stderr

        return prepared_once(tmp_path_factory, f"trained-{template}", build) / "proj"

    return get


@pytest.fixture
def trained_project(tmp_path: Path, trained_cache: Callable[[str], Path]
                    ) -> Callable[..., Project]:
    """A fresh copy of a template project already run once (v1 champion), for tests whose
    subject comes after the first training: trained_project("classification")."""

    def make(template: str = "classification") -> Project:
        return copy_project(trained_cache(template), tmp_path / f"trained-{template}")

    return make


@pytest.fixture(scope="module")
def retail_data():
    """projects/retail/retail_data.py, the retail project's generator (a module of the project,
    not of a package)."""
    sys.path.insert(0, str(RETAIL))
    try:
        import retail_data

        yield retail_data
    finally:
        sys.path.remove(str(RETAIL))

