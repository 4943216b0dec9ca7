"""The test session's one PostgreSQL server, shared by pytest-xdist's workers
(`conveyor.store.postgres_server.shared_server`): the first user starts it, others attach, the
last one out stops it, a crashed user is forgotten, and the session's main process stops what a
crashed last user left. And `--store=postgresql` / CONVEYOR_TEST_STORE, which run any test on a
fresh database of it. Real servers (initdb in a temporary folder, 127.0.0.1)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conveyor.store.postgres_server import shared_server, stop_shared_server, wait_until_down

pytestmark = pytest.mark.server

USER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from conveyor.store.postgres_server import shared_server

    with shared_server(Path(sys.argv[1])) as server:
        print(server.port, flush=True)
        sys.stdin.readline()
""")


def other_user(folder: Path) -> tuple[subprocess.Popen, int]:
    """Another process (a worker) using the shared server; its port."""
    process = subprocess.Popen([sys.executable, "-c", USER, str(folder)], text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return process, int(process.stdout.readline())


def crash(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def users(folder: Path) -> list[int]:
    return json.loads((folder / "server.json").read_text())["users"]


def test_users_share_one_server_and_the_last_one_out_stops_it_even_after_a_crash(tmp_path):
    folder = tmp_path / "pg"
    with shared_server(folder) as server:
        worker, port = other_user(folder)
        try:
            assert port == server.port and users(folder) == [os.getpid(), worker.pid]
        finally:
            crash(worker)  # it never says goodbye
    # the crashed worker's pid was forgotten: this process was the last one out
    wait_until_down(server.port)
    assert not server.alive() and not (folder / "server.json").exists()
    assert not Path(server.folder).exists()


def test_a_server_left_by_a_crashed_last_user_is_stopped_by_the_main_process(tmp_path):
    folder = tmp_path / "pg"
    worker, port = other_user(folder)
    crash(worker)
    state = json.loads((folder / "server.json").read_text())
    assert state["port"] == port
    stop_shared_server(folder)
    wait_until_down(port)
    assert not Path(state["folder"]).exists() and not (folder / "server.json").exists()
    stop_shared_server(folder)  # nothing left to stop: no error


def test_a_recorded_server_that_no_longer_answers_is_replaced(tmp_path):
    folder = tmp_path / "pg"
    worker, port = other_user(folder)
    crash(worker)
    state = json.loads((folder / "server.json").read_text())
    postmaster = int((Path(state["folder"]) / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)  # the server itself dies
    wait_until_down(port)
    with shared_server(folder) as server:
        assert server.alive() and users(folder) == [os.getpid()]


def test_any_test_runs_on_a_fresh_postgresql_database_with_store_postgresql(tmp_path):
    (tmp_path / "test_probe.py").write_text(textwrap.dedent("""
        import os

        from conveyor.store import open_store
        from conveyor.testing import current_store_backend

        def test_probe(tmp_path):
            url = os.environ["CONVEYOR_STORE_URL"]
            assert url.startswith("postgresql+psycopg://") and current_store_backend().url == url
            store = open_store(tmp_path)
            assert store.dialect == "postgresql" and store.query("SELECT id FROM runs") == []
            store.close()
    """))
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_TEST_STORE"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               str(tmp_path / "test_probe.py")]
    by_option = subprocess.run([*command, "--store=postgresql"], capture_output=True,
                               text=True, env=env, cwd=tmp_path, timeout=300)
    assert by_option.returncode == 0, by_option.stdout + by_option.stderr
    by_env = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={**env, "CONVEYOR_TEST_STORE": "postgresql"})
    assert by_env.returncode == 0, by_env.stdout + by_env.stderr
    sqlite = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=300)
    assert sqlite.returncode == 1 and "CONVEYOR_STORE_URL" in sqlite.stdout
    bogus = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                           env={**env, "CONVEYOR_TEST_STORE": "mysql"})
    assert bogus.returncode != 0 and "CONVEYOR_TEST_STORE='mysql'" in bogus.stdout + bogus.stderr
