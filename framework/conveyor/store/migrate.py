"""Bringing a store's schema up to date with Alembic, when it is opened and is behind.

The core's revisions live in `conveyor/store/migrations/versions` (branch "conveyor"; the
first, "0001", is the schema Conveyor's hand-written versions reached, SCHEMA_VERSION 4), its
revision in `alembic_version`. Each plugin's tables are a branch of their own
(`conveyor.store.TableSet(owner, migrations=...)`, branch label = owner) whose revision is kept
in a version table of its own (`TableSet.version_table`): `alembic_version` holds the core's
only, so an older Conveyor with the same core schema still opens the store, and a store opened
without some plugins (`conveyor runs list` loads none) is upgraded without touching theirs.

`upgrade(store, tables)` runs `alembic upgrade` programmatically (a `Config` built here per
branch, over the core's versions or one plugin's, no alembic.ini): the core to its head first,
then each plugin branch to its head, inside one transaction holding the store's write lock
(`BEGIN IMMEDIATE` on SQLite, an advisory lock on PostgreSQL, so two processes opening a new
store do not both build it): DDL is transactional on both backends, so a revision that fails
leaves the store as it was (core and plugins) and raises StoreError naming its plugin. A branch
at a revision its plugin does not know (a newer version of the plugin made it) is refused, the
store untouched; so is a core revision this Conveyor does not know. When the store is already
at every head it costs two small queries and imports no Alembic (each branch's head is read
from its files' text, `TableSet.head`). A branch's `depends_on` is refused (`check_branches`):
the core is at its head before any branch runs.

A plugin branch on a store the plugin's deprecated hand-written versions made (`meta`
"tables:OWNER" = N) is first stamped at `legacy_versions[N]`, its rows kept. A SQLite store made
by an older Conveyor (a `meta.schema_version`, no `alembic_version`) is first brought to
version 4 (missing tables created, `runs.plugins` added; its rows kept), stamped "0001", then
upgraded like any other. A new (empty) database gets the core's current schema at once
(`_create_at_head`, no Alembic); a plugin branch giving `metadata` too, the others run their
revisions through Alembic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import StoreError
from conveyor.store.tables import VERSION_TABLE_PREFIX, TableSet, meta_key, revision_file

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from conveyor.store.db import Store

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0004"  # the newest core revision (a test checks it against versions/)
BASELINE = "0001"
CORE_BRANCH = "conveyor"
VERSION_TABLE = "alembic_version"  # the core's; each plugin branch has its own (TableSet)
MAX_REVISION_LENGTH = 32  # alembic_version.version_num is VARCHAR(32)

# Columns versions 2-4 of the hand-written schema added to tables older stores already had.
LEGACY_ADDED_COLUMNS = (("runs", "plugins", "TEXT"),)
# The last hand-written schema version (kept in meta.schema_version of stores that had one).
SCHEMA_VERSION = 4


def alembic_config(connection: Connection | None, table_set: TableSet | None = None) -> Any:
    """The Alembic `Config` of the core's migrations, or of `table_set`'s branch (its own
    versions folder and version table), bound to `connection`."""
    from alembic.config import Config

    folder = MIGRATIONS / "versions" if table_set is None else table_set.versions_dir
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_locations", str(folder))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    config.attributes["version_table"] = \
        VERSION_TABLE if table_set is None else table_set.version_table
    return config


def is_version_table(name: str) -> bool:
    """Whether table `name` holds Alembic revisions (the core's or a plugin branch's)."""
    return name == VERSION_TABLE or name.startswith(VERSION_TABLE_PREFIX)


Revisions = dict[str, set[str]]
"""{version table: the revisions it holds}: the core's under `VERSION_TABLE`."""


def read_revisions(query: Callable[[str, dict[str, Any]], Iterable[Sequence[Any]]],
                   dialect: str, tables: Iterable[str] | None = None) -> Revisions:
    """The store's version tables (those named `tables`, or every one) and their revisions, in
    two queries whatever their number; `query(sql, params)` runs one on the store."""
    catalog = ("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE :pattern"
               if dialect == "sqlite" else
               "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
               "AND tablename LIKE :pattern")
    wanted = None if tables is None else set(tables)
    names = sorted(row[0] for row in query(catalog, {"pattern": f"{VERSION_TABLE}%"})
                   if is_version_table(row[0]) and (wanted is None or row[0] in wanted))
    found: Revisions = {name: set() for name in names}
    if names:
        quoted = [name.replace('"', '""') for name in names]
        sql = " UNION ALL ".join(f"SELECT {i}, version_num FROM \"{name}\""
                                 for i, name in enumerate(quoted))
        for index, revision in query(sql, {}):
            found[names[int(index)]].add(revision)
    return found


def connection_revisions(connection: Connection, tables: Iterable[TableSet] | None = ()
                         ) -> Revisions:
    """`read_revisions` on `connection`: the core's and `tables`' (None: every branch's)."""
    from sqlalchemy import text

    names = None if tables is None else [VERSION_TABLE, *(t.version_table for t in tables
                                                           if t.is_branch)]
    return read_revisions(lambda sql, params: connection.execute(text(sql), params),
                          connection.dialect.name, names)


def current_revisions(connection: Connection) -> set[str]:
    """The core's revisions recorded in the store's `alembic_version` (empty: none)."""
    return connection_revisions(connection).get(VERSION_TABLE, set())


@lru_cache(maxsize=1)
def core_revisions() -> frozenset[str]:
    """The ids of the core's revisions (branch "conveyor"), read from their files' text."""
    return frozenset(revision_file(path).revision
                     for path in (MIGRATIONS / "versions").glob("*.py"))


def at_heads(revisions: Revisions, tables: Iterable[TableSet] = ()) -> bool:
    """Whether `revisions` have the core and every branch of `tables` at its head."""
    return revisions.get(VERSION_TABLE) == {HEAD} and all(
        t.head is not None and revisions.get(t.version_table) == {t.head}
        for t in tables if t.is_branch)


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
            if at_heads(connection_revisions(probe, branches), branches):
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

    revisions = connection_revisions(connection, branches)  # again: another process may have
    if at_heads(revisions, branches):
        return
    if not revisions.get(VERSION_TABLE) and not inspect(connection).get_table_names():
        _create_at_head(connection)
        revisions[VERSION_TABLE] = {HEAD}
    if revisions.get(VERSION_TABLE) == {HEAD}:
        for table_set in branches:
            if _create_branch_at_head(store, connection, table_set, revisions):
                revisions[table_set.version_table] = {table_set.head}  # type: ignore[arg-type]
    if not at_heads(revisions, branches):
        _Migration(store, connection, branches, revisions).run()


class _Migration:
    """One run of Alembic over the core and `branches`, in `connection`'s transaction."""

    def __init__(self, store: Store, connection: Connection, branches: Sequence[TableSet],
                 revisions: Revisions) -> None:
        self.store, self.connection, self.branches = store, connection, branches
        self.revisions = revisions

    def run(self) -> None:
        from alembic import command

        for table_set in self.branches:
            check_branches(self.store, [table_set])
        core = self.revisions.get(VERSION_TABLE, set())
        if core != {HEAD}:
            config = alembic_config(self.connection)
            if not core and self._has_table("meta"):
                _legacy_to_baseline(self.connection)
                self._alembic(command.stamp, config, BASELINE)
            self._alembic(command.upgrade, config, f"{CORE_BRANCH}@head")
        for table_set in self.branches:
            have = self.revisions.get(table_set.version_table, set())
            if table_set.head is not None and have == {table_set.head}:
                continue
            config = alembic_config(self.connection, table_set)
            self._load(config, table_set)
            self._refuse_unknown(table_set, have)
            if not have:
                self._stamp_legacy(config, table_set)
            self._alembic(command.upgrade, config, f"{table_set.owner}@head", owner=table_set)

    # --- checks --------------------------------------------------------------------------------

    def _load(self, config: Any, table_set: TableSet) -> None:
        """The branch's revision files imported (a faulty one blamed on `table_set`)."""
        from alembic.script import ScriptDirectory

        try:
            ScriptDirectory.from_config(config).revision_map.heads  # noqa: B018
        except Exception as exc:
            raise faulty(self.store, table_set, f"{type(exc).__name__}: {exc}", exc) from exc

    def _refuse_unknown(self, table_set: TableSet, have: set[str]) -> None:
        """A branch at a revision its plugin does not know: a newer version of the plugin
        made it; refused, nothing changed."""
        unknown = sorted(have - {f.revision for f in table_set.revision_files})
        if unknown:
            raise StoreError(
                f"the tables of {table_set.owner} in the project store {self.store.shown_url} "
                f"are at revision {', '.join(unknown)}, which this version of the plugin does "
                "not know", hint=f"a newer version of the plugin providing {table_set.owner}'s "
                                 "tables made them: upgrade that plugin; nothing was changed")

    def _stamp_legacy(self, config: Any, table_set: TableSet) -> None:
        """A store whose tables of `table_set` the deprecated hand-written versions made:
        stamped at the revision their version equals, so the branch goes on from there."""
        from alembic import command

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
        self._alembic(command.stamp, config, revision, owner=table_set)

    # --- helpers -------------------------------------------------------------------------------

    def _alembic(self, command: Any, config: Any, target: str,
                 owner: TableSet | None = None) -> None:
        from alembic.util.exc import CommandError

        try:
            command(config, target)
        except CommandError as exc:
            if owner is None:
                raise StoreError(
                    f"the project store {self.store.shown_url} is at schema revision "
                    f"{', '.join(sorted(self.revisions.get(VERSION_TABLE, ()))) or 'unknown'}, "
                    f"which this Conveyor does not know ({exc})",
                    hint="it was made by a newer Conveyor: upgrade Conveyor") from exc
            raise faulty(self.store, owner, str(exc)) from exc
        except Exception as exc:
            if owner is None:
                raise
            from conveyor.store.db import _reason

            raise faulty(self.store, owner, _reason(exc) if hasattr(exc, "orig") else
                         f"{type(exc).__name__}: {exc}", exc) from exc

    def _has_table(self, name: str) -> bool:
        from sqlalchemy import inspect

        return inspect(self.connection).has_table(name)

    def _execute(self, sql: str, **params: Any) -> Any:
        from sqlalchemy import text

        return self.connection.execute(text(sql), params)


def check_branches(store: Store, branches: Iterable[TableSet]) -> None:
    """Each branch is one chain of its own revisions (read from the files' text): the first
    carries its owner's label, ids are unique and fit the version table (32 characters), no
    revision points outside the branch and none uses `depends_on` (the core is at its head
    before any branch runs); a StoreError naming the plugin and file otherwise."""
    for table_set in branches:
        try:
            files = table_set.revision_files
        except (OSError, SyntaxError, ValueError) as exc:
            raise faulty(store, table_set, f"its revision files cannot be read: {exc}") from exc
        ids: dict[str, Path] = {}
        for f in files:
            if f.revision in ids:
                raise faulty(store, table_set, f"revision id '{f.revision}' is used by "
                             f"{ids[f.revision].name} and {f.path.name}")
            if len(f.revision) > MAX_REVISION_LENGTH:
                raise faulty(store, table_set, f"revision id '{f.revision}' ({f.path.name}) "
                             f"is {len(f.revision)} characters long; the store keeps at most "
                             f"{MAX_REVISION_LENGTH}")
            if f.depends_on:
                raise faulty(store, table_set, f"{f.path.name} has depends_on = "
                             f"{', '.join(f.depends_on)}; a branch must not depend on other "
                             "revisions (Conveyor's core is at its head before any plugin's "
                             "branch runs): set depends_on = None")
            ids[f.revision] = f.path
        for f in files:
            outside = [down for down in f.down_revisions if down not in ids]
            if outside:
                raise faulty(store, table_set, f"{f.path.name} has down_revision = "
                             f"{', '.join(outside)}, which is not a revision of its branch "
                             f"({table_set.versions_dir})")
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
                           revisions: Revisions) -> bool:
    """A branch new to the store, whose table set gives `metadata`: its tables made at once
    and stamped at its head, without Alembic (True). Not when the store has any of them, a
    revision of the branch, or a hand-written version of the owner's (False: Alembic's)."""
    from sqlalchemy import inspect, text

    if table_set.metadata is None or table_set.head is None or \
            revisions.get(table_set.version_table):
        return False
    check_branches(store, [table_set])
    recorded = connection.execute(text("SELECT 1 FROM meta WHERE key = :legacy"),
                                  {"legacy": meta_key(table_set.owner)}).fetchall()
    if recorded:
        return False
    try:
        metadata = table_set.metadata()
        if set(inspect(connection).get_table_names()) & set(metadata.tables):
            return False
        metadata.create_all(connection)
    except Exception as exc:
        from conveyor.store.db import _reason

        raise faulty(store, table_set, "its metadata() could not be created: " + (
            _reason(exc) if hasattr(exc, "orig") else f"{type(exc).__name__}: {exc}"),
            exc) from exc
    _create_version_table(connection, table_set.version_table, table_set.head)
    return True


def _create_version_table(connection: Connection, name: str, revision: str) -> None:
    """Version table `name` as Alembic makes it, holding `revision`."""
    from sqlalchemy import text

    connection.execute(text(f"CREATE TABLE {name} (version_num VARCHAR(32) NOT NULL, "
                            f"CONSTRAINT {name}_pkc PRIMARY KEY (version_num))"))
    connection.execute(text(f"INSERT INTO {name} (version_num) VALUES (:rev)"),
                       {"rev": revision})


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
    _create_version_table(connection, VERSION_TABLE, HEAD)
    if connection.dialect.name == "postgresql":
        connection.execute(text("CREATE SEQUENCE conveyor_data_version"))
