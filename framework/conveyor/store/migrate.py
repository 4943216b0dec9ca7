"""Bringing a store's schema up to date with Alembic, when it is opened and is behind.

The core's revisions live in `conveyor/store/migrations/versions` (branch "conveyor"; the
first, "0001", is the schema Conveyor's hand-written versions reached, SCHEMA_VERSION 4).
`upgrade(store)` runs `alembic upgrade heads` programmatically (a `Config` built here, no
alembic.ini) inside one transaction holding the store's write lock (`BEGIN IMMEDIATE` on SQLite,
an advisory lock on PostgreSQL, so two processes opening a new store do not both build it):
DDL is transactional on both backends, so a migration that fails leaves the store as it was
and raises StoreError. When the store is already at `HEAD` it costs two small queries.

A SQLite store made by an older Conveyor (a `meta.schema_version`, no `alembic_version`) is first
brought to version 4 (missing tables created, `runs.plugins` added; its rows kept), stamped
"0001", then upgraded like any other. A new (empty) database gets the current schema at once
(`_create_at_head`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from conveyor.store.db import Store

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0004"  # the newest core revision (a test checks it against versions/)
BASELINE = "0001"

# Columns versions 2-4 of the hand-written schema added to tables older stores already had.
LEGACY_ADDED_COLUMNS = (("runs", "plugins", "TEXT"),)
# The last hand-written schema version (kept in meta.schema_version of stores that had one).
SCHEMA_VERSION = 4


def alembic_config(connection: Connection) -> object:
    """The Alembic `Config` of the store's migrations, bound to `connection`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_locations", str(MIGRATIONS / "versions"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def current_revisions(connection: Connection) -> set[str]:
    """The revisions recorded in the store's `alembic_version` (empty: none)."""
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table("alembic_version"):
        return set()
    return {row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))}


def upgrade(store: Store) -> None:
    """Bring `store`'s schema to `HEAD` (see the module docstring)."""
    from sqlalchemy.exc import DBAPIError

    try:
        with store.engine.connect() as probe:
            if current_revisions(probe) == {HEAD}:
                return
        _upgrade(store)
    except DBAPIError as exc:
        from conveyor.store.db import _reason

        raise StoreError(f"the schema of the project store {store.shown_url} could not be "
                         f"brought up to date: {_reason(exc)}",
                         hint="nothing was changed; see that the database user may create "
                              "tables") from exc


def _upgrade(store: Store) -> None:
    from sqlalchemy import inspect, text

    from conveyor.store.db import lock_key

    with store.engine.connect().execution_options(conveyor_write=True) as connection:
        connection.begin()
        if store.dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": lock_key("schema")})
        current = current_revisions(connection)  # again: another process may have done it
        if current == {HEAD}:
            connection.rollback()
            return
        if not current and not inspect(connection).get_table_names():
            _create_at_head(connection)
            connection.commit()
            return
        from alembic import command
        from alembic.util.exc import CommandError

        config = alembic_config(connection)
        try:
            if not current and inspect(connection).has_table("meta"):
                _legacy_to_baseline(connection)
                command.stamp(config, BASELINE)
            command.upgrade(config, "heads")
        except CommandError as exc:
            connection.rollback()
            raise StoreError(f"the project store {store.shown_url} is at schema revision "
                             f"{', '.join(sorted(current)) or 'unknown'}, which this Conveyor "
                             f"does not know ({exc})",
                             hint="it was made by a newer Conveyor: upgrade Conveyor") from exc
        connection.commit()


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
