"""Plugins' own tables in the project store (`conveyor.store.TableSet`, the
`conveyor_store_tables` hook): each plugin's an Alembic branch next to the core's, upgraded
with it in one locked transaction, on SQLite and a real PostgreSQL (`store_url`). Stores made by
the deprecated hand-written versions keep their rows; a failing revision changes nothing and
names its plugin; a store from a newer plugin is refused as it is."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy
from conveyor.errors import PluginError, StoreError
from conveyor.plugins import PluginHost
from conveyor.store import TableSet, open_store
from conveyor.store.migrate import HEAD, SCHEMA_VERSION, read_revisions
from conveyor.testing import Project
from conveyor_monitor.records import TABLES as MONITOR_TABLES
from conveyor_monitor.records import Monitoring
from conveyor_retrain.records import TABLES as RETRAIN_TABLES
from conveyor_retrain.records import RetrainDecisions

BRANCHES = {HEAD, "monitor_0001", "retrain_0001"}

# conveyor-monitor's and conveyor-retrain's tables as their hand-written version 1 made them
# (the form the plugins had before their Alembic branches).
LEGACY_MONITOR = (
    """CREATE TABLE IF NOT EXISTS monitor_batches (
    id TEXT PRIMARY KEY, model_name TEXT NOT NULL, model_version INTEGER, source TEXT,
    source_sha256 TEXT, rows BIGINT, created_at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL,
    drift_share DOUBLE PRECISION, drifted_features INTEGER, features INTEGER,
    prediction_drift DOUBLE PRECISION,
    prediction_drifted INTEGER, labelled_rows INTEGER, performance TEXT,
    performance_breached INTEGER, feature_results TEXT, report_json TEXT, report_html TEXT,
    message TEXT, details TEXT)""",
    "CREATE INDEX IF NOT EXISTS monitor_batches_model ON monitor_batches(model_name, created_at)",
    "CREATE INDEX IF NOT EXISTS monitor_batches_source ON monitor_batches(source_sha256)")
LEGACY_RETRAIN = (
    """CREATE TABLE IF NOT EXISTS retrain_decisions (
    id TEXT PRIMARY KEY, model_name TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    outcome TEXT NOT NULL,
    reasons TEXT, trigger_batch TEXT, batches TEXT, forced INTEGER, run_id TEXT,
    challenger_version INTEGER, champion_version INTEGER, metrics TEXT, details TEXT,
    finished_at DOUBLE PRECISION, pid INTEGER, host TEXT)""",
    "CREATE INDEX IF NOT EXISTS retrain_decisions_model ON retrain_decisions(model_name, "
    "created_at)")


def _legacy(owner: str, version: int, create: tuple[str, ...],
            upgrades: dict[int, tuple[str, ...]] | None = None) -> TableSet:
    with pytest.warns(DeprecationWarning, match="deprecated"):
        return TableSet(owner, version, create, upgrades=upgrades or {})


# --- a third party's branch, in a tmp folder ------------------------------------------------------

ACME = {
    "acme_0001": (None, 'op.create_table("acme_things", sa.Column("id", sa.Text, '
                        'primary_key=True))'),
    "acme_0002": ("acme_0001", 'op.add_column("acme_things", sa.Column("size", sa.Integer))\n'
                               'op.execute("UPDATE acme_things SET size = 7")'),
    "acme_0003": ("acme_0002", 'op.add_column("acme_things", sa.Column("note", sa.Text))'),
}
BROKEN = ('op.add_column("acme_things", sa.Column("size", sa.Integer))\n'
          'op.add_column("no_such_table", sa.Column("note", sa.Text))')


def _acme(folder: Path, revisions: list[str], *, broken: str | None = None,
          owner: str = "acme", **kwargs) -> TableSet:
    """The table set of a plugin "acme" whose branch holds `revisions` (of ACME; `broken` one
    failing half-way)."""
    versions = folder / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    for old in versions.glob("*.py"):
        old.unlink()
    for revision in revisions:
        down, body = ACME[revision]
        if revision == broken:
            body = BROKEN
        labels = (owner,) if down is None else None
        (versions / f"{revision}.py").write_text(
            "import sqlalchemy as sa\nfrom alembic import op\n\n"
            f"revision = {revision!r}\ndown_revision = {down!r}\n"
            f"branch_labels = {labels!r}\ndepends_on = None\n\n\n"
            f"def upgrade():\n{textwrap.indent(body, '    ')}\n")
    return TableSet(owner=owner, migrations=folder, **kwargs)


def _columns(store, table):
    from sqlalchemy import inspect

    with store.engine.connect() as conn:
        return [column["name"] for column in inspect(conn).get_columns(table)]


def _revisions(store) -> set[str]:
    """Every revision the store records: the core's and each branch's (own version tables)."""
    return set().union(*read_revisions(store.query, store.dialect).values())


@contextmanager
def _database(tmp_path: Path, store_url: str | None) -> Iterator[sqlalchemy.Connection]:
    """A connection to the database itself, without opening it as a store."""
    url = store_url or f"sqlite:///{tmp_path / '.conveyor' / 'store.db'}"
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _database_tables(tmp_path: Path, store_url: str | None) -> set[str]:
    """The tables of the database, looked at without opening it as a store."""
    with _database(tmp_path, store_url) as conn:
        return set(sqlalchemy.inspect(conn).get_table_names())


def _core_one_behind(store) -> None:
    """`store` as the core's revision before HEAD left it (HEAD's column dropped); closed."""
    with store.write() as conn:
        conn.execute("ALTER TABLE runs DROP COLUMN lease_until")
        conn.execute("UPDATE alembic_version SET version_num = '0002' WHERE version_num = :head",
                     {"head": HEAD})
    store.close()


def _schema(store, tables) -> dict:
    """Each table's columns (name, type, nullable, key) and indexes, as the database says (a
    key column counts as NOT NULL: SQLite lets a TEXT PRIMARY KEY hold NULL unless told)."""
    from sqlalchemy import inspect

    with store.engine.connect() as conn:
        found = inspect(conn)
        return {table: ([(c["name"], str(c["type"]), c["nullable"] and not c.get("primary_key"),
                          bool(c.get("primary_key")))
                         for c in found.get_columns(table)],
                        sorted((i["name"], tuple(i["column_names"]))
                               for i in found.get_indexes(table)))
                for table in tables}


# --- the plugins' branches -----------------------------------------------------------------------

def test_a_new_store_gets_every_branch_and_a_repository_makes_its_own(tmp_path, store_url,
                                                                      request):
    store = open_store(tmp_path, [MONITOR_TABLES, RETRAIN_TABLES], url=store_url)
    try:
        assert _revisions(store) == BRANCHES
        assert store.table_revision("conveyor-monitor") == "monitor_0001"
        assert store.table_version("conveyor-monitor") == 1  # read through legacy_versions
        assert Monitoring(store).batches() == [] and RetrainDecisions(store).list() == []
    finally:
        store.close()
    bare, url = tmp_path / "bare", store_url and \
        request.getfixturevalue("postgres_server").new_database()
    store = open_store(bare, url=url)
    try:  # the core makes no plugin table; each repository makes its own when first used
        assert not {"monitor_batches", "retrain_decisions"} & _database_tables(bare, url)
        Monitoring(store).record(model_name="m", model_version=1, source="b.csv",
                                 source_sha256="ab", rows=3, status="ok")
        assert _revisions(store) == {HEAD, "monitor_0001"}
    finally:
        store.close()


def test_a_repository_made_inside_a_write_transaction_joins_it(tmp_path, store_url):
    store = open_store(tmp_path, url=store_url)
    try:
        with store.write() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('mine', 'kept')")
            Monitoring(store)                      # the metadata path
            store.ensure_tables([replace(RETRAIN_TABLES, metadata=None)])  # through Alembic
        assert store.query("SELECT value FROM meta WHERE key='mine'")[0][0] == "kept"
        assert _revisions(store) == BRANCHES
    finally:
        store.close()


def test_the_revisions_the_metadata_and_the_hand_written_versions_make_one_schema(
        tmp_path, store_url, request):
    new_url = request.getfixturevalue("postgres_server").new_database if store_url else \
        (lambda: None)
    old = open_store(tmp_path / "old", [_legacy("conveyor-monitor", 1, LEGACY_MONITOR),
                                        _legacy("conveyor-retrain", 1, LEGACY_RETRAIN)],
                     url=store_url)
    revisions = open_store(tmp_path / "revisions", [
        replace(MONITOR_TABLES, metadata=None), replace(RETRAIN_TABLES, metadata=None)],
        url=new_url())
    metadata = open_store(tmp_path / "metadata", [MONITOR_TABLES, RETRAIN_TABLES], url=new_url())
    try:
        tables = ("monitor_batches", "retrain_decisions")
        assert _schema(revisions, tables) == _schema(old, tables)
        assert _schema(metadata, tables) == _schema(old, tables)
        assert _revisions(revisions) == _revisions(metadata) == BRANCHES
    finally:
        for store in (old, revisions, metadata):
            store.close()


def test_a_store_of_the_hand_written_versions_is_stamped_and_keeps_its_rows(tmp_path, store_url):
    store = open_store(tmp_path, [_legacy("conveyor-monitor", 1, LEGACY_MONITOR),
                                  _legacy("conveyor-retrain", 1, LEGACY_RETRAIN),
                                  _legacy("acme", 2, ("CREATE TABLE acme_things (id TEXT "
                                                      "PRIMARY KEY, size INTEGER)",),
                                          {2: ("ALTER TABLE acme_things ADD size INTEGER",)})],
                       url=store_url)
    with store.write() as conn:
        conn.execute("INSERT INTO acme_things VALUES ('a', 3)")
    batch = Monitoring(store).record(model_name="churn", model_version=1, source="b.csv",
                                     source_sha256="ab", rows=10, status="ok")
    store.close()
    acme = _acme(tmp_path / "acme", ["acme_0001", "acme_0002", "acme_0003"],
                 legacy_versions={1: "acme_0001", 2: "acme_0002"})
    store = open_store(tmp_path, [MONITOR_TABLES, RETRAIN_TABLES, acme], url=store_url)
    try:
        assert _revisions(store) == BRANCHES | {"acme_0003"}
        assert [b.id for b in Monitoring(store).batches()] == [batch.id]
        # stamped at acme_0002 (its version 2): only acme_0003 ran, its UPDATE did not
        assert [tuple(r) for r in store.query("SELECT * FROM acme_things")] == [("a", 3, None)]
    finally:
        store.close()


def test_a_hand_written_version_the_branch_does_not_map_is_refused(tmp_path, store_url):
    open_store(tmp_path, [_legacy("acme", 1, ("CREATE TABLE acme_things (id TEXT)",))],
               url=store_url).close()
    with pytest.raises(StoreError, match=r"acme .* hand-written version 1, which the plugin "
                                         r"maps to no revision") as caught:
        open_store(tmp_path, [_acme(tmp_path / "acme", ["acme_0001"])], url=store_url)
    assert "legacy_versions" in caught.value.hint
    store = open_store(tmp_path, url=store_url)
    try:
        assert _revisions(store) == {HEAD} and store.table_version("acme") == 1
    finally:
        store.close()


def test_a_store_made_with_the_plugin_tables_in_the_core_schema_opens_as_it_is(tmp_path):
    # Conveyor's schema version 3: the monitor and retrain tables in the core's schema, no
    # per-owner versions in `meta`, no alembic_version.
    folder = tmp_path / ".conveyor"
    folder.mkdir()
    with sqlite3.connect(folder / "store.db") as conn:
        conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE runs (
            id TEXT PRIMARY KEY, project TEXT, status TEXT NOT NULL, created_at REAL NOT NULL,
            finished_at REAL, duration REAL, pid INTEGER, host TEXT, invocation TEXT,
            command TEXT, overrides TEXT, config TEXT, config_hash TEXT, git_commit TEXT,
            git_dirty INTEGER, packages TEXT, error TEXT, exit_code INTEGER);
        """ + ";\n".join(LEGACY_MONITOR + LEGACY_RETRAIN) + """;
        INSERT INTO meta VALUES ('schema_version', '3');
        INSERT INTO runs (id, status, created_at) VALUES ('r1', 'completed', 1.0);
        INSERT INTO monitor_batches (id, model_name, model_version, source, rows, created_at,
            status) VALUES ('20250101-000000-abcdef', 'churn', 1, 'b.csv', 10, 5.0, 'ok');
        INSERT INTO retrain_decisions (id, model_name, created_at, outcome, reasons, batches,
            forced, metrics, details) VALUES ('d1', 'churn', 6.0, 'no_action', '["calm"]', '[]',
            0, '{}', '{}');
        """)
    store = open_store(tmp_path, [MONITOR_TABLES, RETRAIN_TABLES])
    try:
        [batch] = Monitoring(store).batches()
        assert (batch.id, batch.model_name, batch.rows) == ("20250101-000000-abcdef", "churn", 10)
        [decision] = RetrainDecisions(store).list()
        assert (decision.id, decision.reasons) == ("d1", ["calm"])
        assert _revisions(store) == BRANCHES
        assert store.query("SELECT value FROM meta WHERE key='schema_version'")[0][0] == \
            str(SCHEMA_VERSION)
        assert [r["id"] for r in store.query("SELECT id FROM runs")] == ["r1"]
    finally:
        store.close()


# --- a third party's branch ------------------------------------------------------------------------

def test_a_third_party_branch_is_created_then_upgraded(tmp_path, store_url):
    store = open_store(tmp_path, [_acme(tmp_path / "acme", ["acme_0001"])], url=store_url)
    with store.write() as conn:
        conn.execute("INSERT INTO acme_things (id) VALUES ('a')")
    store.close()
    acme = _acme(tmp_path / "acme", ["acme_0001", "acme_0002", "acme_0003"])
    store = open_store(tmp_path, [acme], url=store_url)
    try:
        assert _revisions(store) == {HEAD, "acme_0003"}
        assert store.table_revision("acme") == "acme_0003"
        assert _columns(store, "acme_things") == ["id", "size", "note"]
        assert [tuple(r) for r in store.query("SELECT * FROM acme_things")] == [("a", 7, None)]
    finally:
        store.close()


def test_a_failing_revision_changes_nothing_and_names_its_plugin(tmp_path, store_url, request):
    # A new store: the core's tables, made in the same transaction, go too.
    broken = _acme(tmp_path / "broken", ["acme_0001", "acme_0002"], broken="acme_0002")
    with pytest.raises(StoreError, match=r"tables of acme .*(no such table|does not exist)") as \
            caught:
        open_store(tmp_path, [MONITOR_TABLES, broken], url=store_url)
    assert "acme_0002.py" in caught.value.hint
    assert _database_tables(tmp_path, store_url) == set()
    # A store in use, its core behind: neither the core nor another plugin's new branch moves.
    _core_one_behind(open_store(tmp_path, [_acme(tmp_path / "acme", ["acme_0001"])],
                                url=store_url))
    with pytest.raises(StoreError, match="acme"):
        open_store(tmp_path, [RETRAIN_TABLES, broken], url=store_url)
    with _database(tmp_path, store_url) as conn:
        assert {r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")} \
            == {"0002"}
        assert {r[0] for r in conn.exec_driver_sql(
            "SELECT version_num FROM alembic_version_acme")} == {"acme_0001"}
        found = sqlalchemy.inspect(conn)
        assert "lease_until" not in {c["name"] for c in found.get_columns("runs")}
        assert [c["name"] for c in found.get_columns("acme_things")] == ["id"]
    assert "retrain_decisions" not in _database_tables(tmp_path, store_url)


def test_a_store_from_a_newer_plugin_is_refused_and_left_untouched(tmp_path, store_url):
    open_store(tmp_path, [_acme(tmp_path / "new", ["acme_0001", "acme_0002"])],
               url=store_url).close()
    older = _acme(tmp_path / "old", ["acme_0001"])
    with pytest.raises(StoreError, match=r"acme .* revision acme_0002, which this version of "
                                         r"the plugin does not know") as caught:
        open_store(tmp_path, [older, MONITOR_TABLES], url=store_url)
    assert "upgrade that plugin" in caught.value.hint
    store = open_store(tmp_path, url=store_url)
    try:
        assert _revisions(store) == {HEAD, "acme_0002"}
        assert "monitor_batches" not in _database_tables(tmp_path, store_url)
    finally:
        store.close()


def test_the_core_is_upgraded_leaving_the_branches_of_plugins_not_loaded(tmp_path, store_url):
    store = open_store(tmp_path, [_acme(tmp_path / "acme", ["acme_0001"]), MONITOR_TABLES],
                       url=store_url)
    _core_one_behind(store)
    store = open_store(tmp_path, url=store_url)  # no plugin loaded (`conveyor runs list`)
    try:
        assert _revisions(store) == {HEAD, "acme_0001", "monitor_0001"}
        assert "lease_until" in _columns(store, "runs")
    finally:
        store.close()


def test_a_branch_needs_its_label_and_ids_of_its_own(tmp_path, store_url):
    unlabelled = _acme(tmp_path / "a", ["acme_0001"], owner="acme")
    text = (unlabelled.versions_dir / "acme_0001.py").read_text()
    (unlabelled.versions_dir / "acme_0001.py").write_text(
        text.replace("branch_labels = ('acme',)", "branch_labels = None"))
    with pytest.raises(StoreError, match=r"branch_labels = \(\"acme\",\)"):
        open_store(tmp_path, [unlabelled], url=store_url)
    twin = _acme(tmp_path / "b", ["acme_0001"], owner="acme")
    (twin.versions_dir / "acme_0001_again.py").write_text(
        (twin.versions_dir / "acme_0001.py").read_text())
    with pytest.raises(StoreError, match=r"acme_0001' is used by acme_0001.py and "
                                         r"acme_0001_again.py"):
        open_store(tmp_path, [twin], url=store_url)
    outside = _acme(tmp_path / "c", ["acme_0001", "acme_0002"])
    text = (outside.versions_dir / "acme_0002.py").read_text()
    (outside.versions_dir / "acme_0002.py").write_text(
        text.replace("down_revision = 'acme_0001'", "down_revision = '0003'"))
    with pytest.raises(StoreError, match=r"acme_0002.py has down_revision = 0003, which is not "
                                         r"a revision of its branch"):
        open_store(tmp_path, [outside], url=store_url)


def _rewrite(table_set: TableSet, name: str, old: str, new: str) -> None:
    path = table_set.versions_dir / name
    path.write_text(path.read_text().replace(old, new))


@pytest.mark.parametrize("metadata", [False, True], ids=["revisions", "metadata"])
def test_depends_on_is_refused_naming_the_plugin_and_the_store_is_untouched(
        tmp_path, store_url, metadata):
    # Review finding 1: Alembic let a branch's depends_on overwrite the core's row.
    acme = _acme(tmp_path / "acme", ["acme_0001"],
                 metadata=(lambda: sqlalchemy.MetaData()) if metadata else None)
    _rewrite(acme, "acme_0001.py", "depends_on = None", "depends_on = '0003'")
    open_store(tmp_path, url=store_url).close()
    with pytest.raises(StoreError, match=r"tables of acme .*acme_0001.py has depends_on = "
                                         r"0003; .*set depends_on = None") as caught:
        open_store(tmp_path, [acme], url=store_url)
    assert "acme" in caught.value.hint
    with _database(tmp_path, store_url) as conn:
        assert [r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")] \
            == [HEAD]
    assert not {"acme_things", "alembic_version_acme"} & _database_tables(tmp_path, store_url)


def test_alembic_version_keeps_the_core_revision_only(tmp_path, store_url):
    # Review findings 1 and 2: each branch has its own version table, so `alembic_version`
    # holds what an older Conveyor (same core schema) checks, `{HEAD}`, and opening without
    # the plugins (`conveyor runs list`) after opening with them stays at the fast path.
    from alembic.runtime.migration import MigrationContext

    acme = _acme(tmp_path / "acme", ["acme_0001", "acme_0002"])
    open_store(tmp_path, [MONITOR_TABLES, RETRAIN_TABLES, acme], url=store_url).close()
    with _database(tmp_path, store_url) as conn:
        assert [r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")] \
            == [HEAD]
        assert MigrationContext.configure(conn).get_current_heads() == (HEAD,)
        assert {name: {r[0] for r in conn.exec_driver_sql(f"SELECT version_num FROM {name}")}
                for name in ("alembic_version_conveyor_monitor",
                             "alembic_version_conveyor_retrain", "alembic_version_acme")} == {
            "alembic_version_conveyor_monitor": {"monitor_0001"},
            "alembic_version_conveyor_retrain": {"retrain_0001"},
            "alembic_version_acme": {"acme_0002"}}
    script = ("import json, sys; from pathlib import Path; from conveyor.store import open_store; "
              "s = open_store(Path(sys.argv[1]), url=sys.argv[2] or None); s.close(); "
              "print(json.dumps('alembic' in sys.modules))")
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path), store_url or ""],
                             capture_output=True, text=True, check=True).stdout
        assert json.loads(out) is False
    store = open_store(tmp_path, [acme], url=store_url)
    try:
        assert _revisions(store) == BRANCHES | {"acme_0002"}
        assert store.table_revision("acme") == "acme_0002"
    finally:
        store.close()


def test_a_revision_id_longer_than_the_version_table_holds_is_refused(tmp_path, store_url):
    # Review finding 6: VARCHAR(32) held it on SQLite only.
    acme = _acme(tmp_path / "acme", ["acme_0001"])
    long_id = "acme_0001_" + "x" * 30
    _rewrite(acme, "acme_0001.py", "revision = 'acme_0001'", f"revision = {long_id!r}")
    with pytest.raises(StoreError, match=rf"tables of acme .*'{long_id}' \(acme_0001.py\) is 40 "
                                         r"characters long; the store keeps at most 32"):
        open_store(tmp_path, [acme], url=store_url)
    assert _database_tables(tmp_path, store_url) == set()


def test_a_failing_metadata_function_names_its_plugin(tmp_path, store_url):
    # Review finding 7: it was an "internal error" (exit 70) naming no one.
    def broken():
        raise RuntimeError("no tables today")

    acme = _acme(tmp_path / "acme", ["acme_0001"], metadata=broken)
    with pytest.raises(StoreError, match=r"tables of acme .*metadata\(\) could not be created: "
                                         r"RuntimeError: no tables today"):
        open_store(tmp_path, [acme], url=store_url)
    assert _database_tables(tmp_path, store_url) == set()


def test_a_store_with_a_branch_of_a_plugin_not_loaded_is_copied_whole(tmp_path, store_url,
                                                                       request):
    # Review finding 3: copy refused it; now the branch's tables and version table go along.
    from conveyor.store import copy_store

    acme = _acme(tmp_path / "acme", ["acme_0001", "acme_0002"])
    store = open_store(tmp_path, [acme, MONITOR_TABLES], url=store_url)
    with store.write() as conn:
        conn.execute("INSERT INTO acme_things (id, size) VALUES ('a', 3)")
    store.close()
    dest_url = request.getfixturevalue("postgres_server").new_database() if store_url else \
        f"sqlite:///{tmp_path / 'copy.db'}"
    source = open_store(tmp_path, [RETRAIN_TABLES], url=store_url)  # acme, monitor not loaded
    try:
        summary = copy_store(source, dest_url, tables=[MONITOR_TABLES])
    finally:
        source.close()
    assert summary.rows["acme_things"] == 1 and summary.revision == HEAD
    assert "alembic_version_acme" in summary.created
    copied = open_store(tmp_path / "dest", [acme, MONITOR_TABLES, RETRAIN_TABLES], url=dest_url)
    try:
        assert _revisions(copied) == BRANCHES | {"acme_0002"}
        assert [tuple(r) for r in copied.query("SELECT id, size FROM acme_things")] == [("a", 3)]
    finally:
        copied.close()


def test_a_copy_between_stores_at_other_branch_revisions_is_refused(tmp_path):
    from conveyor.store import copy_store

    open_store(tmp_path, [_acme(tmp_path / "new", ["acme_0001", "acme_0002"])]).close()
    source = open_store(tmp_path)
    try:
        with pytest.raises(StoreError, match=r"different schema revisions \(acme: acme_0002 vs "
                                             r"acme_0001\)"):
            copy_store(source, f"sqlite:///{tmp_path / 'copy.db'}",
                       tables=[_acme(tmp_path / "old", ["acme_0001"])])
    finally:
        source.close()


@pytest.mark.server
def test_two_processes_opening_a_new_postgresql_store_both_succeed(tmp_path, postgres_url):
    script = ("import sys; from pathlib import Path; from conveyor.store import open_store; "
              "from conveyor_monitor.records import TABLES as M; "
              "from conveyor_retrain.records import TABLES as R; "
              "open_store(Path(sys.argv[1]), [M, R], url=sys.argv[2]).close()")
    processes = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / name),
                                   postgres_url], stderr=subprocess.PIPE, text=True)
                 for name in ("a", "b")]
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], errors
    store = open_store(tmp_path / "c", url=postgres_url)
    try:
        assert _revisions(store) == BRANCHES
    finally:
        store.close()


def test_a_new_store_and_one_at_every_head_open_without_importing_alembic(tmp_path):
    script = ("import json, sys; from pathlib import Path; from conveyor.store import open_store; "
              "from conveyor_monitor.records import TABLES as M, Monitoring; "
              "from conveyor_retrain.records import TABLES as R; "
              "s = open_store(Path(sys.argv[1]), [M, R]); Monitoring(s); s.close(); "
              "print(json.dumps('alembic' in sys.modules))")
    for _ in ("new", "at every head"):
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                             text=True, check=True).stdout
        assert json.loads(out) is False
    store = open_store(tmp_path)
    try:
        assert _revisions(store) == BRANCHES
    finally:
        store.close()


# --- the deprecated hand-written form ------------------------------------------------------------

def test_the_hand_written_form_still_works_with_a_deprecation_warning(tmp_path, store_url):
    v1 = _legacy("old", 1, ("CREATE TABLE IF NOT EXISTS old_things (id TEXT PRIMARY KEY)",))
    v2 = _legacy("old", 2, ("CREATE TABLE IF NOT EXISTS old_things (id TEXT PRIMARY KEY, "
                            "size INTEGER)",),
                 {2: ("ALTER TABLE old_things ADD COLUMN size INTEGER",)})
    open_store(tmp_path, [v1], url=store_url).close()
    store = open_store(tmp_path, [v2], url=store_url)
    try:
        assert store.table_version("old") == 2
        assert _columns(store, "old_things") == ["id", "size"]
    finally:
        store.close()


def test_a_table_set_is_checked_when_made(tmp_path):
    with pytest.raises(ValueError, match="no upgrade to version 3"):
        TableSet("acme", 3, (), upgrades={2: ()})
    with pytest.raises(ValueError, match="version must be"):
        TableSet("acme", 0, ())
    with pytest.raises(ValueError, match="is not a folder"):
        TableSet(owner="acme", migrations=tmp_path / "missing")
    with pytest.raises(ValueError, match="not both"):
        TableSet(owner="acme", version=1, migrations=tmp_path)
    with pytest.raises(ValueError, match="give migrations"):
        TableSet(owner="acme")


# --- through the hook and the command line ---------------------------------------------------------

TABLES_PLUGIN = '''
    from pathlib import Path

    import conveyor
    from conveyor.store import TableSet


    @conveyor.hookimpl
    def conveyor_store_tables(register):
        register(TableSet(owner="acme", migrations=Path(__file__).parent / "acme_migrations"))
'''


def _host(folder: Path, modules: dict[str, str]):
    folder.mkdir(exist_ok=True)
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return PluginHost().load(local_modules=list(modules), project_dir=folder)


def test_plugins_declare_their_branches_through_the_hook(tmp_path):
    folder = tmp_path / "p"
    _acme(folder / "acme_migrations", ["acme_0001"])
    found = _host(folder, {"acme_tables": TABLES_PLUGIN}).contributions
    owners = {t.owner: t for t in found.store_tables}
    assert {"acme", "conveyor-monitor", "conveyor-retrain"} <= set(owners)
    assert found.provider["tables:acme"] == "acme_tables"
    store = open_store(folder, found.store_tables)
    try:
        assert _revisions(store) == BRANCHES | {"acme_0001"}
    finally:
        store.close()
    with pytest.raises(PluginError, match="acme"):
        _ = _host(folder, {"acme_tables": TABLES_PLUGIN, "acme_again": TABLES_PLUGIN}).contributions


BROKEN_METADATA_PLUGIN = '''
    from pathlib import Path

    import conveyor
    from conveyor.store import TableSet


    def tables():
        raise RuntimeError("no tables today")


    @conveyor.hookimpl
    def conveyor_store_tables(register):
        register(TableSet(owner="acme", migrations=Path(__file__).parent / "acme_migrations",
                          metadata=tables))
'''


def test_a_failing_metadata_function_is_a_clear_error_on_the_command_line(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "conveyor.yaml").write_text("plugins:\n  local: [acme_tables]\n")
    (project / "acme_tables.py").write_text(textwrap.dedent(BROKEN_METADATA_PLUGIN))
    _acme(project / "acme_migrations", ["acme_0001"])
    result = Project(project).cli("runs", "list")
    assert result.returncode == StoreError.exit_code, result.stderr
    assert "error: the tables of acme in the project store" in result.stderr
    assert "RuntimeError: no tables today" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failing_revision_is_a_clear_error_on_the_command_line(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "conveyor.yaml").write_text("plugins:\n  local: [acme_tables]\n")
    (project / "acme_tables.py").write_text(textwrap.dedent(TABLES_PLUGIN))
    _acme(project / "acme_migrations", ["acme_0001", "acme_0002"], broken="acme_0002")
    result = Project(project).cli("store", "copy", "--to", f"sqlite:///{tmp_path / 'copy.db'}")
    assert result.returncode == StoreError.exit_code
    assert "error: the tables of acme in the project store" in result.stderr
    assert "no such table: no_such_table" in result.stderr
    assert "acme_0002.py" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "copy.db").exists()
