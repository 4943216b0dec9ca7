"""Plugins' own tables in the project store (`conveyor.store.TableSet`, the
`conveyor_store_tables` hook): created, upgraded in order in one transaction, versioned per
owner in `meta`, and a store from before (when the core made the monitor and retrain tables)
opens as it is."""

from __future__ import annotations

import sqlite3
import textwrap

import pytest
from conveyor.errors import PluginError, StoreError
from conveyor.plugins import PluginHost
from conveyor.store import TableSet, open_store
from conveyor.store.migrate import SCHEMA_VERSION
from conveyor_monitor.records import TABLES as MONITOR_TABLES
from conveyor_monitor.records import Monitoring
from conveyor_retrain.records import TABLES as RETRAIN_TABLES
from conveyor_retrain.records import RetrainDecisions

# The store as Conveyor made it before plugins declared their tables (schema version 3, the
# monitor and retrain tables in the core's schema, no per-owner versions in `meta`).
OLD_STORE = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs (
    id TEXT PRIMARY KEY, project TEXT, status TEXT NOT NULL, created_at REAL NOT NULL,
    finished_at REAL, duration REAL, pid INTEGER, host TEXT, invocation TEXT, command TEXT,
    overrides TEXT, config TEXT, config_hash TEXT, git_commit TEXT, git_dirty INTEGER,
    packages TEXT, error TEXT, exit_code INTEGER);
CREATE TABLE retrain_decisions (
    id TEXT PRIMARY KEY, model_name TEXT NOT NULL, created_at REAL NOT NULL, outcome TEXT NOT NULL,
    reasons TEXT, trigger_batch TEXT, batches TEXT, forced INTEGER, run_id TEXT,
    challenger_version INTEGER, champion_version INTEGER, metrics TEXT, details TEXT,
    finished_at REAL, pid INTEGER, host TEXT);
CREATE INDEX retrain_decisions_model ON retrain_decisions(model_name, created_at);
CREATE TABLE monitor_batches (
    id TEXT PRIMARY KEY, model_name TEXT NOT NULL, model_version INTEGER, source TEXT,
    source_sha256 TEXT, rows INTEGER, created_at REAL NOT NULL, status TEXT NOT NULL,
    drift_share REAL, drifted_features INTEGER, features INTEGER, prediction_drift REAL,
    prediction_drifted INTEGER, labelled_rows INTEGER, performance TEXT,
    performance_breached INTEGER, feature_results TEXT, report_json TEXT, report_html TEXT,
    message TEXT, details TEXT);
INSERT INTO meta VALUES ('schema_version', '3');
INSERT INTO runs (id, status, created_at) VALUES ('r1', 'completed', 1.0);
INSERT INTO monitor_batches (id, model_name, model_version, source, rows, created_at, status)
    VALUES ('20250101-000000-abcdef', 'churn', 1, 'b.csv', 10, 5.0, 'ok');
INSERT INTO retrain_decisions (id, model_name, created_at, outcome, reasons, batches, forced,
    metrics, details) VALUES ('d1', 'churn', 6.0, 'no_action', '["calm"]', '[]', 0, '{}', '{}');
"""


def _old_store(tmp_path):
    folder = tmp_path / ".conveyor"
    folder.mkdir()
    with sqlite3.connect(folder / "store.db") as conn:
        conn.executescript(OLD_STORE)
    return folder / "store.db"


def _columns(store, table):
    from sqlalchemy import inspect

    with store.engine.connect() as conn:
        return [column["name"] for column in inspect(conn).get_columns(table)]


def test_a_store_made_with_the_plugin_tables_in_the_core_schema_opens_as_it_is(tmp_path):
    _old_store(tmp_path)
    store = open_store(tmp_path, [MONITOR_TABLES, RETRAIN_TABLES])
    try:
        [batch] = Monitoring(store).batches()
        assert (batch.id, batch.model_name, batch.rows) == ("20250101-000000-abcdef", "churn", 10)
        [decision] = RetrainDecisions(store).list()
        assert (decision.id, decision.reasons) == ("d1", ["calm"])
        assert store.table_version("conveyor-monitor") == 1
        assert store.table_version("conveyor-retrain") == 1
        assert store.query("SELECT value FROM meta WHERE key='schema_version'")[0][0] == \
            str(SCHEMA_VERSION)
        assert [r["id"] for r in store.query("SELECT id FROM runs")] == ["r1"]
        Monitoring(store).record(model_name="churn", model_version=1, source="c.csv",
                                 source_sha256="cd", rows=3, status="ok")
    finally:
        store.close()


def test_the_core_no_longer_makes_plugin_tables_and_a_repository_makes_its_own(tmp_path,
                                                                               store_url):
    from sqlalchemy import inspect

    store = open_store(tmp_path, url=store_url)
    try:
        with store.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
        assert not {"monitor_batches", "retrain_decisions"} & tables
        assert Monitoring(store).batches() == [] and RetrainDecisions(store).list() == []
        assert store.table_version("conveyor-monitor") == 1
    finally:
        store.close()


V1 = TableSet("acme", 1, ("CREATE TABLE IF NOT EXISTS acme_things (id TEXT PRIMARY KEY)",))
V3 = TableSet("acme", 3, (
    "CREATE TABLE IF NOT EXISTS acme_things (id TEXT PRIMARY KEY, size INTEGER, note TEXT)",),
    upgrades={2: ("ALTER TABLE acme_things ADD COLUMN size INTEGER",),
              3: ("ALTER TABLE acme_things ADD COLUMN note TEXT",
                  "UPDATE acme_things SET note = 'size ' || size")})


def test_upgrades_apply_in_order_and_a_new_store_gets_the_latest_at_once(tmp_path, store_url,
                                                                         request):
    store = open_store(tmp_path / "old", [V1], url=store_url)
    with store.write() as conn:
        conn.execute("INSERT INTO acme_things VALUES ('a')")
    store.close()
    store = open_store(tmp_path / "old", [V3], url=store_url)
    try:
        assert store.table_version("acme") == 3
        assert _columns(store, "acme_things") == ["id", "size", "note"]
        assert [tuple(r) for r in store.query("SELECT * FROM acme_things")] == [("a", None, None)]
    finally:
        store.close()
    fresh = open_store(tmp_path / "new", [V3], url=store_url and
                       request.getfixturevalue("postgres_server").new_database())
    try:
        assert fresh.table_version("acme") == 3
        assert _columns(fresh, "acme_things") == ["id", "size", "note"]
    finally:
        fresh.close()


def test_a_failing_upgrade_changes_nothing_and_a_newer_store_is_left_alone(tmp_path, store_url):
    open_store(tmp_path, [V1], url=store_url).close()
    broken = TableSet("acme", 3, V3.create, upgrades={
        2: ("ALTER TABLE acme_things ADD COLUMN size INTEGER",),
        3: ("ALTER TABLE no_such_table ADD COLUMN note TEXT",)})
    with pytest.raises(StoreError, match=r"acme.*no_such_table"):
        open_store(tmp_path, [broken], url=store_url)
    store = open_store(tmp_path, url=store_url)
    try:
        assert store.table_version("acme") == 1                  # one transaction: all or none
        assert _columns(store, "acme_things") == ["id"]
    finally:
        store.close()
    open_store(tmp_path, [V3], url=store_url).close()
    store = open_store(tmp_path, [V1], url=store_url)                           # an older plugin: left alone
    try:
        assert store.table_version("acme") == 3
    finally:
        store.close()


def test_a_table_set_needs_every_upgrade():
    with pytest.raises(ValueError, match="no upgrade to version 3"):
        TableSet("acme", 3, (), upgrades={2: ()})
    with pytest.raises(ValueError):
        TableSet("acme", 0, ())


TABLES_PLUGIN = '''
    import conveyor
    from conveyor.store import TableSet


    @conveyor.hookimpl
    def conveyor_store_tables(register):
        register(TableSet("acme", 1, ("CREATE TABLE IF NOT EXISTS acme_things (id TEXT)",)))
'''


def _host(tmp_path, modules):
    folder = tmp_path / "p"
    folder.mkdir(exist_ok=True)
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return PluginHost().load(local_modules=list(modules), project_dir=folder)


def test_plugins_declare_their_tables_through_the_hook(tmp_path):
    found = _host(tmp_path, {"acme_tables": TABLES_PLUGIN}).contributions
    owners = {t.owner: t for t in found.store_tables}
    assert {"acme", "conveyor-monitor", "conveyor-retrain"} <= set(owners)
    assert found.provider["tables:acme"] == "acme_tables"
    store = open_store(tmp_path / "p", found.store_tables)
    try:
        assert store.table_version("acme") == 1
    finally:
        store.close()
    with pytest.raises(PluginError, match="acme"):
        _ = _host(tmp_path, {"acme_tables": TABLES_PLUGIN,
                             "acme_again": TABLES_PLUGIN}).contributions
