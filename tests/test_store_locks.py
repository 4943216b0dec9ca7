"""`Store.lock`: a named lock held across a long operation, by real processes on both backends.

Two processes stand for two machines (`CONVEYOR_HOST_NAME=a|b`); on PostgreSQL they share a
real server started by the `postgres_url` fixture, on SQLite the project's folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conveyor.errors import StoreError
from conveyor.store import LockBusy, open_store

# Holds `name` of the store in the project `argv[1]` for `argv[3]` seconds, saying when.
HOLDER = """
import sys, time
from pathlib import Path
from conveyor.store import open_store

project, name, seconds = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
store = open_store(project)
with store.lock(name, log=lambda line: print(line, flush=True), description="the test's work"):
    print(f"acquired {time.time()}", flush=True)
    time.sleep(seconds)
    print(f"released {time.time()}", flush=True)
"""


def holder(project: Path, url: str | None, host: str, name: str,
           seconds: float) -> subprocess.Popen:
    env = {**os.environ, "CONVEYOR_HOST_NAME": host}
    env.pop("CONVEYOR_STORE_URL", None)
    if url:
        env["CONVEYOR_STORE_URL"] = url
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(project), name, str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_line(process: subprocess.Popen, start: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(start):
            return line
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"no '{start}' line; stderr: {process.stderr.read()}")


def stopped(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def test_two_hosts_take_a_named_lock_in_turn(tmp_path, store_url):
    open_store(tmp_path, url=store_url).close()  # the schema, before two processes race for it
    first = holder(tmp_path, store_url, "a", "retrain:churn", 1.5)
    try:
        acquired_a = float(wait_for_line(first, "acquired").split()[1])
        second = holder(tmp_path, store_url, "b", "retrain:churn", 0)
        try:
            out_b, err_b = second.communicate(timeout=60)
            out_a, _ = first.communicate(timeout=60)
        finally:
            stopped(second)
    finally:
        stopped(first)
    assert second.returncode == 0, err_b
    released_a = float(out_a.split("released")[1].split()[0])
    lines_b = out_b.splitlines()
    # b said once that it waits, then had the lock only after a let go
    assert lines_b[0] == "waiting for another process to finish the test's work", out_b
    acquired_b = float(lines_b[1].split()[1])
    assert acquired_a < released_a <= acquired_b


def test_a_lock_dies_with_its_holder_and_is_not_taken_twice(tmp_path, store_url):
    store = open_store(tmp_path, url=store_url)
    try:
        assert not store.lock_held("watch:inbox")
        process = holder(tmp_path, store_url, "b", "watch:inbox", 600)
        try:
            wait_for_line(process, "acquired")
            assert store.lock_held("watch:inbox")
            assert not store.lock_held("watch:other")
            with pytest.raises(LockBusy, match="another process holds the lock 'watch:inbox'"), \
                    store.lock("watch:inbox", wait=False):
                pass
            process.send_signal(signal.SIGKILL)  # its machine goes down mid-operation
            process.wait(timeout=30)
        finally:
            stopped(process)
        deadline = time.monotonic() + 30  # the server notices the dead connection
        while store.lock_held("watch:inbox") and time.monotonic() < deadline:
            time.sleep(0.1)
        with store.lock("watch:inbox", wait=False):
            assert not store.lock_held("watch:inbox")  # this process's own hold does not count
            with pytest.raises(StoreError, match="already holds the lock"), \
                    store.lock("watch:inbox"):
                pass
        assert not store.lock_held("watch:inbox")
    finally:
        store.close()
