"""Tables a plugin keeps in the project store, declared through the `conveyor_store_tables` hook.

A plugin's tables are an Alembic branch of their own, next to the core's (branch "conveyor"):

    from pathlib import Path
    from conveyor.store import TableSet

    TABLES = TableSet(owner="conveyor-quality",
                      migrations=Path(__file__).parent / "migrations")

    @conveyor.hookimpl
    def conveyor_store_tables(register):
        register(TABLES)

`migrations/versions/` holds ordinary Alembic revision files (no env.py, no alembic.ini: the
core's environment runs them). The first has `down_revision = None` and
`branch_labels = ("conveyor-quality",)` (the branch label IS the owner); each later one
`down_revision` the one before. `depends_on` must be None: the core is always brought to its
head first, in the same transaction, so a branch may use every core table; a revision pointing
at another branch's (or the core's) is refused. Revision ids are at most 32 characters (the
version table's column on PostgreSQL); prefix them with the plugin ("quality_0001"). Write them
with `op` (portable across SQLite and PostgreSQL; on SQLite `op.batch_alter_table` for column
changes).

Each branch keeps its revision in a version table of its own (`TableSet.version_table`,
"alembic_version_conveyor_quality"), so `alembic_version` holds the core's revision only: an
older Conveyor with the same core schema still opens a store a newer one added branches to, and
a store opened without some plugins (`conveyor runs list` loads none) leaves their branches
alone.

A store new to the branch runs its revisions through Alembic (importing it costs some
400 ms, once); give `metadata` too, a function returning the tables at the branch's head as
SQLAlchemy `MetaData`, and such a store gets them at once (`create_all`, then stamped at the
head, Alembic not imported), as the core's new stores do. Keep it equal to what the revisions
make: test it (conveyor's tests compare the two for conveyor-monitor and conveyor-retrain).

When a store is opened with table sets (`open_store(project_dir, tables=...)`, or
`Store.ensure_tables` from the plugin's own repository), `conveyor.store.migrate.upgrade` brings
the core and every branch to its head in one transaction holding the store's schema lock: a
failing revision leaves the store as it was and raises StoreError naming the plugin; a store
whose branch is at a revision the plugin does not know (made by a newer version of it) is
refused and left untouched. A store already at every head costs the two small queries the core
needs anyway, Alembic not imported: `TableSet.head` is read from the revision files' text.

Tables the plugin made before with the hand-written form below keep their rows: give
`legacy_versions` ({old version: revision}); a store whose `meta` says "tables:OWNER" = N is
stamped at `legacy_versions[N]` and upgraded from there.

The hand-written form (`TableSet(owner, version, create, upgrades)`: `create` statements with
IF NOT EXISTS, `upgrades` {version: statements}, the version kept in `meta` "tables:OWNER") is
DEPRECATED: it still works (a DeprecationWarning says so) and will be removed; move to a branch
with `legacy_versions` mapping each of its versions.
"""

from __future__ import annotations

import ast
import hashlib
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import MetaData


@dataclass(frozen=True)
class RevisionFile:
    """What the text of one Alembic revision file declares (read without importing it)."""

    path: Path
    revision: str
    down_revisions: tuple[str, ...]
    branch_labels: tuple[str, ...]
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSet:
    """The tables (and indexes) one plugin keeps in the store: `owner` names them (the
    plugin's distribution name, say, and the label of its Alembic branch), `migrations` the
    folder whose `versions/` holds the branch's revisions, `legacy_versions` {version of the
    deprecated hand-written form: revision it equals}, `metadata` (optional) a function
    returning the tables at the branch's head as SQLAlchemy `MetaData`, which a store new to
    the branch gets at once (see the module docstring).

    Deprecated form: `version` the schema version (1 and up), `create` the statements making
    the tables from nothing at `version`, `upgrades` {version: statements} taking the previous
    version to that one (see the module docstring)."""

    owner: str
    version: int | None = None
    create: tuple[str, ...] = ()
    upgrades: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    migrations: Path | None = None
    legacy_versions: Mapping[int, str] = field(default_factory=dict)
    metadata: Callable[[], MetaData] | None = None

    def __post_init__(self) -> None:
        if not self.owner or not isinstance(self.owner, str):
            raise ValueError("a TableSet needs an owner (the plugin's name)")
        object.__setattr__(self, "create", tuple(self.create))
        if self.migrations is not None:
            if self.version is not None or self.create or self.upgrades or \
                    (self.metadata is not None and not callable(self.metadata)):
                raise ValueError(f"TableSet {self.owner}: give migrations (an Alembic branch, "
                                 "metadata a function) or the deprecated version/create/"
                                 "upgrades, not both")
            object.__setattr__(self, "migrations", Path(self.migrations))
            if not self.versions_dir.is_dir():
                raise ValueError(f"TableSet {self.owner}: {self.versions_dir} is not a folder "
                                 "(migrations must hold a versions/ folder of Alembic revisions)")
            return
        if self.version is None:
            raise ValueError(f"TableSet {self.owner}: give migrations=FOLDER (its versions/ "
                             "holding the plugin's Alembic branch)")
        if not isinstance(self.version, int) or self.version < 1:
            raise ValueError(f"TableSet {self.owner}: version must be an int >= 1, "
                             f"not {self.version!r}")
        missing = [v for v in range(2, self.version + 1) if v not in self.upgrades]
        if missing:
            raise ValueError(f"TableSet {self.owner}: no upgrade to version "
                             + ", ".join(map(str, missing)))
        warnings.warn(f"TableSet {self.owner}: version/create/upgrades (hand-written schema "
                      "versions) are deprecated; declare the tables as an Alembic branch "
                      "(TableSet(owner, migrations=FOLDER, legacy_versions={...}), see "
                      "conveyor.store.tables)", DeprecationWarning, stacklevel=3)

    @property
    def is_branch(self) -> bool:
        """The tables are an Alembic branch (not the deprecated hand-written form)."""
        return self.migrations is not None

    @property
    def versions_dir(self) -> Path:
        """The folder of the branch's revision files."""
        if self.migrations is None:
            raise ValueError(f"TableSet {self.owner} is not an Alembic branch")
        return self.migrations / "versions"

    @property
    def version_table(self) -> str:
        """The table holding the branch's revision in the store (see `version_table`)."""
        return version_table(self.owner)

    @property
    def meta_key(self) -> str:
        """The key of this owner's hand-written version in the store's `meta` table."""
        return meta_key(self.owner)

    @cached_property
    def revision_files(self) -> tuple[RevisionFile, ...]:
        """The branch's revision files as their text declares them (nothing imported)."""
        return tuple(revision_file(path) for path in sorted(self.versions_dir.glob("*.py"))
                     if path.name != "__init__.py")

    @cached_property
    def head(self) -> str | None:
        """The branch's newest revision, read from the files' text; None when that text does
        not tell one head (then opening a store always asks Alembic)."""
        try:
            files = self.revision_files
        except (OSError, SyntaxError, ValueError):
            return None
        pointed = {down for f in files for down in f.down_revisions}
        heads = [f.revision for f in files if f.revision not in pointed]
        return heads[0] if len(heads) == 1 else None


def revision_file(path: Path) -> RevisionFile:
    """The `revision`, `down_revision`, `branch_labels` and `depends_on` an Alembic revision
    file assigns
    (literal values at module level), read from its text: line by line (parsing the whole file
    costs more than opening the store), the file parsed when a value spans lines."""
    text = path.read_text(encoding="utf-8")
    values: dict[str, object] = {}
    try:
        for match in _ASSIGNMENT.finditer(text):
            values[match["name"]] = ast.literal_eval(match["value"].split("#")[0].strip())
    except (SyntaxError, ValueError):
        values = _assignments(text, path)
    revision = values.get("revision")
    if not isinstance(revision, str):
        raise ValueError(f"{path} assigns no revision id")
    return RevisionFile(path, revision, _names(values.get("down_revision")),
                        _names(values.get("branch_labels")), _names(values.get("depends_on")))


_ASSIGNMENT = re.compile(r"^(?P<name>revision|down_revision|branch_labels|depends_on)"
                         r"\s*(?::[^=\n]*)?=\s*(?P<value>[^\n]+)$", re.MULTILINE)


def _assignments(text: str, path: Path) -> dict[str, object]:
    values: dict[str, object] = {}
    for node in ast.parse(text, str(path)).body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) and node.value else []
        for target in targets:
            if isinstance(target, ast.Name) and target.id in (
                    "revision", "down_revision", "branch_labels", "depends_on"):
                values[target.id] = ast.literal_eval(node.value)
    return values


def _names(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)  # type: ignore[union-attr]


def meta_key(owner: str) -> str:
    """The key of `owner`'s hand-written table version in the store's `meta` table."""
    return f"tables:{owner}"


def version_table(owner: str) -> str:
    """The table holding `owner`'s branch revision: "alembic_version_" and the owner in
    lower-case letters, digits and underscores ("conveyor-monitor":
    "alembic_version_conveyor_monitor"), shortened with a hash of the owner past PostgreSQL's
    63 characters."""
    name = VERSION_TABLE_PREFIX + (re.sub(r"[^a-z0-9]+", "_", owner.lower()).strip("_") or "_")
    if len(name) > 63:
        digest = hashlib.sha256(owner.encode()).hexdigest()[:10]
        name = f"{name[:52]}_{digest}"
    return name


VERSION_TABLE_PREFIX = "alembic_version_"
