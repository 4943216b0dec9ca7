"""Store transactions: reads and nested writes inside `Store.write`, and what a store that
fails to open leaves behind (conveyor.store.db), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from conveyor.errors import ConfigError
from conveyor.store import open_store
from conveyor.store.db import Store


def _keys(store):
    return [r["key"] for r in store.query("SELECT key FROM meta WHERE key LIKE 'fix-%' "
                                          "ORDER BY key")]


def test_a_read_inside_a_write_keeps_the_transactions_earlier_writes(store_url, tmp_path):
    store = open_store(tmp_path, url=store_url)
    try:
        with store.write() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('fix-a', '1')")
            assert _keys(store) == ["fix-a"]  # the transaction's own write is seen
            conn.execute("INSERT INTO meta (key, value) VALUES ('fix-b', '2')")
        assert _keys(store) == ["fix-a", "fix-b"]
        with store.write(lock="outer") as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('fix-c', '3')")
            with store.write(lock="inner") as inner:
                inner.execute("INSERT INTO meta (key, value) VALUES ('fix-d', '4')")
            conn.execute("INSERT INTO meta (key, value) VALUES ('fix-e', '5')")
        assert _keys(store) == ["fix-a", "fix-b", "fix-c", "fix-d", "fix-e"]
        with pytest.raises(RuntimeError), store.write() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('fix-f', '6')")
            with store.write() as inner:
                inner.execute("INSERT INTO meta (key, value) VALUES ('fix-g', '7')")
            raise RuntimeError("the outer transaction fails")
        assert _keys(store) == ["fix-a", "fix-b", "fix-c", "fix-d", "fix-e"]  # all rolled back
    finally:
        store.close()


def test_a_rejected_store_artifacts_leaves_no_engine_open(tmp_path, monkeypatch):
    disposed = []
    make = Store._engine

    def spied(self):
        engine = make(self)
        dispose = engine.dispose
        engine.dispose = lambda *a, **k: (disposed.append(True), dispose(*a, **k))
        return engine

    monkeypatch.setattr(Store, "_engine", spied)
    with pytest.raises(ConfigError, match=r"store\.artifacts|protocol"):
        open_store(tmp_path, artifacts="nosuchprotocol://bucket/prefix")
    assert disposed == [True]
