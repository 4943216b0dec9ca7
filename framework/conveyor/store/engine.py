"""The SQLAlchemy engine behind a store, and the clear errors a bad `store.url` gets.

SQLite (the default, `<project>/.conveyor/store.db`) keeps what the store has always relied on:
one connection per process shared under a lock (`StaticPool`), WAL so readers never wait for a
writer, a 60 s busy timeout, and `BEGIN IMMEDIATE` for write transactions (SQLAlchemy's
documented pysqlite recipe: the driver's own transaction handling is switched off and the
"begin" event emits the statement). Any other URL is handed to SQLAlchemy as it is: PostgreSQL
through psycopg 3 (`postgresql+psycopg://...`; a bare `postgresql://` is read as that too).

`make_engine` connects once, so an unusable URL fails here, before anything runs, with a
`StoreConfigError` (exit 2) naming `store.url`, where it came from and the URL with its password
masked: unparseable, unknown driver, unreachable server, wrong credentials, missing database.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.store.location import StoreConfigError, StoreLocation

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

CONNECT_TIMEOUT_SECONDS = 10
SQLITE_TIMEOUT_SECONDS = 60


def make_engine(location: StoreLocation, sqlite_path: Path) -> Engine:
    """The engine for `location.url` (None: SQLite at `sqlite_path`), connected once."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
    from sqlalchemy.pool import StaticPool

    if location.url is None:
        url = make_url(f"sqlite:///{sqlite_path}")
    else:
        try:
            url = make_url(location.url)
        except (ArgumentError, ValueError) as exc:
            raise _error(location, "is not a database URL (dialect+driver://user@host:port/"
                                   "database, e.g. postgresql+psycopg://me@db.example:5432/"
                                   "conveyor)") from exc
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            # Before create_engine: it would fail on the missing driver of that database
            # ("No module named 'MySQLdb'"), which reads as if installing it would help.
            raise _error(location, f"names a {url.get_backend_name()} database; Conveyor's "
                                   "store runs on SQLite or PostgreSQL only (sqlite:///PATH or "
                                   "postgresql+psycopg://...)")
    try:
        if url.get_backend_name() == "sqlite":
            if url.database in (None, "", ":memory:"):
                raise _error(location, "names no SQLite file (an in-memory store keeps nothing)")
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, poolclass=StaticPool, connect_args={
                "timeout": SQLITE_TIMEOUT_SECONDS, "check_same_thread": False})
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
        else:
            args: dict[str, Any] = {}
            if url.get_backend_name() == "postgresql":
                args["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS,
                                        "application_name": "conveyor"}
            engine = create_engine(url, pool_pre_ping=True, **args)
    except NoSuchModuleError as exc:
        raise _error(location, f"names an unknown database driver '{url.drivername}' "
                               "(use sqlite:///PATH or postgresql+psycopg://...)") from exc
    except (ArgumentError, ImportError, TypeError) as exc:
        raise _error(location, f"cannot be used: {_first_line(exc)}") from exc
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        raise _error(location, f"cannot be connected to: {_first_line(exc.orig or exc)}") from exc
    return engine


def _error(location: StoreLocation, problem: str) -> StoreConfigError:
    shown = location.shown_url
    return StoreConfigError(f"store.url {shown} (from {location.url_origin}) {problem}",
                            hint="set store.url in conveyor.yaml, CONVEYOR_STORE_URL or on the "
                                 "command line (store.url=...); unset, the project's SQLite "
                                 "store is used")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _sqlite_connect(dbapi_connection: Any, record: Any) -> None:
    # The driver's own BEGIN handling off: `_sqlite_begin` emits BEGIN IMMEDIATE for writes,
    # reads run in autocommit (no transaction to open and close around each SELECT).
    dbapi_connection.isolation_level = None
    dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_TIMEOUT_SECONDS * 1000}")
    for attempt in range(50):
        try:
            # WAL lets readers (runs list, the UI) work while a run writes.
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
            break
        except Exception:  # another process switching it at the same moment
            time.sleep(0.05 * (attempt + 1))
    dbapi_connection.execute("PRAGMA synchronous = NORMAL")


def _sqlite_begin(connection: Any) -> None:
    if connection.get_execution_options().get("conveyor_write"):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
