"""A throw-away PostgreSQL server for tests: `initdb` in a temporary folder, a free port on
127.0.0.1, a fresh database per test.

    with PostgresServer() as server:              # finds initdb/pg_ctl, starts the server
        url = server.new_database()               # postgresql+psycopg://conveyor:...@127.0.0.1:PORT/db_1
        ...
        server.stop(); server.start()             # the same data, e.g. to test a server outage

`conveyor.testing` wraps it as the pytest fixtures `postgres_server` (one server per test
session, shared by pytest-xdist's workers through `shared_server`) and `postgres_url` (a fresh
database per test, dropped after it).

    with shared_server(folder) as server:          # the first process starts it, the last stops it
        ...

`shared_server` coordinates processes through a state file and a file lock in `folder`: each
user records its pid; leaving, it forgets its own pid and those of processes that died (a
crashed worker), and the last one out stops the server. `stop_shared_server(folder)` is the
backstop the test session's main process calls at its very end, for when the last worker
crashed before it could. The binaries are
looked for on PATH, then in /usr/lib/postgresql/*/bin (Debian's `postgresql` package; `make
postgres` installs it). PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the
unprivileged `postgres` user (Debian's package makes it) through `runuser`, with the data folder
owned by it. The server authenticates TCP connections by password (`PASSWORD`), so tests can
check what a wrong one does; durability is off (fsync, synchronous_commit) for speed.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

USER = "conveyor"
PASSWORD = "conveyor-test-secret"
SERVICE_USER = "postgres"  # who runs the server when the tests run as root


class PostgresNotFound(RuntimeError):
    """No initdb/pg_ctl on this machine (install Debian's postgresql: `make postgres`)."""


def find_binaries() -> Path:
    """The folder holding initdb and pg_ctl."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl", path=str(Path(found).resolve().parent)):
        return Path(found).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    raise PostgresNotFound("no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin; "
                           "`make postgres` installs Debian's postgresql")


class PostgresServer:
    """One PostgreSQL server on 127.0.0.1 with its data in a temporary folder."""

    def __init__(self, port: int | None = None, *, folder: Path | None = None) -> None:
        """A new cluster (initdb) in a new temporary folder; with `folder` (and its `port`), the
        existing cluster there, e.g. one that another process started (`shared_server`)."""
        from conveyor.testing import free_port

        self.bin = find_binaries()
        self.port = port or free_port()
        self._count = 0
        self._as_root = os.geteuid() == 0
        self.folder = folder if folder is not None else Path(
            tempfile.mkdtemp(prefix="conveyor-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        if folder is not None:
            return
        os.chmod(self.folder, 0o755)
        self.folder.joinpath("pwfile").write_text(PASSWORD + "\n")
        if self._as_root:
            shutil.chown(self.folder, SERVICE_USER)
            shutil.chown(self.folder / "pwfile", SERVICE_USER)
        self._run("initdb", "-D", str(self.data), "-U", USER, "--pwfile",
                  str(self.folder / "pwfile"), "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / tool), *args]
        if self._as_root:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.folder)
        if check and result.returncode != 0:
            log = self.log.read_text() if self.log.is_file() else ""
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()}\n"
                               f"{log[-2000:]}")
        return result

    def start(self) -> PostgresServer:
        """Start the server (again, after `stop`) and wait until it accepts connections."""
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w",
                  "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server ("fast": connections cut, "immediate": like a crash)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def url(self, database: str = "postgres", *, password: str | None = PASSWORD) -> str:
        """The SQLAlchemy URL of `database` (with `password`; None for none)."""
        secret = f":{password}" if password is not None else ""
        return f"postgresql+psycopg://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> Any:
        """An autocommit connection to the `postgres` database (CREATE/DROP DATABASE)."""
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD,
                               dbname="postgres", autocommit=True)

    def new_database(self, *, template: str = "template0") -> str:
        """A new database, a copy of `template` (by default template0: empty); its URL. The
        template must have no open connections (PostgreSQL's rule for copying a database)."""
        self._count += 1
        name = f"db_{os.getpid()}_{self._count}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def drop_database(self, url_or_name: str) -> None:
        """Drop a database (by name or URL), closing the connections still open to it."""
        name = url_or_name.rsplit("/", 1)[-1].split("?")[0]
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def alive(self) -> bool:
        """Whether the server accepts connections."""
        try:
            with self._admin():
                return True
        except Exception:  # psycopg.OperationalError and the like: not (or no longer) up
            return False

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.close()


STATE = "server.json"
LOCK = "server.lock"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[Path]:
    """The state file of `folder`, with the folder's lock held (blocking) meanwhile."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield folder / STATE
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def shared_server(folder: Path) -> Iterator[PostgresServer]:
    """One PostgreSQL server for every process using `folder` at the same time (pytest-xdist's
    workers): started by the first, attached to by the others, stopped by the last one out (see
    the module docstring). A server recorded but no longer answering is replaced."""
    from conveyor.store.db import process_alive

    me = os.getpid()
    with _locked(folder) as state_path:
        state = _read_state(state_path)
        server = None
        if state is not None:
            server = PostgresServer(state["port"], folder=Path(state["folder"]))
            if not server.alive():
                server.close()
                server, state = None, None
        if server is None:
            server = PostgresServer()
            try:
                server.start()
            except BaseException:
                server.close()
                raise
            state = {"port": server.port, "folder": str(server.folder), "users": []}
        state["users"] = [pid for pid in state["users"] if process_alive(pid)] + [me]
        state_path.write_text(json.dumps(state))
    try:
        yield server
    finally:
        with _locked(folder) as state_path:
            state = _read_state(state_path) or {"users": []}
            state["users"] = [pid for pid in state["users"]
                              if pid != me and process_alive(pid)]
            if state["users"]:
                state_path.write_text(json.dumps(state))
            else:
                server.close()
                state_path.unlink(missing_ok=True)


def stop_shared_server(folder: Path) -> None:
    """Stop the server `shared_server(folder)` started, if it is still running (its last user
    crashed); for the process that outlives every user (pytest-xdist's controller)."""
    if not (folder / STATE).exists():
        return
    with _locked(folder) as state_path:
        state = _read_state(state_path)
        if state is not None:
            PostgresServer(state["port"], folder=Path(state["folder"])).close()
        state_path.unlink(missing_ok=True)


def wait_until_down(port: int, timeout: float = 10.0) -> None:
    """Wait until nothing accepts connections on 127.0.0.1:`port`."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
