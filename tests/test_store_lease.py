"""The lease of a running run (conveyor.store.heartbeat, Store.heartbeat/mark_interrupted):
stamped and judged by the database's clock, with the lease the run itself asked for, and never
overruling a beat that lands while a reader looks; on SQLite and PostgreSQL."""

from __future__ import annotations

import time

from conveyor.store import Runs, open_store
from conveyor.store.location import HEARTBEAT_ENV


def _open_run(store, run_id):
    Runs(store).open(run_id, project="p", command="run", invocation=None, overrides=[],
                     config={}, config_hash=None, git_commit=None, git_dirty=None, packages={},
                     params={}, data=[])


def _status(store, run_id):
    return store.query("SELECT status FROM runs WHERE id=?", (run_id,))[0]["status"]


def _machines(store_url, tmp_path, monkeypatch, runner_beat, reader_beat):
    """A runner's store on "machine-a" and a reader's on this host, each with its own
    store.heartbeat_seconds."""
    monkeypatch.setenv("CONVEYOR_HOST_NAME", "machine-a")
    monkeypatch.setenv(HEARTBEAT_ENV, str(runner_beat))
    runner = open_store(tmp_path / "a", url=store_url)
    _open_run(runner, "r1")
    monkeypatch.setenv("CONVEYOR_HOST_NAME", "machine-b")
    monkeypatch.setenv(HEARTBEAT_ENV, str(reader_beat))
    reader = open_store(tmp_path / "a" if store_url is None else tmp_path / "b", url=store_url)
    return runner, reader


def test_a_reader_with_a_shorter_heartbeat_or_a_skewed_clock_keeps_a_live_run(
        store_url, tmp_path, monkeypatch):
    runner, reader = _machines(store_url, tmp_path, monkeypatch, runner_beat=60,
                               reader_beat=0.01)
    try:
        time.sleep(0.2)  # far beyond the reader's 3 x 0.01 s, well inside the run's 3 x 60 s
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 3600)  # the reader's clock is off
        reader.mark_interrupted()
        assert _status(reader, "r1") == "running"
        monkeypatch.setattr(time, "time", real)
        runner.heartbeat("r1", lease_seconds=0.05)  # a lease that ends now
        time.sleep(0.2)
        reader.mark_interrupted()
        assert _status(reader, "r1") == "interrupted"
    finally:
        runner.close()
        reader.close()


def test_a_beat_landing_while_a_reader_looks_keeps_its_run_running(store_url, tmp_path,
                                                                    monkeypatch):
    runner, reader = _machines(store_url, tmp_path, monkeypatch, runner_beat=0.01,
                               reader_beat=0.01)
    try:
        time.sleep(0.2)  # the lease (3 x 0.01 s) has ended...
        look = reader.query

        def look_then_beat(sql, params=()):
            rows = look(sql, params)
            if "AS ended" in sql:
                runner.heartbeat("r1", lease_seconds=60)  # ...and is renewed right after the look
            return rows

        monkeypatch.setattr(reader, "query", look_then_beat)
        reader.mark_interrupted()
        assert _status(runner, "r1") == "running"
    finally:
        runner.close()
        reader.close()
