"""Tables a plugin keeps in the project store, declared through the `conveyor_store_tables` hook.

    from conveyor.store import TableSet

    TABLES = TableSet(
        owner="conveyor-monitor", version=2,
        create=("CREATE TABLE IF NOT EXISTS my_batches (id TEXT PRIMARY KEY, rows INTEGER, "
                "note TEXT)",),
        upgrades={2: ("ALTER TABLE my_batches ADD COLUMN note TEXT",)})

    @conveyor.hookimpl
    def conveyor_store_tables(register):
        register(TABLES)

Each owner's schema version is kept in the store's `meta` table (key "tables:OWNER"). When a
store is opened with a table set (`open_store(project_dir, tables=...)`, or
`Store.ensure_tables` from the plugin's own repository), a store without that owner's tables
gets `create` (write it with IF NOT EXISTS, so tables an older Conveyor made are kept), one at an
older version gets `upgrades[v]` for each version after its own, in order; all of it in one
transaction with the new version recorded, so a killed process leaves the old schema or the new
one. A store at a newer version than the plugin's is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TableSet:
    """The tables (and indexes) one plugin keeps in the store: `owner` names them (the
    plugin's distribution name, say), `version` is their schema version (1 and up), `create`
    the statements making them from nothing at `version`, `upgrades` {version: statements}
    taking the previous version to that one."""

    owner: str
    version: int
    create: tuple[str, ...]
    upgrades: Mapping[int, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.owner or not isinstance(self.owner, str):
            raise ValueError("a TableSet needs an owner (the plugin's name)")
        if not isinstance(self.version, int) or self.version < 1:
            raise ValueError(f"TableSet {self.owner}: version must be an int >= 1, "
                             f"not {self.version!r}")
        object.__setattr__(self, "create", tuple(self.create))
        missing = [v for v in range(2, self.version + 1) if v not in self.upgrades]
        if missing:
            raise ValueError(f"TableSet {self.owner}: no upgrade to version "
                             + ", ".join(map(str, missing)))

    @property
    def meta_key(self) -> str:
        """The key of this owner's version in the store's `meta` table."""
        return meta_key(self.owner)


def meta_key(owner: str) -> str:
    """The key of `owner`'s table version in the store's `meta` table."""
    return f"tables:{owner}"
