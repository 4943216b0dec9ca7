"""Copying a whole store into a new, empty one: `copy_store(source, dest_url)`.

    from conveyor.store import copy_store, open_store

    source = open_store(project_dir)                        # SQLite, PostgreSQL: any backend
    summary = copy_store(source, "postgresql+psycopg://ml@db.internal:5432/conveyor")
    print(summary.rows)                                     # {"runs": 12, "stages": 48, ...}

What a team does first when it outgrows one machine (`conveyor store copy --to URL`), and how
`conveyor build` (conveyor-bentoml) puts a consistent SQLite snapshot of any store in a Bento.

Every row of every table is copied: the core's (`conveyor.store.schema`: runs, stages, params,
metrics, artifacts, run_artifacts, data_inputs, file_hashes, model versions, contracts,
aliases, alias history, meta) and the plugins' (`TableSet`s, their Alembic branches checked equal;
a branch of a plugin not given, its tables and version table are copied as they are).
The source is read inside one snapshot transaction (REPEATABLE READ on PostgreSQL, a read
transaction on SQLite's WAL), so runs written meanwhile are either wholly in the copy or not at
all. The destination is made by the normal code path (`Store`: schema at Alembic `HEAD`, the
plugins' tables from `tables`; a plugin table of the source that no `TableSet` given describes
is created from the source's own definition) and must hold no rows (a `StoreConfigError`, exit
2, names it otherwise); all rows go in one transaction on it, so a failed copy leaves it empty.
Serial ids (`alias_history.id`) continue after the copied ones on PostgreSQL.

Artifact files are not copied here: they are content-addressed (`<sha256[:2]>/<sha256><suffix>`
under `store.artifacts`), so a destination using the same `store.artifacts` finds them;
`copy_artifacts` copies them to another artifact store.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import StoreError
from conveyor.store.location import StoreConfigError, StoreLocation

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from conveyor.store.artifacts import ArtifactStore
    from conveyor.store.db import Store
    from conveyor.store.tables import TableSet

BATCH_ROWS = 2000
# Not data: the core's schema revision is the destination's own (checked equal to the
# source's), and so is each version table of a branch the destination has (`_check_revisions`).
SKIPPED_TABLES = frozenset({"alembic_version"})
# Rows the destination may already hold when it is "empty": made by opening it.
SETUP_TABLES = frozenset({"meta"})

Progress = Callable[[str, int, int], None]
"""progress(table, rows copied so far, rows of that table): called as each batch is written."""


@dataclass
class CopySummary:
    """What `copy_store` did: `source` and `dest` as shown in messages (passwords masked),
    `rows` {table: rows copied} in copy order, `revision` the core's Alembic revision both are
    at (the plugins' branches too are checked equal),
    `created` the plugin tables made from the source's definition (no `TableSet` given),
    `skipped` the version tables the destination has of its own (checked equal)."""

    source: str
    dest: str
    rows: dict[str, int] = field(default_factory=dict)
    revision: str = ""
    created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """All rows copied."""
        return sum(self.rows.values())


def open_destination(dest_url: str, root: Path, tables: Iterable[TableSet] = (), *,
                     origin: str = "the destination URL") -> Store:
    """The store at `dest_url` opened by the normal code path (made and brought to `HEAD` when
    new; `tables` created); `root` is the local `.conveyor/` folder it uses for scratch files.
    A bad URL raises `StoreConfigError` (exit 2) naming `origin`, the password masked."""
    from conveyor.store.db import Store
    from conveyor.store.location import DEFAULT_ORIGIN

    location = StoreLocation(dest_url, origin, None, DEFAULT_ORIGIN)
    try:
        return Store(root, tables, location=location)
    except StoreConfigError as exc:
        # The engine's message speaks of the store.url setting; this URL came from `origin`.
        raise StoreConfigError(exc.message.replace("store.url ", "the URL ", 1),
                               hint=f"check the URL given by {origin}: a PostgreSQL URL "
                                    "(postgresql+psycopg://..., the database made beforehand "
                                    "with createdb, the password in PGPASSWORD or ~/.pgpass) "
                                    "or sqlite:///PATH") from exc


def copy_store(source: Store, dest_url: str, *, tables: Iterable[TableSet] = (),
               progress: Progress | None = None, origin: str = "the destination URL"
               ) -> CopySummary:
    """Copy every row of `source` into the empty store at `dest_url` (see the module
    docstring); the summary of what was copied. Raises `StoreConfigError` (exit 2) for a bad
    or non-empty destination, `StoreError` (exit 1) when the copy fails (the destination is
    left without rows)."""
    dest = open_destination(dest_url, source.root, tables, origin=origin)
    try:
        return copy_into(source, dest, progress=progress)
    finally:
        dest.close()


def copy_into(source: Store, dest: Store, *, progress: Progress | None = None) -> CopySummary:
    """`copy_store` into an already opened `dest` (it must hold no rows)."""
    from sqlalchemy.exc import DBAPIError

    summary = CopySummary(source=source.shown_url, dest=dest.shown_url)
    if _same_database(source, dest):
        raise StoreConfigError(f"the destination {dest.shown_url} is the source store itself")
    try:
        _refuse_rows(dest)
        with source._lock, _snapshot(source) as reading, dest.write(lock="schema") as writing:
            summary.revision = _check_revisions(reading, writing.connection, summary)
            _copy_tables(reading, writing.connection, summary, progress)
    except DBAPIError as exc:
        from conveyor.store.db import _reason

        raise StoreError(f"copying {summary.source} to {summary.dest} failed: {_reason(exc)}",
                         hint="nothing was written to the destination; try again") from exc
    return summary


def _same_database(source: Store, dest: Store) -> bool:
    left, right = source.engine.url, dest.engine.url
    return (left.get_backend_name(), left.host, left.port, left.database) == \
        (right.get_backend_name(), right.host, right.port, right.database)


def _refuse_rows(dest: Store) -> None:
    """A `StoreConfigError` naming `dest` and the tables that hold rows, if any do."""
    from sqlalchemy import inspect

    from conveyor.store.migrate import is_version_table

    with dest.engine.connect() as connection:
        names = [t for t in inspect(connection).get_table_names()
                 if t not in SETUP_TABLES and not is_version_table(t)]
    full = [t for t in sorted(names) if dest.query(f'SELECT 1 FROM "{t}" LIMIT 1')]
    if full:
        raise StoreConfigError(
            f"the destination store {dest.shown_url} is not empty (rows in "
            f"{', '.join(full)})",
            hint="copy into a new, empty database (createdb NAME); nothing was written")


class _snapshot:
    """A read transaction on `source` whose reads all see one moment of the store."""

    def __init__(self, source: Store) -> None:
        self.source = source
        self.connection: Connection | None = None

    def __enter__(self) -> Connection:
        from sqlalchemy import text

        if self.source.dialect == "postgresql":
            connection = self.source.engine.connect().execution_options(
                isolation_level="REPEATABLE READ")
            connection.begin()
            connection.execute(text("SET TRANSACTION READ ONLY"))
        else:
            # The engine leaves BEGIN to us (see conveyor.store.engine): a deferred BEGIN is a
            # read transaction, which sees one WAL snapshot until it ends.
            connection = self.source.engine.connect()
            connection.exec_driver_sql("BEGIN")
        self.connection = connection
        return connection

    def __exit__(self, *exc: object) -> None:
        assert self.connection is not None
        try:
            self.connection.rollback()
        finally:
            self.connection.close()


def _check_revisions(reading: Connection, writing: Connection, summary: CopySummary) -> str:
    """The core's revision, checked equal on both sides, as is each branch the destination
    has (the source's, when it has that branch); the destination's version tables are then
    its own (`summary.skipped`); other branches' are copied like their tables."""
    from conveyor.store.migrate import VERSION_TABLE, connection_revisions

    have, made = connection_revisions(reading, None), connection_revisions(writing, None)
    # A branch the source lacks is fine (its tables are new and empty on both sides).
    differ = [name for name, revisions in sorted(made.items())
              if have.get(name, set() if name == VERSION_TABLE else revisions) != revisions]
    if differ:
        shown = "; ".join(
            f"{name.removeprefix(VERSION_TABLE).lstrip('_') or 'the core'}: "
            f"{', '.join(sorted(have.get(name, ()))) or 'none'} vs "
            f"{', '.join(sorted(made[name]))}" for name in differ)
        raise StoreError(f"{summary.source} and the new store {summary.dest} are at different "
                         f"schema revisions ({shown})",
                         hint="open the source with this Conveyor first (any `conveyor runs "
                              "list` brings it up to date), then copy again")
    summary.skipped = sorted(made)
    return ", ".join(sorted(have.get(VERSION_TABLE, ())))


def _copy_tables(reading: Connection, writing: Connection, summary: CopySummary,
                 progress: Progress | None) -> None:
    from sqlalchemy import MetaData, func, inspect, select

    from conveyor.store.schema import METADATA

    source_meta, dest_meta = MetaData(), MetaData()
    source_meta.reflect(bind=reading)
    dest_meta.reflect(bind=writing)
    core = [t.name for t in METADATA.sorted_tables]
    skipped = SKIPPED_TABLES.union(summary.skipped)
    names = [n for n in core if n in source_meta.tables] + sorted(
        n for n in source_meta.tables if n not in core and n not in skipped)
    for name in names:
        table = source_meta.tables[name]
        if name not in dest_meta.tables:  # a plugin table no TableSet given describes
            target = table.to_metadata(dest_meta)
            _widen_floats(target)
            target.create(writing)
            summary.created.append(name)
        target = dest_meta.tables[name]
        columns = [c.name for c in table.columns if c.name in target.columns]
        total = reading.execute(select(func.count()).select_from(table)).scalar_one()
        copied = 0
        if name == "meta":  # the destination has its own setup rows: the source's win
            _copy_meta(reading, writing, table, target)
            copied = total
        else:
            result = reading.execute(select(*(table.c[c] for c in columns)))
            while batch := result.fetchmany(BATCH_ROWS):
                writing.execute(target.insert(), [dict(zip(columns, row, strict=True))
                                                  for row in batch])
                copied += len(batch)
                if progress is not None:
                    progress(name, copied, total)
        if progress is not None and copied == 0:
            progress(name, 0, total)
        summary.rows[name] = copied
    if writing.dialect.name == "postgresql":
        _continue_serials(writing, inspect(writing), names)


def _widen_floats(table: Any) -> None:
    """Every floating-point column as DOUBLE PRECISION: SQLite reads a declared DOUBLE
    PRECISION back as REAL (on SQLite 8 bytes, like any of its floats), which PostgreSQL would
    make 4 bytes (6 digits, nothing below 1e-38: a p-value of 3e-102 failed with "value out of
    range: underflow"), and a declared DOUBLE as a type PostgreSQL does not know."""
    from sqlalchemy import Double, Float

    for column in table.columns:
        if isinstance(column.type, Float):
            column.type = Double()


def _copy_meta(reading: Connection, writing: Connection, table: Any, target: Any) -> None:
    rows = reading.execute(table.select()).mappings().all()
    for row in rows:
        writing.execute(target.delete().where(target.c.key == row["key"]))
    if rows:
        writing.execute(target.insert(), [dict(row) for row in rows])


def _continue_serials(writing: Connection, inspector: Any, names: list[str]) -> None:
    """Each serial/identity column's sequence set past the copied ids (inserting explicit ids
    does not advance it; the next insert would collide)."""
    from sqlalchemy import text

    for name in names:
        for column in inspector.get_columns(name):
            sequence = writing.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                       {"t": f'"{name}"', "c": column["name"]}).scalar()
            if sequence:
                writing.execute(text(
                    f'SELECT setval(:s, COALESCE((SELECT MAX("{column["name"]}") FROM "{name}"), '
                    f'0) + 1, false)'), {"s": sequence})


def copy_artifacts(source: Store, dest: ArtifactStore,
                   progress: Callable[[int, int], None] | None = None) -> int:
    """Copy the file of every artifact `source` records (its `artifacts` table) into `dest`
    (another folder or object storage, e.g. `open_destination(...).artifacts`); each is
    hash-checked on the way. Those already there are skipped. How many were copied."""
    from conveyor.store.artifacts import ArtifactRef

    rows = source.query("SELECT sha256, size, codec, suffix FROM artifacts ORDER BY sha256")
    copied = 0
    for done, row in enumerate(rows, start=1):
        ref = ArtifactRef(sha256=row["sha256"], codec=row["codec"], suffix=row["suffix"] or "",
                          size=row["size"])
        if not dest.exists(ref):
            # adopt() moves (or uploads) a file of its own tmp folder: copy there first.
            tmp = dest.tmp / f"copy-{os.getpid()}-{ref.sha256}{ref.suffix}"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(source.artifacts.local_path(ref), tmp)
                dest.adopt(tmp, ref.codec, ref.suffix)
            finally:
                tmp.unlink(missing_ok=True)
            copied += 1
        if progress is not None:
            progress(done, len(rows))
    return copied


__all__ = ["CopySummary", "Progress", "copy_artifacts", "copy_into", "copy_store",
           "open_destination"]
