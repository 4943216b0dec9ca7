"""Database access for the store: an SQLAlchemy engine on SQLite (the default) or PostgreSQL.

`Store` opens the database named by `store.url` (`conveyor.store.location`: None is SQLite at
`<project>/.conveyor/store.db`; `postgresql+psycopg://user@host/db` a shared server), brings its
schema up to date with Alembic (`conveyor.store.migrate`), and offers two calls the repositories
(`Runs`, `Registry`, the plugins' records) are written with:

* `Store.query(sql, params)`: rows of a SELECT, readable by name (`row["col"]`) and position;
* `Store.write(lock=None)`: a short write transaction, yielding a `StoreConnection` whose
  `execute(sql, params)` / `executemany(sql, rows)` run statements in it. `lock` names what the
  transaction must hold alone (e.g. "registry:churn"): on PostgreSQL a transaction-scoped advisory
  lock, so a read-then-write (the next version number, a compare-and-set alias move) is never
  interleaved with another machine's; on SQLite every write transaction is `BEGIN IMMEDIATE`
  already (retried while another process holds the lock; WAL lets readers go on).

A lock held across a long operation that commits many times (a retraining decision: read,
train for minutes, record) is `Store.lock(name, wait=True, log=None)`, a context manager: an OS
file lock under `.conveyor/locks/` on SQLite, a session-level advisory lock on its own
connection on PostgreSQL, so processes on every machine sharing the store take turns; either
dies with its holder. `Store.lock_held(name)` tells whether another process holds one now
(`conveyor.store.locks`). Lock names share one space with `write(lock=...)`'s.

SQL is portable text: named parameters (`:name`, with a dict) or `?` placeholders (with a
tuple; turned into named ones), `INSERT ... ON CONFLICT (...) DO UPDATE/NOTHING` for upserts
(SQLite and PostgreSQL share that syntax), no SQLite-only functions (`instr`, PRAGMA,
`sqlite_master`): compare text prefixes with `substr(col, 1, length(CAST(:p AS TEXT)))`.
A process killed mid-write leaves the database at its last commit; a database that becomes
unreachable mid-run raises StoreError (exit 1) with the URL's password masked.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import StoreError
from conveyor.store.locks import lock_key

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from conveyor.store.location import StoreLocation
    from conveyor.store.runs import Runs
    from conveyor.store.tables import TableSet

STORE_DIR = ".conveyor"
HOST_ENV = "CONVEYOR_HOST_NAME"
WRITE_RETRIES = 50


def host_name() -> str:
    """This machine's name as runs record it: `CONVEYOR_HOST_NAME` when set (containers, tests
    simulating several machines), else the host name."""
    return os.environ.get(HOST_ENV) or socket.gethostname()


class Record:
    """A row read back: by column name (`row["id"]`) or position (`row[0]`); `dict(row)`
    gives {column: value}."""

    __slots__ = ("_row",)

    def __init__(self, row: Any) -> None:
        self._row = row

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, str):
            return self._row._mapping[key]
        return self._row[key]

    def keys(self) -> list[str]:
        return list(self._row._fields)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)

    def __repr__(self) -> str:
        return f"Record({dict(self)!r})"


class _Result:
    def __init__(self, result: Any, rowcount: int | None = None) -> None:
        self._result = result
        self._rowcount = rowcount

    def fetchone(self) -> Record | None:
        row = self._result.fetchone()
        return None if row is None else Record(row)

    def fetchall(self) -> list[Record]:
        return [Record(row) for row in self._result.fetchall()]

    @property
    def rowcount(self) -> int:
        return self._rowcount if self._rowcount is not None else self._result.rowcount


@lru_cache(maxsize=512)
def _statement(sql: str) -> tuple[Any, int]:
    """The `text()` of `sql` with each `?` turned into `:p0`, `:p1`, ... and how many."""
    from sqlalchemy import text

    parts = sql.split("?")
    if len(parts) == 1:
        return text(sql), 0
    named = "".join(f"{part}:p{i}" for i, part in enumerate(parts[:-1])) + parts[-1]
    return text(named), len(parts) - 1


def _bind(sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> tuple[Any, dict]:
    statement, count = _statement(sql)
    if params is None or isinstance(params, Mapping):
        return statement, dict(params or {})
    if len(params) != count:
        raise ValueError(f"{count} placeholders, {len(params)} values: {sql}")
    return statement, {f"p{i}": value for i, value in enumerate(params)}


class StoreConnection:
    """The connection of one write transaction (`Store.write`)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @property
    def dialect(self) -> str:
        """"sqlite" or "postgresql"."""
        return self.connection.dialect.name

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
                ) -> _Result:
        statement, values = _bind(sql, params)
        return _Result(self.connection.execute(statement, values))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> _Result:
        """`sql` once per row (in one round trip where the driver can); rowcount is the sum."""
        bound = [_bind(sql, row) for row in rows]
        if not bound:
            return _Result(None, 0)
        if sql.lstrip().upper().startswith("INSERT"):
            result = self.connection.execute(bound[0][0], [values for _, values in bound])
            return _Result(result, len(bound))
        count = sum(max(self.connection.execute(s, v).rowcount, 0) for s, v in bound)
        return _Result(None, count)


class Store:
    """The project's database plus its artifact folder.

    `root` is the project's `.conveyor/` folder (local scratch, temporary files and caches stay
    there whatever `store.url` says), `location` the resolved settings, `dialect` "sqlite" or
    "postgresql", `artifacts` the `ArtifactStore`."""

    def __init__(self, root: Path, tables: Iterable[TableSet] = (), *,
                 location: StoreLocation | None = None) -> None:
        from conveyor.store.location import DEFAULT_ORIGIN, StoreLocation

        self.root = root
        self.location = location or StoreLocation(None, DEFAULT_ORIGIN, None, DEFAULT_ORIGIN)
        self._tables: dict[str, TableSet] = {}  # owner: the table set this process made sure of
        self.path = root / "store.db"
        # One lock per process: SQLite's single connection is shared by the runner and its
        # output writer thread; on PostgreSQL it keeps this process's writes in order.
        self._lock = threading.RLock()
        # The connection of the write transaction this thread is in, if any: a query or a
        # nested write() inside it runs on it (SQLite's single connection would otherwise be
        # checked back in, rolling the transaction's earlier writes back; on PostgreSQL a
        # second connection would neither see them nor get the advisory lock it holds).
        self._current = threading.local()
        root.mkdir(parents=True, exist_ok=True)
        self.engine = self._engine()
        self.dialect = self.engine.dialect.name
        self._read_engine = (self.engine if self.dialect == "sqlite" else
                             self.engine.execution_options(isolation_level="AUTOCOMMIT"))
        tables = list(tables)
        try:
            from conveyor.store.artifacts import ArtifactStore
            from conveyor.store.migrate import upgrade

            upgrade(self, tables)  # the core and the plugins' Alembic branches, at once
            self._tables.update((t.owner, t) for t in tables if t.is_branch)
            self.artifacts = ArtifactStore(root, self, url=self.location.artifacts,
                                           origin=self.location.artifacts_origin)
        except BaseException:  # a rejected store.artifacts too: no connection left open
            self.engine.dispose()
            raise
        try:
            self.ensure_tables(tables)
        except BaseException:
            self.close()
            raise
        if self.dialect != "sqlite" and self.location.artifacts is None:
            _warn_local_artifacts(self)

    @property
    def shown_url(self) -> str:
        """Where the database is, for messages (a password shown as ***)."""
        return self.location.shown_url if self.location.url else str(self.path)

    def _engine(self) -> Engine:
        from conveyor.store.engine import make_engine

        return make_engine(self.location, self.path)

    # --- plugin tables -------------------------------------------------------------------------

    def ensure_tables(self, tables: Iterable[TableSet]) -> None:
        """Create or upgrade the tables plugins keep in the store (`conveyor.store.TableSet`,
        from the `conveyor_store_tables` hook): Alembic branches through
        `conveyor.store.migrate.upgrade` (one transaction with the core's), then the deprecated
        hand-written sets (one transaction, each owner's new version recorded in `meta`).
        Cheap when nothing is to do: a plugin's repository calls it every time it is made."""
        pending = [t for t in tables if self._tables.get(t.owner) != t]
        if not pending:
            return
        branches = [t for t in pending if t.is_branch]
        if branches:
            from conveyor.store.migrate import VERSION_TABLE, at_heads, read_revisions, upgrade

            # Through query(): inside a write transaction of this thread it reads that one
            # (SQLite's single connection checked out again would roll it back).
            revisions = read_revisions(self.query, self.dialect,
                                       [VERSION_TABLE, *(t.version_table for t in branches)])
            if not at_heads(revisions, branches):
                outer: StoreConnection | None = getattr(self._current, "conn", None)
                with self._lock:
                    upgrade(self, branches, connection=outer.connection if outer else None)
        legacy = [t for t in pending if not t.is_branch]
        if any(self.table_version(t.owner) < t.version for t in legacy):
            with self.write(lock="schema") as conn:
                for table_set in legacy:  # read again: another process may have done it
                    self._hand_written(conn, table_set)
        for table_set in pending:
            self._tables[table_set.owner] = table_set

    def _hand_written(self, conn: StoreConnection, table_set: TableSet) -> None:
        """The deprecated form: `table_set`'s create or upgrade statements, in `conn`."""
        from sqlalchemy.exc import DBAPIError

        current = self.table_version(table_set.owner, conn)
        if current >= table_set.version:
            return
        statements = table_set.create if current == 0 else [
            statement for version in range(current + 1, table_set.version + 1)
            for statement in table_set.upgrades[version]]
        for statement in statements:
            try:
                conn.execute(statement)
            except DBAPIError as exc:
                raise StoreError(
                    f"the tables of {table_set.owner} in {self.shown_url} could not "
                    f"be brought from version {current} to {table_set.version}: "
                    f"{_reason(exc)}",
                    hint=f"nothing was changed; the plugin providing "
                         f"{table_set.owner}'s tables has a faulty upgrade") from exc
        conn.execute("INSERT INTO meta (key, value) VALUES (:key, :value) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                     {"key": table_set.meta_key, "value": str(table_set.version)})

    def table_revision(self, owner: str) -> str | None:
        """The revision of `owner`'s Alembic branch in this store (None: none recorded)."""
        from conveyor.store.migrate import read_revisions
        from conveyor.store.tables import version_table

        name = version_table(owner)
        revisions = read_revisions(self.query, self.dialect, [name]).get(name)
        return min(revisions) if revisions else None

    def table_version(self, owner: str, conn: StoreConnection | None = None) -> int:
        """The hand-written (deprecated) schema version of `owner`'s tables in this store (0:
        none recorded); an Alembic branch's is `table_revision`, read here as the hand-written
        version its table set's `legacy_versions` maps to it, when this store made sure of
        that set (code written for the hand-written form keeps reading a number)."""
        from conveyor.store.tables import meta_key

        known = self._tables.get(owner)
        if known is not None and known.is_branch and conn is None:
            revision = self.table_revision(owner)
            versions = [v for v, r in known.legacy_versions.items() if r == revision]
            if versions:
                return max(versions)
        sql, params = "SELECT value FROM meta WHERE key=:key", {"key": meta_key(owner)}
        rows = conn.execute(sql, params).fetchall() if conn else self.query(sql, params)
        try:
            return int(rows[0][0]) if rows else 0
        except (TypeError, ValueError):
            return 0

    # --- transactions ---------------------------------------------------------------------------

    @contextmanager
    def write(self, lock: str | None = None) -> Iterator[StoreConnection]:
        """A write transaction (retried while another SQLite process holds the lock); `lock`
        names what it must hold alone on PostgreSQL (see the module docstring). Inside it, on
        the same thread, `query` reads through it (seeing its writes) and a nested `write`
        joins it (committed, or rolled back, with the outer one)."""
        outer: StoreConnection | None = getattr(self._current, "conn", None)
        if outer is not None:  # nested: part of the enclosing transaction
            with self._lock, self._errors():
                if lock is not None and self.dialect == "postgresql":
                    outer.execute("SELECT pg_advisory_xact_lock(:key)", {"key": lock_key(lock)})
                yield outer
            return
        with self._lock, self._errors(), self._transaction(lock) as conn:
            self._current.conn = conn
            try:
                yield conn
            finally:
                self._current.conn = None

    @contextmanager
    def _transaction(self, lock: str | None) -> Iterator[StoreConnection]:
        from sqlalchemy.exc import OperationalError

        for attempt in range(WRITE_RETRIES):
            connection = self.engine.connect().execution_options(conveyor_write=True)
            try:
                connection.begin()
                break
            except OperationalError as exc:
                connection.close()
                text = str(exc.orig)
                if self.dialect != "sqlite" or ("locked" not in text and "busy" not in text):
                    raise
                time.sleep(min(0.05 * (attempt + 1), 1.0))
        else:
            raise StoreError(f"the project store {self.path} stayed locked by another process")
        try:
            if lock is not None and self.dialect == "postgresql":
                from sqlalchemy import text

                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": lock_key(lock)})
            yield StoreConnection(connection)
            connection.commit()
            if self.dialect == "postgresql":
                from sqlalchemy import text

                # After the commit (a sequence is not transactional): whoever sees the new
                # value sees what was committed; advanced before, a poller could read the new
                # value, reload the old rows, and then miss the commit until the next write.
                connection.execute(text("SELECT nextval('conveyor_data_version')"))
        finally:
            connection.close()  # rolls back what was not committed

    @contextmanager
    def lock(self, name: str, *, wait: bool = True, log: Callable[[str], None] | None = None,
             description: str = "") -> Iterator[None]:
        """Hold the lock `name` (any text) for the block, alone among every process using this
        store, on any machine for a shared one; its holder's death frees it. When another
        process holds it: with `wait`, say so once through `log` ("waiting for another process
        to finish {description or name}") and wait; without, raise `LockBusy`. Not re-entrant:
        this process taking a lock it holds raises StoreError (`conveyor.store.locks`)."""
        from conveyor.store.locks import advisory_lock, file_lock, holding

        with holding(self._lock_scope, name):
            if self.dialect == "postgresql":
                with self._errors(), advisory_lock(self.engine, name, wait=wait, log=log,
                                                   description=description,
                                                   where=self.shown_url):
                    yield
            else:
                with file_lock(self.root, name, wait=wait, log=log, description=description,
                               where=self.shown_url):
                    yield

    def lock_held(self, name: str) -> bool:
        """Whether another process holds the lock `name` now (`Store.lock`; this process's own
        hold does not count): tried and let go at once, so the answer may be stale by the time
        it is read. A record left "running" under a lock nobody holds was interrupted."""
        from conveyor.store.locks import advisory_lock_held, file_lock_held, held_here

        if held_here(self._lock_scope, name):
            return False  # exclusive: no other process can hold it
        if self.dialect == "postgresql":
            with self._errors():
                return advisory_lock_held(self.engine, name)
        return file_lock_held(self.root, name)

    @property
    def _lock_scope(self) -> str:
        """Which store a lock name belongs to, for this process's record of the locks it holds."""
        return str(self.engine.url) if self.dialect == "postgresql" else str(self.root.resolve())

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Database failures at run time (the server stopped, the disk is full) as StoreError
        naming the store, its password masked."""
        from sqlalchemy.exc import DBAPIError

        try:
            yield
        except DBAPIError as exc:
            raise StoreError(f"the project store {self.shown_url} failed: {_reason(exc)}",
                             hint="nothing of the failed write was kept; check the database "
                                  "server and try again") from exc

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Record]:
        """The rows of one SELECT (see the module docstring for the SQL accepted)."""
        statement, values = _bind(sql, params)
        current: StoreConnection | None = getattr(self._current, "conn", None)
        if current is not None:  # inside a write transaction: read it, with its own writes
            with self._lock, self._errors():
                return [Record(row) for row in current.connection.execute(statement, values)]
        with self._lock, self._errors(), self._read_engine.connect() as connection:
            return [Record(row) for row in connection.execute(statement, values)]

    def close(self) -> None:
        self.engine.dispose()

    @property
    def runs(self) -> Runs:
        """The runs recorded in this store (`conveyor.store.Runs`)."""
        from conveyor.store.runs import Runs

        return Runs(self)

    def data_version(self) -> int:
        """Changes whenever another connection commits to the store, cheap enough to poll:
        SQLite's `PRAGMA data_version`; on PostgreSQL a sequence every write transaction
        advances once it has committed."""
        if self.dialect == "sqlite":
            return int(self.query("PRAGMA data_version")[0][0])
        return int(self.query("SELECT last_value FROM conveyor_data_version")[0][0])

    # --- artifacts ------------------------------------------------------------------------------

    def record_artifact(self, ref: Any) -> None:
        """Record a stored artifact (`ArtifactRef`: sha256, codec, suffix, size) in the
        `artifacts` table; one already recorded is left as it is."""
        with self.write() as conn:
            conn.execute("INSERT INTO artifacts (sha256, size, codec, suffix, created_at) "
                         "VALUES (:sha256, :size, :codec, :suffix, :at) "
                         "ON CONFLICT (sha256) DO NOTHING",
                         {"sha256": ref.sha256, "size": ref.size, "codec": ref.codec,
                          "suffix": ref.suffix, "at": time.time()})

    # --- file hashes ---------------------------------------------------------------------------

    def file_hash(self, path: str) -> tuple[int, int, int, str] | None:
        """(size, mtime_ns, inode, sha256) remembered for the file at absolute `path`."""
        rows = self.query("SELECT size, mtime_ns, inode, sha256 FROM file_hashes WHERE path=?",
                          (path,))
        return (rows[0]["size"], rows[0]["mtime_ns"], rows[0]["inode"], rows[0]["sha256"]) \
            if rows else None

    def remember_file_hash(self, path: str, size: int, mtime_ns: int, inode: int,
                           sha256: str) -> None:
        """Remember a file's sha256 with the (size, mtime_ns, inode) it was read at."""
        with self.write() as conn:
            conn.execute(
                "INSERT INTO file_hashes (path, size, mtime_ns, inode, sha256) "
                "VALUES (:path, :size, :mtime_ns, :inode, :sha256) ON CONFLICT (path) DO UPDATE "
                "SET size = excluded.size, mtime_ns = excluded.mtime_ns, inode = excluded.inode, "
                "sha256 = excluded.sha256",
                {"path": path, "size": size, "mtime_ns": mtime_ns, "inode": inode,
                 "sha256": sha256})

    # --- runs ------------------------------------------------------------------------------

    def now_sql(self) -> str:
        """SQL for the database's clock in Unix seconds: leases are stamped and judged by it,
        so the clocks of the machines sharing the store need not agree."""
        if self.dialect == "postgresql":
            return "CAST(extract(epoch FROM clock_timestamp()) AS DOUBLE PRECISION)"
        return "((julianday('now') - 2440587.5) * 86400.0)"

    def mark_interrupted(self, lease_seconds: float | None = None) -> None:
        """Runs left "running" by a process that is gone are marked interrupted: on this host
        when their process id is dead; on any other host when their lease has ended by the
        database's clock (`runs.lease_until`, which the run renews every
        `store.heartbeat_seconds` of ITS configuration; rows without one: `heartbeat_at` older
        than `LEASE_BEATS` x this store's `store.heartbeat_seconds`). `lease_seconds` judges
        every run by `heartbeat_at` older than that instead. The update re-checks the lease,
        so a beat that lands between the look and the update keeps its run running."""
        from conveyor.store.heartbeat import LEASE_BEATS

        now, host = self.now_sql(), host_name()
        beat = "COALESCE(heartbeat_at, created_at) + :lease"
        if lease_seconds is None:
            lease, ended = LEASE_BEATS * self.location.heartbeat_seconds, \
                f"COALESCE(lease_until, {beat}) < {now}"
        else:
            lease, ended = lease_seconds, f"{beat} < {now}"
        rows = self.query(f"SELECT id, pid, host, ({ended}) AS ended FROM runs "
                          "WHERE status='running'", {"lease": lease})
        dead = [(row["id"], "") for row in rows
                if row["host"] == host and not process_alive(row["pid"])]
        dead += [(row["id"], f" AND {ended}") for row in rows
                 if row["host"] != host and row["ended"]]
        if not dead:
            return
        with self.write() as conn:
            for run_id, still_ended in dead:
                marked = conn.execute(
                    "UPDATE runs SET status='interrupted', error='the process was killed' "
                    f"WHERE id=:id AND status='running'{still_ended}",
                    {"id": run_id, "lease": lease}).rowcount
                if marked:
                    conn.execute("UPDATE stages SET status='interrupted' "
                                 "WHERE run_id=:id AND status='running'", {"id": run_id})

    def heartbeat(self, run_id: str, lease_seconds: float | None = None, *,
                  conn: StoreConnection | None = None) -> None:
        """Renew a running run's lease by the database's clock: `runs.heartbeat_at` now,
        `runs.lease_until` now + `lease_seconds` (default `LEASE_BEATS` x this store's
        `store.heartbeat_seconds`); in `conn`'s transaction when given."""
        from conveyor.store.heartbeat import LEASE_BEATS

        lease = LEASE_BEATS * self.location.heartbeat_seconds if lease_seconds is None \
            else lease_seconds
        now = self.now_sql()
        sql = (f"UPDATE runs SET heartbeat_at = {now}, lease_until = {now} + :lease "
               "WHERE id=:id AND status='running'")
        if conn is not None:
            conn.execute(sql, {"lease": lease, "id": run_id})
            return
        with self.write() as own:
            own.execute(sql, {"lease": lease, "id": run_id})


_warned_local_artifacts: set[Path] = set()


def _warn_local_artifacts(store: Store) -> None:
    """Once per process and project: a shared database with this machine's artifact folder
    works here, but another machine finds the runs and not their artifacts."""
    if store.root in _warned_local_artifacts:
        return
    _warned_local_artifacts.add(store.root)
    import sys

    print(f"warning: the store's database {store.shown_url} (from {store.location.url_origin}) "
          f"is shared, but store.artifacts is unset: artifacts go to this machine's "
          f"{store.artifacts.location}, where other machines will not find them; set "
          "store.artifacts (or CONVEYOR_STORE_ARTIFACTS) to s3://bucket/prefix or a folder "
          "every machine mounts", file=sys.stderr)


def _reason(exc: Exception) -> str:
    """The first line of a driver's error, without SQL or parameters."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return re.sub(r"password=\S+", "password=***", text[0]) if text else type(orig).__name__


def process_alive(pid: int | None) -> bool:
    """Whether the process `pid` of this host still runs: how a record left "running" by a
    process that was killed is told from one still being written."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_store(project_dir: Path, tables: Iterable[TableSet] = (), *, url: str | None = None,
               artifacts: str | None = None) -> Store:
    """The project's store (`.conveyor/` under `project_dir`), made if missing, with the tables
    of `tables` (the plugins' `conveyor_store_tables`, e.g. `host.contributions.store_tables`)
    created or upgraded. `url` / `artifacts` None: `store.url` / `store.artifacts` as the command
    line, the environment or conveyor.yaml say (`conveyor.store.location.resolve`)."""
    from conveyor.store.location import resolve

    location = resolve(project_dir, url=url, artifacts=artifacts)
    return Store(project_dir / STORE_DIR, tables, location=location)


def dumps(value: Any) -> str:
    """A value as the store keeps it in a JSON text column (keys sorted, other types as text)."""
    return json.dumps(value, sort_keys=True, default=str)


def loads(text: str | None, default: Any = None) -> Any:
    """A JSON text column read back; `default` for NULL."""
    if text is None:
        return default
    return json.loads(text)


def as_number(value: Any) -> float | None:
    """A metric value as read back from the store, or None when it is not a number (a row
    damaged by hand or by another tool: listings flag it rather than crash on it)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def numeric_metrics(values: Any, problems: list[str], where: str = "") -> dict[str, float]:
    """`values` ({name: value}) with every value that is not a number left out and named in
    `problems` instead."""
    if not isinstance(values, dict):
        problems.append(f"{where}metrics are unreadable: {_shown(values)}")
        return {}
    result: dict[str, float] = {}
    for key, value in values.items():
        number = as_number(value)
        if number is None:
            problems.append(f"{where}metric {key} is not a number: {_shown(value)}")
        else:
            result[str(key)] = number
    return result


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
