"""The core pieces monitoring builds on: the monitor_batches table (conveyor-monitor's, and its
migration onto older stores), the Monitoring API, `conveyor.alerts.fire`, the drift detector hook, and
`api.load_output`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import conveyor
import pytest
from _support import local_project
from conveyor import api
from conveyor.alerts import Alert, fire
from conveyor.errors import StoreError
from conveyor.plugins import PluginHost
from conveyor.store import open_store
from conveyor.store.migrate import HEAD
from conveyor.testing import each_store, store_rows, store_table_names
from conveyor_monitor.records import TABLES as MONITOR_TABLES
from conveyor_monitor.records import Monitoring


@each_store
def test_an_older_store_gains_the_monitoring_table_and_keeps_its_rows(tmp_path):
    store = open_store(tmp_path)
    with store.write() as conn:
        conn.execute("INSERT INTO runs (id, status, created_at) VALUES ('r1', 'completed', 1.0)")
        # What a store made by schema version 1 looks like: no monitor_batches.
        conn.execute("DROP TABLE IF EXISTS monitor_batches")
    store.close()
    assert "monitor_batches" not in store_table_names(tmp_path)
    store = open_store(tmp_path, [MONITOR_TABLES])  # conveyor-monitor's table, by its hook
    try:
        assert "monitor_batches" in store_table_names(tmp_path)
        assert store.query("SELECT version_num FROM alembic_version")[0][0] == HEAD
        assert store.table_version("conveyor-monitor") == 1
        assert [r["id"] for r in store.query("SELECT id FROM runs")] == ["r1"]
        Monitoring(store).record(model_name="m", model_version=1, source="b.csv",
                                 source_sha256="ab", rows=10, status="ok")
    finally:
        store.close()


@each_store
def test_a_store_from_a_newer_conveyor_is_refused_and_kept_as_it_is(tmp_path):
    store = open_store(tmp_path)
    with store.write() as conn:
        conn.execute("UPDATE alembic_version SET version_num='9999'")
    store.close()
    with pytest.raises(StoreError, match="newer Conveyor"):
        open_store(tmp_path)
    assert store_rows(tmp_path, "SELECT version_num FROM alembic_version") == [
        {"version_num": "9999"}]


@each_store
def test_monitoring_records_and_lists_batches(tmp_path):
    store = open_store(tmp_path)
    try:
        log = Monitoring(store)
        first = log.record(model_name="churn", model_version=1, source="w1.csv",
                           source_sha256="a" * 64, rows=1000, status="ok", drift_share=0.0,
                           features=6, performance={"accuracy": 0.8}, labelled_rows=500,
                           feature_results={"tenure": {"score": 0.01}}, created_at=100.0)
        log.record(model_name="churn", model_version=1, source="w2.csv", source_sha256="b" * 64,
                   rows=900, status="drift", drift_share=0.5, drifted_features=3, features=6,
                   performance_breached=True, details={"alerts": ["drift"]}, created_at=200.0)
        log.record(model_name="other", model_version=2, source="x.csv", source_sha256="c" * 64,
                   rows=5, status="insufficient", created_at=300.0)
        churn = log.batches(model_name="churn")
        assert [b.source for b in churn] == ["w1.csv", "w2.csv"]  # oldest first
        assert churn[0].performance == {"accuracy": 0.8} and churn[0].labelled_rows == 500
        assert churn[0].feature_results == {"tenure": {"score": 0.01}}
        assert churn[1].performance_breached and churn[1].details == {"alerts": ["drift"]}
        assert [b.status for b in log.batches(limit=2)] == ["drift", "insufficient"]
        assert [b.source for b in log.batches(status="drift")] == ["w2.csv"]
        assert [b.source for b in log.batches(source_sha256="a" * 64)] == ["w1.csv"]
        assert [b.source for b in log.batches(since=150.0)] == ["w2.csv", "x.csv"]
        assert log.get(first.id[:20]).id == first.id  # a prefix is enough
        assert log.get(first.id) == first
        with pytest.raises(conveyor.UsageError, match="no monitored batch"):
            log.get("nope")
        with pytest.raises(ValueError, match="status must be one of"):
            log.record(model_name="m", model_version=1, source="s", source_sha256=None, rows=0,
                       status="fine")
    finally:
        store.close()


ALERT_MODULES = {
    "alert_broken": '''
import conveyor

@conveyor.hookimpl
def conveyor_alert(alert, project_dir):
    raise ConnectionError("pager service down")
''',
    "alert_sink": '''
import json
import conveyor

@conveyor.hookimpl
def conveyor_alert(alert, project_dir):
    with open(project_dir / "alerts.jsonl", "a") as handle:
        handle.write(json.dumps(alert.as_dict()) + "\\n")
''',
}


def test_every_alert_plugin_is_called_and_a_failing_one_is_named(tmp_path, capsys):
    project = local_project(tmp_path / "p", local=list(ALERT_MODULES), modules=ALERT_MODULES)
    alert = Alert(kind="drift", severity="warning", message="3 of 6 features drifted",
                  model="churn:2", details={"drift_share": 0.5})
    with conveyor.Session(project.path) as session:
        failures = fire(session, alert)
    assert len(failures) == 1 and "alert_broken" in failures[0]
    assert "pager service down" in failures[0]
    assert "warning: alert not delivered" in capsys.readouterr().err
    delivered = (project.path / "alerts.jsonl").read_text()
    assert '"kind": "drift"' in delivered and '"model": "churn:2"' in delivered
    with pytest.raises(ValueError, match="alert kind"):
        Alert(kind="weather", severity="info", message="sunny")
    with pytest.raises(ValueError, match="severity"):
        Alert(kind="promotion", severity="loud", message="v3 promoted")


DETECTORS = '''
import conveyor


def _always(dist, threshold):
    return conveyor.DriftResult(score=1.0, drifted=True)


@conveyor.hookimpl
def conveyor_drift_detectors(register):
    register(conveyor.DriftDetector("always", frozenset({"numeric"}), _always, 0.5))
'''


def _host(tmp_path: Path, modules: dict[str, str]) -> PluginHost:
    folder = tmp_path / "plugins"
    folder.mkdir(exist_ok=True)
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return PluginHost().load(local_modules=list(modules), project_dir=folder)


def test_drift_detectors_are_collected_and_checked(tmp_path):
    found = _host(tmp_path, {"det_always": DETECTORS}).contributions
    assert found.drift_detectors["always"].default_threshold == 0.5
    assert found.provider["drift detector:always"] == "det_always"
    twice = _host(tmp_path, {"det_always": DETECTORS,
                             "det_again": DETECTORS.replace("_always", "_again")})
    with pytest.raises(conveyor.PluginError, match="drift detector 'always' is registered twice"):
        twice.contributions  # noqa: B018
    wrong = _host(tmp_path, {"det_wrong": DETECTORS.replace(
        'frozenset({"numeric"})', 'frozenset({"text"})')})
    with pytest.raises(conveyor.PluginError, match="expected 'numeric' and/or 'categorical'"):
        wrong.contributions  # noqa: B018
    bad = _host(tmp_path, {"det_bad": DETECTORS.replace(
        'register(conveyor.DriftDetector("always", frozenset({"numeric"}), _always, 0.5))',
        'register("always")')})
    with pytest.raises(conveyor.PluginError, match=r"expected a conveyor\.DriftDetector"):
        bad.contributions  # noqa: B018


@each_store
def test_load_output_reads_a_stored_stage_output(tmp_path, cli):
    project = local_project(tmp_path / "p")
    result = cli("run", cwd=project.path)
    assert result.returncode == 0, result.stderr
    run_id = project.runs()[0]["id"]
    assert api.load_output(project.path, run_id, "value") == {"n": 1}
    assert api.load_output(project.path, run_id, "result", stage="second") == {"n": 2}
    with pytest.raises(conveyor.UsageError, match="no stored output 'model'") as error:
        api.load_output(project.path, run_id, "model")
    assert "first.value" in str(error.value)
