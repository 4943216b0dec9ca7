"""Fixtures for conveyor-bentoml's tests: a trained project (the real `conveyor init` + `run`)
and real `conveyor serve` processes on free 127.0.0.1 ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conveyor.testing import Project, conveyor_executable

os.environ.setdefault("OMP_NUM_THREADS", "1")

RECORD = {"customer_id": "C1", "tenure_months": 5, "contract": None, "region": "east",
          "monthly_charges": 20.5, "support_calls": 1, "has_partner": "no"}


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([conveyor_executable(), *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", "CONVEYOR_TEST": "1"})


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classification project with two registered versions, v1 the champion."""
    root = tmp_path_factory.mktemp("serve-template")
    run_cli("init", "shop", cwd=root).check_returncode()
    project = root / "shop"
    run_cli("run", cwd=project).check_returncode()
    run_cli("run", "model.params.max_iter=30", cwd=project)  # v2, promoted or not
    done = run_cli("models", "promote", "shop", "1", "--force", cwd=project)
    assert done.returncode == 0, done.stderr
    return project


@pytest.fixture
def project(tmp_path: Path, trained: Path) -> Project:
    shutil.copytree(trained, tmp_path / "shop")
    return Project(tmp_path / "shop")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`conveyor serve` (or `argv` + `--port PORT`, e.g. `bentoml serve TAG`) on a free port."""

    def __init__(self, project: Path, *overrides: str, argv: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = project / f"serve-{self.port}.log"
        argv = argv or [conveyor_executable(), "serve"]
        self.process = subprocess.Popen(
            [*argv, "--port", str(self.port), *overrides],
            cwd=project, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            env={**os.environ, "CONVEYOR_TEST": "1"})

    def wait_ready(self, timeout: float = 90) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(project: Project, *overrides: str, ready: bool = True,
              argv: list[str] | None = None) -> Server:
        server = Server(project.path, *overrides, argv=argv)
        started.append(server)
        return server.wait_ready() if ready else server

    yield start
    for server in started:
        server.stop()
