"""Starting the real `conveyor ui` on a free port, and driving Chromium at it."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conveyor.testing import conveyor_executable, free_port, stop_process

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts" / "ui"


class UI:
    def __init__(self, process: subprocess.Popen, base: str, token: str | None) -> None:
        self.process, self.base, self.token = process, base, token

    def get(self, path: str, *, headers: dict[str, str] | None = None,
            method: str = "GET", data: bytes | None = None) -> tuple[int, str, Any]:
        """(status, body, headers) of a request; errors are answers too, never raised."""
        request = urllib.request.Request(self.base + path, headers=headers or {},
                                         method=method, data=data)
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(request, timeout=20) as response:
                return response.status, response.read().decode(), response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(), error.headers


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@contextmanager
def running_ui(project: Path, *args: str, token: str | None = None) -> Iterator[UI]:
    """`conveyor ui --project PROJECT --port FREE ARGS`, up until the block ends."""
    port = free_port()
    command = [conveyor_executable(), "ui", "--project", str(project), "--port", str(port),
               *args, *(["--token", token] if token else [])]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "CONVEYOR_TEST": "1"})
    ui = UI(process, f"http://127.0.0.1:{port}", token)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"conveyor ui exited {process.returncode}: "
                                     f"{process.stderr.read()}")
            headers = {"X-Conveyor-Token": token} if token else {}
            try:
                status, body, _ = ui.get("/api/changes", headers=headers)
                if status == 200 and "version" in json.loads(body):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("conveyor ui did not answer within 30 s")
            time.sleep(0.1)
        yield ui
    finally:
        stop_process(process, timeout=10)
