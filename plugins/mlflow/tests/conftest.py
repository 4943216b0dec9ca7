"""Fixtures for conveyor-mlflow's tests: a real `mlflow server` on 127.0.0.1 (one per test
session, from the virtualenv `make mlflow-server` builds), and a trained copy of the
classification template per test, each test with its own experiment and model name."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conveyor.testing import (
    Project,
    copy_project,
    free_port,
    prepared_once,
    stop_process,
    wait_for_server,
)

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[3]


def server_python() -> Path:
    """The python of the MLflow server's virtualenv: $CONVEYOR_MLFLOW_SERVER_PYTHON (the
    Makefile sets it) or .venv-mlflow-server in the repository."""
    given = os.environ.get("CONVEYOR_MLFLOW_SERVER_PYTHON")
    path = Path(given) if given else REPO / ".venv-mlflow-server" / "bin" / "python"
    if not path.is_file():
        pytest.fail(f"no MLflow server virtualenv at {path}: `make test` (or `make "
                    "mlflow-server`) builds it", pytrace=False)
    return path


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server (SQLite backend, artifacts served over HTTP); its URL."""
    python = server_python()
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (root / "server.log").open("w")
    process = subprocess.Popen(
        [str(python), "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # No background job runner (a dozen huey workers, for GenAI scorers): the mirror
        # needs none, and the machine's cores are shared.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(url, process, root / "server.log")
        yield url
    finally:
        _stop_group(process)
        log.close()


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server and the workers it started (its own process group), SIGKILL
    to what is left after 2 s (a test server has nothing to flush)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    stop_process(process, timeout=5)


@pytest.fixture(scope="session")
def _trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classification template, trained once for the session's workers (no mirror: mlflow
    is not configured)."""
    def build(root: Path) -> None:
        env = {"DVC_SITE_CACHE_DIR": str(root / "dvc-site-cache")}
        Project(root).cli("init", "shop", check=True, env=env)
        Project(root / "shop").cli("run", check=True, env=env)

    return prepared_once(tmp_path_factory, "mlflow-template", build) / "shop"


@pytest.fixture
def shop(tmp_path: Path, _trained: Path, request: pytest.FixtureRequest) -> Project:
    """A trained copy whose new registrations go to a model named after the test (MLflow's
    registry is shared by the session's tests) and whose runs go to an experiment of its own.
    Only the register stage runs again: the model name is its setting alone."""
    copy_project(_trained, tmp_path / "shop")
    name = request.node.name.removeprefix("test_")[:40]
    config = tmp_path / "shop" / "conveyor.yaml"
    config.write_text(config.read_text() + f"\nregistry:\n  model_name: m_{name}\n")
    return Project(tmp_path / "shop")
