"""Retraining on a shared store: one decision at a time per model across machines, and a
decision killed on one machine shows "interrupted" on another, on both backends.

Processes stand for machines (`CONVEYOR_HOST_NAME=a|b`); PostgreSQL is a real server started
by the `postgres_url` fixture.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conveyor.store import Registry, open_store
from conveyor.testing import conveyor_executable
from conveyor_retrain.records import RetrainDecisions

RETAIL = Path(__file__).resolve().parents[1] / "projects" / "retail"
ROWS = 1500

# On "host b": start a decision under the model's lock, as `conveyor retrain` does, and hang.
DECIDER = """
import sys, time
from pathlib import Path
from conveyor.store import open_store
from conveyor_retrain.locks import decision_lock
from conveyor_retrain.records import RetrainDecisions

project = Path(sys.argv[1])
with decision_lock(project, "churn", log=print):
    decisions = RetrainDecisions(open_store(project))
    print("started", decisions.start(model_name="churn", trigger=None, batches=[]), flush=True)
    time.sleep(600)
"""


def env_for(host: str, url: str | None, artifacts: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "CONVEYOR_HOST_NAME": host, "COLUMNS": "200"}
    for name in ("CONVEYOR_STORE_URL", "CONVEYOR_STORE_ARTIFACTS"):
        env.pop(name, None)
    if url:
        env["CONVEYOR_STORE_URL"] = url
    if artifacts:
        env["CONVEYOR_STORE_ARTIFACTS"] = str(artifacts)
    return env


def outcomes(store) -> list[str]:
    return [d.outcome for d in RetrainDecisions(store).list(model_name="churn")]


def test_a_decision_killed_on_one_host_shows_interrupted_on_another(tmp_path, store_url,
                                                                      monkeypatch):
    monkeypatch.setenv("CONVEYOR_HOST_NAME", "a")
    store = open_store(tmp_path, url=store_url)
    try:
        RetrainDecisions(store)  # the table, before the other process races for it
        decider = subprocess.Popen([sys.executable, "-c", DECIDER, str(tmp_path)], text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=env_for("b", store_url))
        try:
            line = decider.stdout.readline()
            assert line.startswith("started"), decider.stderr.read()
            # alive on host b (its process id means nothing here): still running
            assert outcomes(store) == ["running"]
            decider.send_signal(signal.SIGKILL)
            decider.wait(timeout=30)
        finally:
            if decider.poll() is None:
                decider.kill()
            decider.wait(timeout=30)
        deadline = time.monotonic() + 30  # the server notices the dead connection at once
        while outcomes(store) != ["interrupted"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert outcomes(store) == ["interrupted"]
        decision = RetrainDecisions(store).list()[0]
        assert RetrainDecisions(store).get(decision.id).outcome == "interrupted"
    finally:
        store.close()


def conveyor(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([conveyor_executable(), *args], cwd=cwd, text=True,
                          capture_output=True, timeout=600, env=env)


@pytest.mark.slow
def test_two_hosts_retraining_at_once_train_one_challenger_per_trigger(
        tmp_path, postgres_url, retail_data):
    project = tmp_path / "retail"
    project.mkdir()
    shutil.copy(RETAIL / "schema.yaml", project / "schema.yaml")
    config = (RETAIL / "conveyor.yaml").read_text()
    (project / "conveyor.yaml").write_text(config.replace("min_rows: 2000", "min_rows: 1000"))
    retail_data.write_csv(retail_data.generate_weeks(range(4), ROWS),
                          project / "data" / "purchases.csv")
    # Two machines: each its own checkout of the project (its own `.conveyor/`), one database
    # and one artifact store (a shared folder stands for object storage here).
    shared = tmp_path / "artifacts"
    env_a, env_b = env_for("a", postgres_url, shared), env_for("b", postgres_url, shared)
    done = conveyor("run", cwd=project, env=env_a)
    assert done.returncode == 0, done.stderr
    retail_data.write_csv(retail_data.generate_week(9, ROWS), project / "week-09.csv")
    done = conveyor("monitor", "--data", "week-09.csv", cwd=project, env=env_a)
    assert done.returncode in (0, 1), done.stderr  # 1: drift found, which triggers a retrain
    project_b = tmp_path / "retail-on-b"
    shutil.copytree(project, project_b, ignore=shutil.ignore_patterns(".conveyor"))
    # The same batch prompts a retrain on two machines at once.
    racers = [subprocess.Popen([conveyor_executable(), "retrain"], cwd=cwd, env=env,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for cwd, env in ((project, env_a), (project_b, env_b))]
    try:
        results = [racer.communicate(timeout=600) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
            racer.wait(timeout=30)
    output = "\n".join(out + err for out, err in results)
    assert "waiting for another process to finish its retraining decision for 'retail'" in output
    store = open_store(project, url=postgres_url)
    try:
        decisions = RetrainDecisions(store).list(model_name="retail")
        versions = Registry(store).versions("retail")
    finally:
        store.close()
    assert sorted(d.outcome in ("kept", "promoted") for d in decisions) == [False, True], \
        [(d.outcome, d.reasons) for d in decisions]
    assert any(reason.startswith("cooldown") for d in decisions for reason in d.reasons), output
    assert len(versions) == 2  # v1 and one challenger: not one per machine
