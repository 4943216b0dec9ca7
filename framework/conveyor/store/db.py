"""SQLite access for the store: one connection per process, WAL, retried write transactions.

Writes happen in short `BEGIN IMMEDIATE` transactions, so two runs on one project interleave
instead of failing, and a process killed mid-write leaves the database at its last commit.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import StoreError

if TYPE_CHECKING:
    from conveyor.store.runs import Runs
    from conveyor.store.tables import TableSet

# 2: monitor_batches (now conveyor-monitor's, see conveyor_monitor.records). 3: model_contracts
# (conveyor.contract). Opening an older store adds the new tables. Tables a plugin owns are not
# here: it declares them with `conveyor_store_tables` (conveyor.store.tables), versioned apart;
# stores made before that keep the monitor_batches and retrain_decisions tables this schema
# used to create, and the plugins' own (IF NOT EXISTS) statements keep them as they are.
# 4: runs.plugins (the plugins a run ran with), a column added to existing stores (UPGRADES).
SCHEMA_VERSION = 4
STORE_DIR = ".conveyor"
# Columns added to tables after they were first created: (table, column, type).
ADDED_COLUMNS = (("runs", "plugins", "TEXT"),)

# data_inputs.sha256 holds each data file's version as the run recorded it: the core's own
# sha256 (bare hex), or "ALGORITHM:HEX" from a `conveyor_file_fingerprint` plugin ("md5:..." is
# the file's DVC version with conveyor-dvc). The column's name predates the hook.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, project TEXT, status TEXT NOT NULL, created_at REAL NOT NULL,
    finished_at REAL, duration REAL, pid INTEGER, host TEXT, invocation TEXT, command TEXT,
    overrides TEXT, config TEXT, config_hash TEXT, git_commit TEXT, git_dirty INTEGER,
    packages TEXT, error TEXT, exit_code INTEGER, plugins TEXT);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created_at);
CREATE INDEX IF NOT EXISTS runs_invocation ON runs(invocation);
CREATE TABLE IF NOT EXISTS stages (
    run_id TEXT NOT NULL, name TEXT NOT NULL, position INTEGER, type TEXT, type_version TEXT,
    status TEXT NOT NULL, fingerprint TEXT, cached INTEGER DEFAULT 0, reason TEXT,
    started_at REAL, duration REAL, settings TEXT, upstream TEXT, files TEXT, outputs TEXT,
    error TEXT, PRIMARY KEY (run_id, name));
CREATE INDEX IF NOT EXISTS stages_fingerprint ON stages(fingerprint, status);
CREATE INDEX IF NOT EXISTS stages_name ON stages(name, status, started_at);
CREATE TABLE IF NOT EXISTS params (run_id TEXT, key TEXT, value TEXT, PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT, stage TEXT, key TEXT, value REAL, PRIMARY KEY (run_id, stage, key));
CREATE TABLE IF NOT EXISTS artifacts (
    sha256 TEXT PRIMARY KEY, size INTEGER, codec TEXT, suffix TEXT, created_at REAL);
CREATE TABLE IF NOT EXISTS run_artifacts (
    run_id TEXT, stage TEXT, name TEXT, sha256 TEXT, PRIMARY KEY (run_id, stage, name));
CREATE TABLE IF NOT EXISTS data_inputs (
    run_id TEXT, path TEXT, sha256 TEXT, size INTEGER, PRIMARY KEY (run_id, path));
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, sha256 TEXT);
CREATE TABLE IF NOT EXISTS model_versions (
    name TEXT, version INTEGER, run_id TEXT, stage TEXT, artifact TEXT, metrics TEXT,
    gate TEXT, decision TEXT, config_hash TEXT, data TEXT, created_at REAL,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS model_contracts (
    name TEXT, version INTEGER, contract TEXT NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT, alias TEXT, version INTEGER, updated_at REAL, PRIMARY KEY (name, alias));
CREATE TABLE IF NOT EXISTS alias_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, alias TEXT, version INTEGER,
    previous INTEGER, action TEXT, actor TEXT, reason TEXT, forced INTEGER, at REAL);
"""

WRITE_RETRIES = 50


class Store:
    """The project's database plus its artifact folder."""

    def __init__(self, root: Path, tables: Iterable[TableSet] = ()) -> None:
        self.root = root
        self._tables: dict[str, int] = {}  # owner: version this connection made sure of
        self.path = root / "store.db"
        # One connection per process, shared by the runner and its output writer thread.
        self._lock = threading.RLock()
        root.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                        check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA busy_timeout = 60000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"the project store {self.path} cannot be opened: {exc}",
                             hint="move the damaged .conveyor/store.db aside to start afresh") from exc
        from conveyor.store.artifacts import ArtifactStore

        self.artifacts = ArtifactStore(  # the environment only, until open_store resolves it
            root, self, url=os.environ.get("CONVEYOR_STORE_ARTIFACTS"),
            origin="environment variable CONVEYOR_STORE_ARTIFACTS")
        try:
            self.ensure_tables(tables)
        except BaseException:
            self.conn.close()
            raise

    def _migrate(self) -> None:
        for attempt in range(WRITE_RETRIES):
            try:
                # WAL lets readers (runs list, the UI) work while a run writes.
                self.conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                time.sleep(0.05 * (attempt + 1))
        self.conn.execute("PRAGMA synchronous = NORMAL")
        if self._schema_version() >= SCHEMA_VERSION:
            return
        # A new store, or one made by an older Conveyor: every statement is IF NOT EXISTS, so
        # running them all adds what is missing and leaves existing tables and rows alone. A
        # store from a newer Conveyor (higher version) is left as it is.
        with self.write() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            for table, column, kind in ADDED_COLUMNS:
                have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:  # a table created by an older Conveyor
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                         (str(max(SCHEMA_VERSION, self._schema_version())),))

    def ensure_tables(self, tables: Iterable[TableSet]) -> None:
        """Create or upgrade the tables plugins keep in the store (`conveyor.store.TableSet`,
        from the `conveyor_store_tables` hook): whatever is needed, in one transaction, with each
        owner's new version recorded in `meta`. Cheap when nothing is: a plugin's repository
        calls it every time it is made."""
        pending = [t for t in tables if self._tables.get(t.owner) != t.version]
        if not pending:
            return
        if any(self.table_version(t.owner) < t.version for t in pending):
            with self.write() as conn:
                for table_set in pending:  # read again: another process may have done it
                    current = self.table_version(table_set.owner)
                    if current >= table_set.version:
                        continue
                    statements = table_set.create if current == 0 else [
                        statement for version in range(current + 1, table_set.version + 1)
                        for statement in table_set.upgrades[version]]
                    for statement in statements:
                        try:
                            conn.execute(statement)
                        except sqlite3.Error as exc:
                            raise StoreError(
                                f"the tables of {table_set.owner} in {self.path} could not be "
                                f"brought from version {current} to {table_set.version}: {exc}",
                                hint=f"nothing was changed; the plugin providing "
                                     f"{table_set.owner}'s tables has a faulty upgrade") from exc
                    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                 (table_set.meta_key, str(table_set.version)))
        for table_set in pending:
            self._tables[table_set.owner] = table_set.version

    def table_version(self, owner: str) -> int:
        """The schema version of `owner`'s tables in this store (0: none recorded)."""
        from conveyor.store.tables import meta_key

        rows = self.query("SELECT value FROM meta WHERE key=?", (meta_key(owner),))
        try:
            return int(rows[0][0]) if rows else 0
        except (TypeError, ValueError):
            return 0

    def _schema_version(self) -> int:
        """The schema version recorded in `meta` (0: no store yet)."""
        if not self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone():
            return 0
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        try:
            return int(row[0]) if row else 0
        except (TypeError, ValueError):
            return 0

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, retried while another process holds the lock."""
        with self._lock, self._transaction() as conn:
            yield conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        for attempt in range(WRITE_RETRIES):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                time.sleep(min(0.05 * (attempt + 1), 1.0))
        else:
            raise StoreError(f"the project store {self.path} stayed locked by another process")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self.conn.close()

    @property
    def runs(self) -> Runs:
        """The runs recorded in this store (`conveyor.store.Runs`)."""
        from conveyor.store.runs import Runs

        return Runs(self)

    def data_version(self) -> int:
        """Changes whenever another connection commits to the store (SQLite's data_version):
        cheap enough to poll."""
        return int(self.query("PRAGMA data_version")[0][0])

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
            conn.execute("INSERT OR REPLACE INTO file_hashes VALUES (?,?,?,?,?)",
                         (path, size, mtime_ns, inode, sha256))

    # --- runs ------------------------------------------------------------------------------

    def mark_interrupted(self) -> None:
        """Runs of this host whose process is gone were killed: say so instead of 'running'."""
        host = socket.gethostname()
        rows = self.query("SELECT id, pid FROM runs WHERE status='running' AND host=?", (host,))
        dead = [row["id"] for row in rows if not process_alive(row["pid"])]
        if dead:
            with self.write() as conn:
                conn.executemany(
                    "UPDATE runs SET status='interrupted', error='the process was killed' "
                    "WHERE id=? AND status='running'", [(run_id,) for run_id in dead])
                conn.executemany(
                    "UPDATE stages SET status='interrupted' WHERE run_id=? AND status='running'",
                    [(run_id,) for run_id in dead])


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


def open_store(project_dir: Path, tables: Iterable[TableSet] = ()) -> Store:
    """The project's store (`.conveyor/` under `project_dir`), made if missing, with the tables
    of `tables` (the plugins' `conveyor_store_tables`, e.g. `host.contributions.store_tables`)
    created or upgraded."""
    return Store(project_dir / STORE_DIR, tables)


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
