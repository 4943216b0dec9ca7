"""conveyor ui as a server, over HTTP: the command's bad input, the token, 404s for unknown runs
and traversal paths, read-only by default, and promote/rollback with confirmation, reason and
CSRF checks. A small project whose store is filled through the public API (fast: no training)."""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from _ui_support import running_ui
from conveyor.store import Registry, open_store
from conveyor.testing import conveyor_executable, each_store

pytestmark = pytest.mark.server

STAGES = '''
import conveyor


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("tiny.make", lambda ctx: {"value": {"n": 1}}))
    register(conveyor.StageType("tiny.use", lambda ctx: {"result": {"n": 2}}))
'''


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A project with two recorded model versions (v2 missed the gate) and v1 champion."""
    project = tmp_path / "tiny"
    project.mkdir()
    (project / "tinystages.py").write_text(textwrap.dedent(STAGES))
    (project / "conveyor.yaml").write_text(yaml.safe_dump({
        "defaults": ["conveyor/defaults", "_self_"], "project": "tiny",
        "plugins": {"local": ["tinystages"]},
        "pipeline": {"make": {"uses": "tiny.make"},
                     "use": {"uses": "tiny.use", "needs": ["make"]}}}, sort_keys=False))
    done = subprocess.run([conveyor_executable(), "run"], cwd=project, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    store = open_store(project)
    registry = Registry(store)
    for version, decision in ((1, "passed"), (2, "rejected")):
        registry.register(name="tiny", run_id="r", stage="register", artifact={},
                          metrics={"accuracy": 0.8 + version / 100},
                          gate={"reasons": [f"accuracy rule {decision}"]}, decision=decision,
                          config_hash="h", data={})
    registry.set_alias("tiny", "champion", 1, action="gate", reason="passed the gate")
    store.close()
    return project


def run_id(project: Path) -> str:
    store = open_store(project)
    try:
        return store.query("SELECT id FROM runs")[0]["id"]
    finally:
        store.close()


def conveyor_ui(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([conveyor_executable(), "ui", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_bad_input_is_refused_before_serving(tiny: Path, tmp_path: Path):
    cases = [
        (["--host", "0.0.0.0"], "needs a token"),
        (["--host", "0.0.0.0", "--token", "short"], "too short"),
        (["--port", "0"], "--port 0"),
        (["--project", str(tmp_path / "nowhere")], "no such folder"),
        (["--project", str(tmp_path)], "not a Conveyor project"),
    ]
    for args, needle in cases:
        done = conveyor_ui(*args, cwd=tiny)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert needle in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)


def test_a_busy_port_is_a_clear_error(tiny: Path):
    with running_ui(tiny) as ui:
        port = ui.base.rsplit(":", 1)[1]
        done = conveyor_ui("--port", port, cwd=tiny)
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr


@each_store  # SQLite, then a fresh PostgreSQL database
def test_unknown_runs_and_traversal_paths_get_404_never_a_file(tiny: Path):
    with running_ui(tiny) as ui:
        assert ui.get(f"/runs/{run_id(tiny)}")[0] == 200
        for path in ("/runs/no-such-run", "/runs/..%2F..%2Fetc%2Fpasswd",
                     "/static/..%2F..%2Fetc%2Fpasswd", "/static/../../etc/passwd",
                     "/static/%2e%2e/%2e%2e/etc/passwd", "/../../etc/passwd",
                     "/compare?run=nope&run=nada", "/static/app.py", "/static/templates"):
            status, body, _ = ui.get(path)
            assert status == 404, (path, status)
            assert "root:" not in body and "import" not in body, path
        status, body, _ = ui.get("/runs/no-such-run")
        assert "no run &#39;no-such-run&#39;" in body
        # the raw path as a client that does not normalise it would send it
        import http.client

        connection = http.client.HTTPConnection(ui.base[len("http://"):], timeout=10)
        connection.request("GET", "/static/../../../../etc/passwd")
        response = connection.getresponse()
        assert response.status == 404 and b"root:" not in response.read()


def test_every_request_needs_the_token_when_one_is_set(tiny: Path):
    token = "s3cret-token-for-tests"
    with running_ui(tiny, token=token) as ui:
        for path in ("/runs", "/api/changes", "/static/ui.css", "/models"):
            assert ui.get(path)[0] == 401, path
            assert ui.get(path, headers={"X-Conveyor-Token": "wrong-token-value"})[0] == 401
            assert ui.get(path, headers={"X-Conveyor-Token": token})[0] == 200, path
            assert ui.get(path, headers={"Authorization": f"Bearer {token}"})[0] == 200, path
        assert ui.get("/runs?token=nope-nope-nope")[0] == 401
        status, _, headers = ui.get(f"/runs?status=completed&token={token}")
        assert status == 303 and headers["location"] == "/runs?status=completed"
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        value = cookie.split(";")[0]
        assert ui.get("/runs", headers={"Cookie": value})[0] == 200


def test_a_foreign_host_header_is_refused_on_loopback(tiny: Path):
    with running_ui(tiny) as ui:
        port = ui.base.rsplit(":", 1)[1]
        assert ui.get("/runs", headers={"Host": "attacker.example:5000"})[0] == 400
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}",
                     f"LocalHost:{port}"):
            assert ui.get("/runs", headers={"Host": host})[0] == 200, host
        # the served port only
        assert ui.get("/runs", headers={"Host": "localhost:1"})[0] == 400
        assert ui.get("/runs", headers={"Host": "localhost"})[0] == 400


def _form(body: str) -> dict[str, str]:
    return {"csrf": re.search(r'name="csrf" value="([^"]+)"', body)[1]}


@each_store  # SQLite, then a fresh PostgreSQL database
def test_actions_are_off_by_default(tiny: Path):
    with running_ui(tiny) as ui:
        status, body, _ = ui.get("/models")
        assert status == 200 and "tiny" in body
        assert "Promote v" not in body and "Roll back" not in body and 'name="csrf"' not in body
        status, body, _ = ui.get("/models/tiny/promote", method="POST",
                                 data=b"version=2&reason=x&confirm=yes",
                                 headers={"Origin": ui.base})
        assert status == 403 and "--allow-actions" in body
    assert Registry(open_store(tiny)).aliases("tiny") == {"champion": 1}


@each_store  # SQLite, then a fresh PostgreSQL database
def test_promote_and_rollback_need_confirmation_reason_and_the_same_origin(tiny: Path):
    with running_ui(tiny, "--allow-actions") as ui:
        _, page, _ = ui.get("/models")
        assert "Promote v2" in page
        fields = _form(page)

        def post(path: str, origin: str | None = ui.base, **values: str) -> tuple:
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if origin:
                headers["Origin"] = origin
            return ui.get(path, method="POST", data=urlencode({**fields, **values}).encode(),
                          headers=headers)

        promote = "/models/tiny/promote"
        assert post(promote, version="2", reason="try")[0] == 400             # not confirmed
        assert post(promote, version="2", confirm="yes")[0] == 400            # no reason
        assert post(promote, origin=None, version="2", reason="r", confirm="yes")[0] == 403
        assert post(promote, origin="http://evil.example", version="2", reason="r",
                    confirm="yes")[0] == 403
        assert post(promote, version="2", reason="r", confirm="yes", csrf="forged")[0] == 403
        assert Registry(open_store(tiny)).aliases("tiny") == {"champion": 1}

        # the gate rejected v2: refused as the CLI refuses it, unless forced
        status, _, headers = post(promote, version="2", reason="try", confirm="yes")
        assert status == 303
        _, shown, _ = ui.get(headers["location"])
        assert "did not pass the evaluation gate: accuracy rule rejected" in shown
        assert Registry(open_store(tiny)).aliases("tiny") == {"champion": 1}
        status, _, headers = post(promote, version="2", reason="hotfix for the demo",
                                  confirm="yes", force="yes")
        assert status == 303
        assert "champion is now version 2 (was 1)" in ui.get(headers["location"])[1]
        status, _, headers = post("/models/tiny/rollback", reason="hotfix broke things",
                                  confirm="yes")
        assert "rolled back from version 2 to 1" in ui.get(headers["location"])[1]
    history = Registry(open_store(tiny)).history("tiny")
    assert [(h["action"], h["version"], h["forced"], h["reason"]) for h in history[1:]] == [
        ("promote", 2, 1, "hotfix for the demo"), ("rollback", 1, 0, "hotfix broke things")]
    assert all("via conveyor ui" in h["actor"] for h in history[1:])
