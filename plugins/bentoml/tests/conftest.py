"""Fixtures for conveyor-bentoml's tests: a trained project (the real `conveyor init` + `run`)
and real `conveyor serve` processes on free 127.0.0.1 ports."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from _serve_support import run_cli
from conveyor.testing import Project, conveyor_executable, copy_project, free_port, stop_process

os.environ.setdefault("OMP_NUM_THREADS", "1")

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
    return copy_project(trained, tmp_path / "shop")


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
        return stop_process(self.process)


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
