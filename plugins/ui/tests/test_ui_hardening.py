"""conveyor ui against issue 14's probe: DNS rebinding hosts (item 3), damaged store rows on
every page (item 6) and secrets in runs, run and compare pages (item 5). A real `conveyor ui` on
127.0.0.1, driven over HTTP."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlencode

import pytest
import test_ui_server
from _ui_support import running_ui
from conveyor.store import Registry, open_store
from conveyor.testing import (
    conveyor_executable,
    current_store_backend,
    each_store,
    store_execute,
    store_rows,
)
from test_ui_server import _form, conveyor_ui

pytestmark = pytest.mark.server
tiny = test_ui_server.tiny  # the fixture: a project with two model versions, v1 champion


REBINDING_HOSTS = ("127.attacker.example", "127.0.0.1.attacker.example", "127.0.0.2",
                   "127.1", "localhost.attacker.example", "attacker.example", "0.0.0.0",
                   "[::ffff:127.0.0.1]", "")


def test_dns_rebinding_hosts_get_neither_the_csrf_token_nor_an_action(tiny: Path):
    """Issue 14, item 3: a page on 127.attacker.example (rebound to 127.0.0.1) sent
    `Host: 127.attacker.example` and a matching Origin; it got the CSRF token and promoted."""
    with running_ui(tiny, "--allow-actions") as ui:
        port = ui.base.rsplit(":", 1)[1]
        _, page, _ = ui.get("/models")
        fields = {**_form(page), "version": "2", "reason": "rebound", "confirm": "yes",
                  "force": "yes"}
        body = urlencode(fields).encode()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for name in REBINDING_HOSTS:
            host = f"{name}:{port}" if name else ""
            origin = f"http://{host}"
            status, shown, _ = ui.get("/models", headers={"Host": host, "Origin": origin})
            assert status == 400 and 'name="csrf"' not in shown, (host, status)
            status, _, _ = ui.get("/models/tiny/promote", method="POST", data=body,
                                  headers={**form, "Host": host, "Origin": origin})
            assert status == 400, (host, status)
            # a right Host with the rebinding page's Origin (or Referer) is refused too
            for header in ({"Origin": origin}, {"Referer": origin + "/models"}):
                status, _, _ = ui.get("/models/tiny/promote", method="POST", data=body,
                                      headers={**form, "Host": f"127.0.0.1:{port}", **header})
                assert status == 403, (header, status)
        assert Registry(open_store(tiny)).aliases("tiny") == {"champion": 1}
        # the Origin is the configured address, whichever loopback name the browser used
        for name in ("localhost", "[::1]"):
            status, _, _ = ui.get("/models/tiny/promote", method="POST", data=urlencode(
                {**fields, "reason": f"via {name}"}).encode(), headers={
                **form, "Host": f"{name}:{port}", "Origin": f"http://{name}:{port}"})
            assert status == 303, (name, status)
    assert Registry(open_store(tiny)).aliases("tiny") == {"champion": 2}


def test_loopback_means_exactly_three_names_for_the_bind_too(tiny: Path):
    done = conveyor_ui("--host", "127.0.0.2", cwd=tiny)
    assert done.returncode == 2 and "needs a token" in done.stderr
    done = conveyor_ui("--origin", "ui.example.com", cwd=tiny)
    assert done.returncode == 2 and "--origin ui.example.com" in done.stderr


@each_store  # SQLite, then a fresh PostgreSQL database
def test_one_damaged_row_is_flagged_on_every_page_not_a_500(tiny: Path):
    """Issue 14, item 6: bad JSON in one model_versions row made the models page a 500; a
    metric that is not a number must not break the runs, run or compare pages either."""
    done = subprocess.run([conveyor_executable(), "run", "--force"], cwd=tiny,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = [row["id"] for row in open_store(tiny).query(
        "SELECT id FROM runs ORDER BY created_at")]
    # PostgreSQL's number column refuses text and bytes: the damaged metrics are SQLite's
    loose = current_store_backend().backend == "sqlite"
    store_execute(tiny, "UPDATE model_versions SET metrics='{not json' WHERE version=2")
    insert = "INSERT INTO metrics VALUES (:run, 'use', :key, :value)"
    store_execute(tiny, insert, run=first, key="accuracy", value=0.75)
    if loose:
        store_execute(tiny, insert, run=second, key="accuracy", value="n/a")
        store_execute(tiny, insert, run=second, key="f1", value=b"\x00\xff")
    with running_ui(tiny) as ui:
        status, page, _ = ui.get("/models")
        assert status == 200, page
        assert "damaged record: metrics is unreadable" in page
        assert "v1" in page and "accuracy rule passed" in page
        status, page, _ = ui.get("/runs")
        assert status == 200 and first in page and "0.75" in page
        assert not loose or "metric accuracy is not a number: &#39;n/a&#39;" in page
        status, page, _ = ui.get(f"/runs/{second}")
        assert status == 200 and (not loose or "metric f1 is not a number" in page)
        status, page, _ = ui.get(f"/compare?run={first}&run={second}")
        assert status == 200 and "0.75" in page
        assert not loose or f"run {second}: metric accuracy is not a number" in page


SECRET, URL_SECRET, OLD_SECRET = "hunter2-SECRET", "pw-in-url-77", "old-clear-pass-1"


@each_store  # SQLite, then a fresh PostgreSQL database
def test_secrets_are_not_shown_on_the_runs_run_and_compare_pages(tmp_path: Path):
    """Issue 14, item 5: config values under secret keys and URL credentials were shown on the
    UI's run, runs and compare pages; so were those of runs recorded before redaction."""
    import json

    import yaml

    project = tmp_path / "sec"
    project.mkdir()
    (project / "tinystages.py").write_text(test_ui_server.STAGES)
    (project / "conveyor.yaml").write_text(yaml.safe_dump({
        "defaults": ["conveyor/defaults", "_self_"], "project": "sec",
        "plugins": {"local": ["tinystages"]},
        "env": {"db": {"password": SECRET, "url": f"postgres://app:{URL_SECRET}@db/x"},
                "sort_key": "plain-visible"},
        "pipeline": {"make": {"uses": "tiny.make", "password": "${env.db.password}"},
                     "use": {"uses": "tiny.use", "needs": ["make"]}}}, sort_keys=False))
    for args in (["run"], ["run", "--force", "env.db.password=another-secret-2"]):
        done = subprocess.run([conveyor_executable(), *args], cwd=project, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    first, second = [row["id"] for row in open_store(project).query(
        "SELECT id FROM runs ORDER BY created_at")]
    # as an older Conveyor wrote them
    [row] = store_rows(project, "SELECT config FROM runs WHERE id=:run", run=first)
    config = json.loads(row["config"])
    config["env"]["db"]["password"] = OLD_SECRET
    store_execute(project, "UPDATE runs SET config=:config, error=:error WHERE id=:run",
                  config=json.dumps(config), error=f"failed at https://bob:{OLD_SECRET}@x/",
                  run=first)
    store_execute(project, "UPDATE params SET value=:value WHERE run_id=:run "
                  "AND key='env.db.password'", value=json.dumps(OLD_SECRET), run=first)
    with running_ui(project) as ui:
        pages = {path: ui.get(path) for path in (
            "/runs", f"/runs/{first}", f"/runs/{second}", f"/compare?run={first}&run={second}")}
        # the stored params hold no secret: a filter cannot be used to guess one either
        status, body, _ = ui.get(f"/runs?q=env.db.password%3D{SECRET}")
        assert status == 200 and second not in body
    for path, (status, body, _) in pages.items():
        assert status == 200, path
        for secret in (SECRET, URL_SECRET, OLD_SECRET, "another-secret-2"):
            assert secret not in body, (path, secret)
    run_page = pages[f"/runs/{second}"][1]
    assert "postgres://app:***@db/x" in run_page and "plain-visible" in run_page
    assert "env.db.password=***" in run_page


XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@each_store  # SQLite, then a fresh PostgreSQL database
def test_text_from_the_store_is_escaped_on_every_page(tiny: Path):
    """The probe's XSS case, kept as a regression test: text anyone who can run a pipeline or
    promote a model puts in the store (a run's error, a gate reason, a promotion reason, a
    param) is shown escaped, never as markup."""
    store = open_store(tiny)
    try:
        run = store.query("SELECT id FROM runs")[0]["id"]
        with store.write() as conn:
            conn.execute("UPDATE runs SET error=? WHERE id=?", (XSS, run))
            conn.execute("INSERT INTO params VALUES (?,?,?)", (run, "note", f'"{XSS}"'))
        registry = Registry(store)
        registry.register(name="tiny", run_id=run, stage="register", artifact={},
                          metrics={"accuracy": 0.5}, gate={"reasons": [XSS]},
                          decision="rejected", config_hash="h", data={})
        registry.set_alias("tiny", "champion", 2, action="promote", reason=XSS)
    finally:
        store.close()
    with running_ui(tiny) as ui:
        for page in ("/runs", f"/runs/{run}", f"/compare?runs={run}&runs={run}",
                     "/models", "/pipeline", "/monitoring"):
            status, body, _ = ui.get(page)
            assert status == 200, (page, status)
            assert "<script>alert" not in body and "<img src=x" not in body, page
