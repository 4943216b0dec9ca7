"""Bringing a store's schema up to date with Alembic, when it is opened and is behind.

The core's revisions live in `conveyor/store/migrations/versions` (branch "conveyor"; the
first, "0001", is the schema Conveyor's hand-written versions reached, SCHEMA_VERSION 4). Each
plugin's tables are a branch of their own (`conveyor.store.TableSet(owner, migrations=...)`,
branch label = owner). `upgrade(store, tables)` runs `alembic upgrade` programmatically (a
`Config` built here over the core's versions and each plugin's, no alembic.ini) to the core's
head, then to each plugin branch's head, inside one transaction holding the store's write lock
(`BEGIN IMMEDIATE` on SQLite, an advisory lock on PostgreSQL, so two processes opening a new
store do not both build it): DDL is transactional on both backends, so a revision that fails
leaves the store as it was (core and plugins) and raises StoreError naming its plugin. When
the store is already at every head it costs two small queries and imports no Alembic (each
branch's head is read from its files' text, `TableSet.head`).

`alembic_version` holds one row per branch; the `meta` row "branch:OWNER" names the plugin
owning each plugin row, so a store opened without some plugins (`conveyor runs list` loads
none) is upgraded with their rows set aside, and a row no one loaded knows is told apart: a
plugin's unknown revision means a newer version of that plugin made the store, anything else a
newer Conveyor; either is refused with the store untouched.

A plugin branch on a store the plugin's deprecated hand-written versions made (`meta`
"tables:OWNER" = N) is first stamped at `legacy_versions[N]`, its rows kept. A SQLite store made
by an older Conveyor (a `meta.schema_version`, no `alembic_version`) is first brought to
version 4 (missing tables created, `runs.plugins` added; its rows kept), stamped "0001", then
upgraded like any other. A new (empty) database gets the core's current schema at once
(`_create_at_head`, no Alembic); plugin branches then run their revisions through Alembic.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import StoreError
from conveyor.store.tables import TableSet, branch_key, meta_key, revision_file

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from conveyor.store.db import Store

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0004"  # the newest core revision (a test checks it against versions/)
BASELINE = "0001"
CORE_BRANCH = "conveyor"

# Columns versions 2-4 of the hand-written schema added to tables older stores already had.
LEGACY_ADDED_COLUMNS = (("runs", "plugins", "TEXT"),)
# The last hand-written schema version (kept in meta.schema_version of stores that had one).
SCHEMA_VERSION = 4


def alembic_config(connection: Connection, tables: Iterable[TableSet] = ()) -> Any:
    """The Alembic `Config` of the store's migrations (the core's and the `tables` branches'),
    bound to `connection`."""
    from alembic.config import Config

    folders = [MIGRATIONS / "versions", *(t.versions_dir for t in tables if t.is_branch)]
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_locations", os.pathsep.join(map(str, folders)))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def current_revisions(connection: Connection) -> set[str]:
    """The revisions recorded in the store's `alembic_version` (empty: none)."""
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table("alembic_version"):
        return set()
    return {row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))}


@lru_cache(maxsize=1)
def core_revisions() -> frozenset[str]:
    """The ids of the core's revisions (branch "conveyor"), read from their files' text."""
    return frozenset(revision_file(path).revision
                     for path in (MIGRATIONS / "versions").glob("*.py"))


def at_heads(current: set[str], tables: Iterable[TableSet] = ()) -> bool:
    """Whether revisions `current` have the core and every branch of `tables` at its head."""
    return HEAD in current and all(
        t.head is not None and t.head in current for t in tables if t.is_branch)


def upgrade(store: Store, tables: Iterable[TableSet] = (), *,
            connection: Connection | None = None) -> None:
    """Bring `store`'s schema to `HEAD` and each branch of `tables` to its head (see the module
    docstring); the deprecated hand-written table sets are left to `Store.ensure_tables`.
    `connection`: a write transaction of the store's already open (`Store.write`), to do it
    in (committed or rolled back by its owner)."""
    from sqlalchemy.exc import DBAPIError

    branches = [t for t in tables if t.is_branch]
    try:
        if connection is not None:
            _lock_schema(store, connection)
            _bring_up(store, connection, branches)
            return
        with store.engine.connect() as probe:
            if at_heads(current_revisions(probe), branches):
                return
        with store.engine.connect().execution_options(conveyor_write=True) as own:
            own.begin()
            try:
                _lock_schema(store, own)
                _bring_up(store, own, branches)
            except BaseException:
                own.rollback()
                raise
            own.commit()
    except DBAPIError as exc:
        from conveyor.store.db import _reason

        raise StoreError(f"the schema of the project store {store.shown_url} could not be "
                         f"brought up to date: {_reason(exc)}",
                         hint="nothing was changed; see that the database user may create "
                              "tables") from exc


def _lock_schema(store: Store, connection: Connection) -> None:
    """Alone among the processes sharing the store until the transaction ends (on SQLite the
    write transaction's BEGIN IMMEDIATE is that already)."""
    if store.dialect == "postgresql":
        from sqlalchemy import text

        from conveyor.store.db import lock_key

        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                           {"key": lock_key("schema")})


def _bring_up(store: Store, connection: Connection, branches: list[TableSet]) -> None:
    from sqlalchemy import inspect

    current = current_revisions(connection)  # again: another process may have done it
    if at_heads(current, branches):
        return
    if not current and not inspect(connection).get_table_names():
        _create_at_head(connection)
        current = {HEAD}
    if HEAD in current:
        for table_set in branches:
            if _create_branch_at_head(store, connection, table_set, current):
                current.add(table_set.head)  # type: ignore[arg-type]
    if not at_heads(current, branches):
        _Migration(store, connection, branches, current).run()


class _Migration:
    """One run of Alembic over the core and `branches`, in `connection`'s transaction."""

    def __init__(self, store: Store, connection: Connection, branches: Sequence[TableSet],
                 current: set[str]) -> None:
        self.store, self.connection, self.branches = store, connection, branches
        self.current = current
        self.config = alembic_config(connection, branches)

    def run(self) -> None:
        from alembic import command

        check_branches(self.store, self.branches)
        script = self._script()
        aside = self._set_aside()
        if not self.current and self._has_table("meta"):
            _legacy_to_baseline(self.connection)
            self._alembic(command.stamp, BASELINE)
        self._alembic(command.upgrade, f"{CORE_BRANCH}@head")
        for table_set in self.branches:
            ids = {f.revision for f in table_set.revision_files}
            if not ids & self.current:
                self._stamp_legacy(table_set)
            self._alembic(command.upgrade, f"{table_set.owner}@head", owner=table_set)
            _record_branch(self.connection, table_set.owner,
                           script.get_revision(f"{table_set.owner}@head").revision)
        for revision in aside:
            self._execute("INSERT INTO alembic_version (version_num) VALUES (:rev)", rev=revision)

    # --- checks --------------------------------------------------------------------------------

    def _script(self) -> Any:
        from alembic.script import ScriptDirectory

        try:
            script = ScriptDirectory.from_config(self.config)
            script.revision_map.heads  # noqa: B018 (loads every revision file now)
        except Exception as exc:
            owner = self._blame(exc)
            if owner is None:
                raise
            raise faulty(self.store, owner, f"{type(exc).__name__}: {exc}") from exc
        return script

    def _set_aside(self) -> list[str]:
        """The rows of `alembic_version` this run does not know, taken out for it: plugins not
        loaded now. A row of a loaded plugin, or of no plugin, that is unknown means a newer
        plugin or a newer Conveyor made the store: refused."""
        from alembic.util.exc import CommandError

        known = set(core_revisions()).union(
            *({f.revision for f in t.revision_files} for t in self.branches))
        owners = {row[1]: row[0][len(branch_key("")):] for row in self._execute(
            "SELECT key, value FROM meta WHERE key LIKE 'branch:%'")} \
            if self._has_table("meta") else {}
        loaded = {t.owner: t for t in self.branches}
        aside = []
        for revision in sorted(self.current - known):
            owner = owners.get(revision)
            if owner in loaded:
                raise StoreError(
                    f"the tables of {owner} in the project store {self.store.shown_url} are at "
                    f"revision {revision}, which this version of the plugin does not know",
                    hint=f"a newer version of the plugin providing {owner}'s tables made them: "
                         "upgrade that plugin; nothing was changed")
            if owner is None:
                raise StoreError(
                    f"the project store {self.store.shown_url} is at schema revision "
                    f"{', '.join(sorted(self.current))}, which this Conveyor does not know "
                    f"({CommandError.__name__}: Can't locate revision identified by "
                    f"'{revision}')", hint="it was made by a newer Conveyor: upgrade Conveyor")
            aside.append(revision)
        for revision in aside:
            self._execute("DELETE FROM alembic_version WHERE version_num = :rev", rev=revision)
        return aside

    def _stamp_legacy(self, table_set: TableSet) -> None:
        """A store whose tables of `table_set` the deprecated hand-written versions made:
        stamped at the revision their version equals, so the branch goes on from there."""
        rows = self._execute("SELECT value FROM meta WHERE key = :key",
                             key=meta_key(table_set.owner)).fetchall() \
            if self._has_table("meta") else []
        if not rows:
            return
        try:
            version = int(rows[0][0])
        except (TypeError, ValueError):
            version = 0
        revision = table_set.legacy_versions.get(version)
        if revision is None:
            newer = version > max(table_set.legacy_versions, default=0)
            raise StoreError(
                f"the tables of {table_set.owner} in the project store {self.store.shown_url} "
                f"are at the hand-written version {rows[0][0]}, which the plugin maps to no "
                f"revision (its legacy_versions: {dict(table_set.legacy_versions) or 'none'})",
                hint=f"a newer version of the plugin providing {table_set.owner}'s tables made "
                     "them: upgrade that plugin; nothing was changed" if newer and
                     table_set.legacy_versions else
                     f"the plugin providing {table_set.owner}'s tables must map each version "
                     "of its old hand-written form to a revision (TableSet legacy_versions); "
                     "nothing was changed")
        self._execute("INSERT INTO alembic_version (version_num) VALUES (:rev)", rev=revision)
        self.current.add(revision)

    # --- helpers -------------------------------------------------------------------------------

    def _alembic(self, command: Any, target: str, owner: TableSet | None = None) -> None:
        from alembic.util.exc import CommandError

        try:
            command(self.config, target)
        except CommandError as exc:
            if owner is None:
                raise StoreError(
                    f"the project store {self.store.shown_url} is at schema revision "
                    f"{', '.join(sorted(self.current)) or 'unknown'}, which this Conveyor does "
                    f"not know ({exc})", hint="it was made by a newer Conveyor: upgrade "
                                              "Conveyor") from exc
            raise faulty(self.store, owner, str(exc)) from exc
        except Exception as exc:
            blamed = owner or self._blame(exc)
            if blamed is None:
                raise
            from conveyor.store.db import _reason

            raise faulty(self.store, blamed, _reason(exc) if hasattr(exc, "orig") else
                               f"{type(exc).__name__}: {exc}", exc) from exc

    def _blame(self, exc: BaseException) -> TableSet | None:
        """The branch whose revision file the traceback of `exc` runs through, if any."""
        files = _traceback_files(exc)
        for table_set in self.branches:
            if any(f.is_relative_to(table_set.versions_dir) for f in files):
                return table_set
        return None

    def _has_table(self, name: str) -> bool:
        from sqlalchemy import inspect

        return inspect(self.connection).has_table(name)

    def _execute(self, sql: str, **params: Any) -> Any:
        from sqlalchemy import text

        return self.connection.execute(text(sql), params)


def check_branches(store: Store, branches: Iterable[TableSet]) -> None:
    """Each branch's revisions carry its owner's label, and no id is used twice (Alembic
    would only warn and run one of them): read from the files' text, a StoreError otherwise."""
    seen = dict.fromkeys(core_revisions(), "Conveyor's core")
    for table_set in branches:
        try:
            files = table_set.revision_files
        except (OSError, SyntaxError, ValueError) as exc:
            raise faulty(store, table_set, f"its revision files cannot be read: {exc}") from exc
        for f in files:
            if f.revision in seen:
                raise faulty(store, table_set, f"revision id '{f.revision}' ({f.path.name}) is "
                             f"used by {seen[f.revision]} too; prefix the plugin's ids")
            seen[f.revision] = f"the tables of {table_set.owner}"
        bases = [f for f in files if not f.down_revisions]
        if not files or any(table_set.owner not in f.branch_labels for f in bases):
            raise faulty(store, table_set, f"the first revision in {table_set.versions_dir} "
                         f"must have down_revision = None and branch_labels = "
                         f"(\"{table_set.owner}\",)")


def faulty(store: Store, table_set: TableSet, problem: str,
           exc: BaseException | None = None) -> StoreError:
    """The error of `table_set`'s branch failing with `problem` (`exc`'s traceback naming the
    revision file, when it runs through one)."""
    where = next((f for f in _traceback_files(exc) if f.is_relative_to(
        table_set.versions_dir)), table_set.versions_dir) if exc else table_set.versions_dir
    return StoreError(
        f"the tables of {table_set.owner} in the project store {store.shown_url} could "
        f"not be brought up to date: {problem}",
        hint=f"nothing was changed, neither Conveyor's tables nor any plugin's; the plugin "
             f"providing {table_set.owner}'s tables has a faulty migration ({where})")


def _create_branch_at_head(store: Store, connection: Connection, table_set: TableSet,
                           current: set[str]) -> bool:
    """A branch new to the store, whose table set gives `metadata`: its tables made at once
    and stamped at its head, without Alembic (True). Not when the store has any of them, a
    revision of the branch, or a hand-written version of the owner's (False: Alembic's)."""
    from sqlalchemy import inspect, text

    if table_set.metadata is None or table_set.head is None or \
            {f.revision for f in table_set.revision_files} & current:
        return False
    check_branches(store, [table_set])
    recorded = connection.execute(text("SELECT 1 FROM meta WHERE key IN (:legacy, :branch)"), {
        "legacy": meta_key(table_set.owner), "branch": branch_key(table_set.owner)}).fetchall()
    metadata = table_set.metadata()
    have = set(inspect(connection).get_table_names())
    if recorded or have & set(metadata.tables):
        return False
    try:
        metadata.create_all(connection)
    except Exception as exc:
        raise faulty(store, table_set, f"its metadata could not be created: {exc}",
                     exc) from exc
    connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:rev)"),
                       {"rev": table_set.head})
    _record_branch(connection, table_set.owner, table_set.head)
    return True


def _record_branch(connection: Connection, owner: str, revision: str) -> None:
    """The `meta` row naming `owner` the owner of `revision` in `alembic_version`."""
    from sqlalchemy import text

    connection.execute(text("DELETE FROM meta WHERE key = :key"), {"key": branch_key(owner)})
    connection.execute(text("INSERT INTO meta (key, value) VALUES (:key, :value)"),
                       {"key": branch_key(owner), "value": revision})


def _traceback_files(exc: BaseException | None) -> list[Path]:
    """The files `exc`'s traceback runs through, innermost last (and the file a SyntaxError
    names)."""
    import traceback

    if exc is None:
        return []
    files = [Path(frame.filename) for frame in traceback.extract_tb(exc.__traceback__)]
    return [*reversed(files), Path(getattr(exc, "filename", None) or "/")]


def _legacy_to_baseline(connection: Connection) -> None:
    """A store made by Conveyor before Alembic, brought to schema version 4 (SQLite only): the
    tables later versions added are created (the tables it has are kept as they are, rows and
    all), then the columns they added to older tables."""
    if connection.dialect.name != "sqlite":
        return
    from conveyor.store.schema import METADATA

    METADATA.create_all(connection, checkfirst=True)
    raw = connection.connection.driver_connection
    for table, column, kind in LEGACY_ADDED_COLUMNS:
        have = {row[1] for row in raw.execute(f"PRAGMA table_info({table})")}
        if column not in have:  # a table created by an older Conveyor
            raw.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    raw.execute("UPDATE meta SET value = ? WHERE key = 'schema_version' AND "
                "CAST(value AS INTEGER) < ?", (str(SCHEMA_VERSION), SCHEMA_VERSION))


def _create_at_head(connection: Connection) -> None:
    """A new store: the tables of `conveyor.store.schema` made at once and the store stamped at
    `HEAD` (Alembic's create_all-then-stamp recipe, without importing Alembic: opening a new
    project's store stays fast). A test checks that this and the migrations agree."""
    from sqlalchemy import text

    from conveyor.store.schema import METADATA

    METADATA.create_all(connection)
    connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"))
    connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head)"),
                       {"head": HEAD})
    if connection.dialect.name == "postgresql":
        connection.execute(text("CREATE SEQUENCE conveyor_data_version"))
