"""The store on a real PostgreSQL server beside SQLite (`store.url`): migrations, stores made
before Alembic, bad URLs through the CLI, the heartbeat lease, concurrent writers, the server
stopping mid-run. The PostgreSQL server is real (`conveyor.testing.postgres_server`: initdb in a
temporary folder, 127.0.0.1, a free port); nothing is mocked."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _support import local_project
from conveyor.store import Registry, Runs, open_store
from conveyor.store.migrate import HEAD, MIGRATIONS, alembic_config
from conveyor.store.postgres_server import PASSWORD, PostgresServer, wait_until_down
from conveyor.testing import free_port

GOLDEN = Path(__file__).parent / "golden"


def _schema(url: str) -> dict[str, object]:
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            found = inspect(conn)
            return {table: ([(c["name"], str(c["type"]), c["nullable"])
                             for c in found.get_columns(table)],
                            found.get_pk_constraint(table)["constrained_columns"],
                            sorted((i["name"], tuple(i["column_names"]))
                                   for i in found.get_indexes(table)))
                    for table in sorted(found.get_table_names())}
    finally:
        engine.dispose()


def _url(store_url, tmp_path, name):
    return store_url or f"sqlite:///{tmp_path / name / '.conveyor' / 'store.db'}"


def test_the_head_revision_is_the_newest_migration():
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config(None)).get_heads() == [HEAD]
    assert (MIGRATIONS / "env.py").is_file()


def test_a_new_store_and_the_migrations_make_the_same_schema(store_url, tmp_path, request):
    from alembic import command
    from sqlalchemy import create_engine

    open_store(tmp_path / "new", url=store_url).close()
    if store_url is None:
        migrated = f"sqlite:///{tmp_path / 'migrated.db'}"
    else:
        migrated = request.getfixturevalue("postgres_server").new_database()
    engine = create_engine(migrated)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "heads")
    engine.dispose()
    assert _schema(_url(store_url, tmp_path, "new")) == _schema(migrated)


def test_a_store_made_before_alembic_is_stamped_upgraded_and_keeps_its_rows(tmp_path):
    (tmp_path / ".conveyor").mkdir()
    with sqlite3.connect(tmp_path / ".conveyor" / "store.db") as conn:
        conn.executescript((GOLDEN / "store_schema4.sql").read_text())
    store = open_store(tmp_path)
    try:
        assert store.query("SELECT version_num FROM alembic_version")[0][0] == HEAD
        run = Runs(store).get("20250101-120000-aaaa")
        assert (run.status, run.created_at, run.host) == ("completed", 1735732800.25, "old-host")
        assert Runs(store).metrics(run.id) == {"accuracy": 0.875}
        registry = Registry(store)
        assert registry.aliases("old") == {"champion": 1}
        registry.register(name="old", run_id="r2", stage="register", artifact={}, metrics={},
                          gate={}, decision="passed", config_hash="h", data={})
        registry.set_alias("old", "champion", 2, action="promote", reason="new", expect=1)
        assert [h["version"] for h in registry.history("old")] == [1, 2]
        assert "heartbeat_at" in [r[1] for r in store.query("PRAGMA table_info(runs)")]
    finally:
        store.close()


def test_records_round_trip_on_both_backends(store_url, tmp_path):
    from conveyor_monitor.records import Monitoring
    from conveyor_retrain.records import RetrainDecisions

    store = open_store(tmp_path, url=store_url)
    try:
        log = Monitoring(store)
        batch = log.record(model_name="churn", model_version=1, source="w1.csv",
                           source_sha256="a" * 64, rows=10, status="ok", drift_share=0.25,
                           performance={"accuracy": 0.8}, created_at=1735732800.125)
        assert log.get(batch.id[:12]).created_at == 1735732800.125  # double precision
        assert [b.id for b in log.batches(model_name="churn")] == [batch.id]
        decisions = RetrainDecisions(store)
        decision = decisions.start(model_name="churn", trigger=batch.id, batches=[batch.id])
        done = decisions.finish(decision, outcome="kept", reasons=["gate failed"])
        assert (done.outcome, done.reasons) == ("kept", ["gate failed"])
        assert decisions.get(decision[:10]).id == decision
        version = store.data_version()
        assert isinstance(version, int)
    finally:
        store.close()


# --- bad URLs, through the CLI ------------------------------------------------------------------

def _assert_store_url_error(result, origin, *secrets):
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "store.url" in result.stderr and origin in result.stderr, result.stderr
    assert "Traceback" not in output
    for secret in secrets:
        assert secret not in output


def test_bad_store_urls_exit_2_naming_the_setting_and_never_the_password(tmp_path,
                                                                         postgres_server):
    project = local_project(tmp_path / "p")
    port = free_port()
    cases = {
        "garbage": ("not a url at all", "is not a database URL"),
        "driver": ("postgresql+nosuchdriver://me@db/x", "unknown database driver"),
        "mysql": ("mysql://me:hunter2-secret@127.0.0.1/x", "SQLite or PostgreSQL only"),
        "unreachable": (f"postgresql+psycopg://me:hunter2-secret@127.0.0.1:{port}/x",
                        "cannot be connected to"),
        "password": (postgres_server.url("postgres", password="wrong-secret-pw"),
                     "password authentication failed"),
        "database": (postgres_server.url("no_such_database"), "does not exist"),
    }
    for name, (url, problem) in cases.items():
        result = project.cli("runs", "list", f"store.url={url}")
        _assert_store_url_error(result, "the command line", "hunter2-secret", "wrong-secret-pw",
                                PASSWORD)
        assert problem in result.stderr, (name, result.stderr)
    result = project.cli("runs", "list", env={"CONVEYOR_STORE_URL": cases["password"][0]})
    _assert_store_url_error(result, "environment variable CONVEYOR_STORE_URL", "wrong-secret-pw")
    assert "***" in result.stderr
    config = project.path / "conveyor.yaml"
    config.write_text(config.read_text() + "store:\n  url: ${oc.env:TEAM_DB}\n")
    result = project.cli("runs", "list", env={"TEAM_DB": cases["unreachable"][0]})
    _assert_store_url_error(result, "conveyor.yaml", "hunter2-secret")
    result = project.run(f"store.url={cases['database'][0]}")
    _assert_store_url_error(result, "the command line", PASSWORD)


@pytest.mark.slow
def test_run_list_and_promote_through_the_cli_on_postgresql(new_project, postgres_url):
    project = new_project()
    project.run(f"store.url={postgres_url}", check=True)
    runs = json.loads(project.cli("runs", "list", "--json", f"store.url={postgres_url}",
                                  check=True).stdout)
    assert [r["status"] for r in runs] == ["completed"]
    assert not (project.path / ".conveyor" / "store.db").exists()
    team = {"CONVEYOR_STORE_URL": postgres_url}
    project.cli("run", "seed=7", check=True, env=team)
    models = project.cli("models", "list", "--json", check=True, env=team)
    assert "proj" in models.stdout
    promoted = project.cli("models", "promote", "proj", "1", "--force", "--reason", "back",
                           check=True, env=team)
    assert promoted.returncode == 0
    history = Registry(open_store(project.path, url=postgres_url)).history("proj")
    assert history[-1]["version"] == 1 and history[-1]["reason"] == "back"
    assert len(json.loads(project.cli("runs", "list", "--json", env=team).stdout)) == 2


# --- the heartbeat lease ------------------------------------------------------------------------

def test_a_run_killed_on_another_host_shows_interrupted_after_its_lease(store_url, tmp_path):
    project = local_project(tmp_path / "p", pipeline={"slow": {"uses": "faults.slow"}})
    (project.path / "SLOW").write_text("")
    env = {**os.environ, "CONVEYOR_HOST_NAME": "other-machine",
           "CONVEYOR_STORE_HEARTBEAT_SECONDS": "0.2"}
    if store_url:
        env["CONVEYOR_STORE_URL"] = store_url
    from conveyor.testing import conveyor_executable

    process = subprocess.Popen([conveyor_executable(), "run"], cwd=project.path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (project.path / "slow-stage-started").exists():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        store = open_store(project.path, url=store_url)
        # Beats every 0.2 s judged by a 3 s lease: a slow CI machine may miss a few beats
        # without the live run being taken for dead.
        time.sleep(0.8)
        store.mark_interrupted(lease_seconds=3)
        assert [r.status for r in Runs(store).list()] == ["running"]
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        time.sleep(3.5)
        store.mark_interrupted(lease_seconds=3)  # this process claims another host name
        [run] = Runs(store).list()
        assert (run.status, run.host) == ("interrupted", "other-machine")
        store.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


# --- concurrent writers -------------------------------------------------------------------------

PROMOTER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from conveyor.store import AliasMoved, Registry, open_store

    folder, url, version, name = Path(sys.argv[1]), sys.argv[2] or None, int(sys.argv[3]), sys.argv[4]
    registry = Registry(open_store(folder, url=url))

    def wait_for_the_others():  # every racer has read what it needs: then all go at once
        (folder / f"ready-{name}").write_text("")
        while not (folder / "go").exists():
            time.sleep(0.001)

    if version == 0:
        wait_for_the_others()
        print(registry.register(name="m", run_id="r", stage="s", artifact={}, metrics={},
                                gate={}, decision="passed", config_hash="h", data={}))
        sys.exit(0)
    seen = registry.aliases("m").get("champion")
    wait_for_the_others()
    try:
        registry.set_alias("m", "champion", version, action="promote", reason="race",
                           expect=seen)
        print("moved")
    except AliasMoved:
        registry.set_alias("m", "champion", version, action="promote", reason="after the race")
        print("moved after")
""")


def _racers(tmp_path, store_url, versions):
    script = tmp_path / "racer.py"
    script.write_text(PROMOTER)
    processes = [subprocess.Popen([sys.executable, str(script), str(tmp_path), store_url or "",
                                   str(version), str(n)], text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE,
                                  env={**os.environ, "CONVEYOR_HOST_NAME": f"host-{n}"})
                 for n, version in enumerate(versions)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{n}").exists() for n in range(len(versions))):
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.01)
    (tmp_path / "go").write_text("")
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(out.strip())
    return outputs


def test_two_machines_promoting_at_once_leave_one_champion_and_both_moves(store_url, tmp_path):
    store = open_store(tmp_path, url=store_url)
    registry = Registry(store)
    for _ in range(3):
        registry.register(name="m", run_id="r", stage="s", artifact={}, metrics={}, gate={},
                          decision="passed", config_hash="h", data={})
    registry.set_alias("m", "champion", 1, action="gate", reason="first")
    outputs = _racers(tmp_path, store_url, [2, 3])
    assert sorted(outputs) == ["moved", "moved after"]  # the compare-and-set let one through
    history = registry.history("m")
    assert history[0]["version"] == 1 and len(history) == 3
    assert {h["version"] for h in history[1:]} == {2, 3}
    assert history[2]["previous"] == history[1]["version"]  # the second saw the first's move
    assert registry.aliases("m") == {"champion": history[2]["version"]}
    store.close()


def test_machines_registering_at_once_get_distinct_consecutive_versions(store_url, tmp_path):
    open_store(tmp_path, url=store_url).close()
    outputs = _racers(tmp_path, store_url, [0] * 4)
    assert sorted(int(o) for o in outputs) == [1, 2, 3, 4]


# --- the server stopping mid-run ----------------------------------------------------------------

HELD_STAGE = """
import time

import conveyor


def _held(ctx):
    (ctx.project_dir / "slow-stage-started").write_text(ctx.run.id)
    deadline = time.monotonic() + 120
    while (ctx.project_dir / "HOLD").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"held": {"done": True}}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("held.until_released", _held))
"""


@pytest.mark.slow
def test_the_server_stopping_mid_run_fails_the_run_cleanly_and_the_store_stays_consistent(
        tmp_path):
    server = PostgresServer()
    try:
        server.start()
        url = server.new_database()
        project = local_project(tmp_path / "p", pipeline={
            "first": {"uses": "faults.produce"},
            "slow": {"uses": "held.until_released", "needs": ["first"]}},
            local=["faultstages", "held"], modules={"held": HELD_STAGE})
        (project.path / "HOLD").write_text("")
        from conveyor.testing import conveyor_executable

        process = subprocess.Popen([conveyor_executable(), "run", f"store.url={url}"],
                                   cwd=project.path, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not (project.path / "slow-stage-started").exists():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        server.stop("fast")
        wait_until_down(server.port)
        (project.path / "HOLD").unlink()  # the stage finishes; recording it fails
        out, err = process.communicate(timeout=120)
        assert process.returncode == 1, err
        assert "Traceback" not in out + err and PASSWORD not in out + err
        assert "store" in err
        server.start()
        listed = project.cli("runs", "list", "--json", f"store.url={url}", check=True)
        [run] = json.loads(listed.stdout)
        assert run["status"] in ("running", "failed", "interrupted")
        store = open_store(project.path, url=url)
        stages = {s.name: s.status for s in Runs(store).stages(run["id"])}
        assert stages.get("first") == "completed" and stages.get("slow") != "completed"
        store.close()
    finally:
        server.close()


# --- where the store is -------------------------------------------------------------------------

def test_store_settings_come_from_the_command_line_the_environment_conveyor_yaml_or_default(
        tmp_path, monkeypatch):
    from conveyor.store import location

    monkeypatch.delenv(location.URL_ENV, raising=False)
    monkeypatch.setenv("TEAM_DB_PASSWORD", "s3cret")
    (tmp_path / "conveyor.yaml").write_text(
        "project: p\nstore:\n  url: postgresql://ml:${oc.env:TEAM_DB_PASSWORD}@db/yaml\n"
        "  heartbeat_seconds: 4\n")
    found = location.resolve(tmp_path)
    assert (found.url, found.url_origin) == ("postgresql://ml:s3cret@db/yaml",
                                             str(tmp_path / "conveyor.yaml"))
    assert found.shown_url == "postgresql://ml:***@db/yaml" and found.heartbeat_seconds == 4.0
    assert (found.artifacts, found.artifacts_origin) == (None, location.DEFAULT_ORIGIN)
    monkeypatch.setenv(location.URL_ENV, "postgresql://ml@db/env")
    assert location.resolve(tmp_path).url_origin == f"environment variable {location.URL_ENV}"
    try:
        location.set_command_line(["seed=1", "store.url=postgresql://ml@db/cli",
                                   "store.artifacts=s3://bucket/p"])
        found = location.resolve(tmp_path)
        assert (found.url, found.url_origin) == ("postgresql://ml@db/cli", "the command line")
        assert (found.artifacts, found.artifacts_origin) == ("s3://bucket/p", "the command line")
        assert location.resolve(tmp_path, url="sqlite:///x.db").url == "sqlite:///x.db"
    finally:
        location.set_command_line([])
    assert location.resolve(tmp_path).url == "postgresql://ml@db/env"
    assert location.resolve(None).url == "postgresql://ml@db/env"
