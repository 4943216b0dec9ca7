"""A throw-away PostgreSQL server for tests: `initdb` in a temporary folder, a free port on
127.0.0.1, a fresh database per test.

    with PostgresServer() as server:              # finds initdb/pg_ctl, starts the server
        url = server.new_database()               # postgresql+psycopg://conveyor:...@127.0.0.1:PORT/db_1
        ...
        server.stop(); server.start()             # the same data, e.g. to test a server outage

`conveyor.testing` wraps it as the pytest fixtures `postgres_server` (one server per test
session and xdist worker) and `postgres_url` (a fresh database per test). The binaries are
looked for on PATH, then in /usr/lib/postgresql/*/bin (Debian's `postgresql` package; `make
postgres` installs it). PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the
unprivileged `postgres` user (Debian's package makes it) through `runuser`, with the data folder
owned by it. The server authenticates TCP connections by password (`PASSWORD`), so tests can
check what a wrong one does; durability is off (fsync, synchronous_commit) for speed.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
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

    def __init__(self, port: int | None = None) -> None:
        from conveyor.testing import free_port

        self.bin = find_binaries()
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self._count = 0
        self._as_root = os.geteuid() == 0
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

    def new_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        self._count += 1
        name = f"db_{os.getpid()}_{self._count}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

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


def wait_until_down(port: int, timeout: float = 10.0) -> None:
    """Wait until nothing accepts connections on 127.0.0.1:`port`."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
