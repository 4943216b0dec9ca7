"""The UI reads monitored batches and retraining decisions from the plugins that record them
(`conveyor_monitor.records`, `conveyor_retrain.records`); without them installed the monitoring
page says there is nothing to show instead of failing."""

from __future__ import annotations

import sys

from conveyor.store import open_store
from conveyor.testing import each_store
from conveyor_ui import monitoring

# On each store backend: SQLite, then a fresh PostgreSQL database per test.
pytestmark = each_store


def test_the_monitoring_page_reads_the_monitor_plugins_records(tmp_path):
    from conveyor_monitor.records import Monitoring

    store = open_store(tmp_path)
    try:
        assert monitoring.page(store, {}) == {"available": False}
        Monitoring(store).record(model_name="churn", model_version=None, source="b.csv",
                                 source_sha256="ab", rows=10, status="ok", created_at=1.0)
        page = monitoring.page(store, {})
        assert page["available"] and page["models"] == ["churn"]
        assert [b["id"] for b in page["batches"]] and page["decisions"] == []
    finally:
        store.close()


def test_without_the_monitor_and_retrain_plugins_the_page_degrades(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "conveyor_monitor.records", None)  # import fails
    monkeypatch.setitem(sys.modules, "conveyor_retrain.records", None)
    store = open_store(tmp_path)
    try:
        assert monitoring.page(store, {"model": "churn"}) == {"available": False}
        assert monitoring.retraining_decisions(store, "churn") == []
    finally:
        store.close()
