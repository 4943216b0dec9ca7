"""conveyor-retrain against the real console script: `watch` and `retrain` on a small copy of the
retail project (weeks of synthetic purchases whose behaviour shifts from week 5)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conveyor.store import Registry, open_store
from conveyor.testing import conveyor_executable, copy_project, each_store, prepared_once
from conveyor_monitor.records import Monitoring
from conveyor_retrain.records import RetrainDecisions

RETAIL = Path(__file__).resolve().parents[1] / "projects" / "retail"
ROWS = 1500  # per week: enough for the policy's min_rows with two weeks, quick to train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, retail_data) -> Path:
    """The retail project on 4 x ROWS rows of history, trained once for the session's workers
    (v1 is champion), on SQLite (`copy_project` loads it into a test's PostgreSQL database)."""
    return prepared_once(tmp_path_factory, "retrain-retail",
                         lambda folder: _train(folder / "retail", retail_data)) / "retail"


def _train(root: Path, retail_data) -> None:
    root.mkdir()
    shutil.copy(RETAIL / "schema.yaml", root / "schema.yaml")
    # a smaller world than the demo's: one week's batch is enough to train a challenger on
    config = (RETAIL / "conveyor.yaml").read_text()
    (root / "conveyor.yaml").write_text(config.replace("min_rows: 2000", "min_rows: 1000"))
    retail_data.write_csv(retail_data.generate_weeks(range(4), ROWS), root / "data" / "purchases.csv")
    done = conveyor("run", cwd=root)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def project(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "retail"
    copy_project(trained, copy)
    (copy / "inbox").mkdir()
    return copy


def conveyor(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([conveyor_executable(), *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})


def drop(retail_data, project: Path, week: int, name: str | None = None, **changes) -> Path:
    frame = retail_data.generate_week(week, ROWS)
    for column, value in changes.items():
        frame.loc[: 9, column] = value
    path = project / "inbox" / (name or f"week-{week:02d}.csv")
    retail_data.write_csv(frame, path)
    return path


def without_column(path: Path, name: str) -> None:
    import pandas as pd

    pd.read_csv(path).drop(columns=[name]).to_csv(path, index=False)


def watch_once(project: Path) -> list[dict]:
    done = conveyor("watch", "--inbox", "inbox", "--once", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def champion(project: Path) -> int:
    store = open_store(project)
    try:
        return Registry(store).aliases("retail")["champion"]
    finally:
        store.close()


def decisions(project: Path) -> list:
    store = open_store(project)
    try:
        return RetrainDecisions(store).list()
    finally:
        store.close()


def test_watch_retrains_after_the_shift_and_processes_each_file_once(project, retail_data):
    drop(retail_data, project, 4)                               # the training distribution
    bad = drop(retail_data, project, 6, name="week-05-bad.csv")
    without_column(bad, "age")                                  # cannot be scored: invalid
    drop(retail_data, project, 9)                               # the new behaviour
    done = conveyor("watch", "--inbox", "inbox", "--once", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    handled = json.loads(done.stdout)
    # alerts went out through conveyor_alert (conveyor-monitor's log delivery, on stderr)
    for kind in ("drift", "retrain_decision", "promotion"):
        assert f"alert [{kind}," in done.stderr, done.stderr
    assert [h["file"] for h in handled] == ["inbox/week-04.csv", "inbox/week-05-bad.csv",
                                            "inbox/week-09.csv"]
    assert handled[0]["status"] == "ok" and handled[0]["outcome"] == "no_action"  # no false alarm
    assert handled[1]["status"] == "invalid"                   # reported, not used, loop goes on
    assert handled[2]["status"] == "drift" and handled[2]["outcome"] == "promoted"
    assert champion(project) == 2
    promoted = decisions(project)[-1]
    assert promoted.challenger_version == 2 and promoted.champion_version == 1
    assert promoted.metrics["challenger"]["accuracy"] > promoted.metrics["champion"]["accuracy"]
    assert "inbox/week-05-bad.csv" not in promoted.details["window"]
    history = conveyor("models", "history", "retail", "--json", cwd=project)
    moves = json.loads(history.stdout)
    assert moves[-1]["action"] == "retrain" and moves[-1]["actor"] == "conveyor-retrain"
    # Again: nothing new in the inbox, nothing processed twice; a new file is.
    assert watch_once(project) == []
    drop(retail_data, project, 10)
    assert [h["file"] for h in watch_once(project)] == ["inbox/week-10.csv"]
    listing = conveyor("retrain", "--list", "--json", cwd=project)
    assert [d["outcome"] for d in json.loads(listing.stdout)][-1] in ("no_action", "kept")


@each_store  # SQLite, then a fresh PostgreSQL database
def test_a_retrain_decision_records_the_paired_difference_and_lists_it(project, retail_data):
    drop(retail_data, project, 9)
    assert watch_once(project)[0]["outcome"] == "promoted"
    promoted = decisions(project)[-1]
    comparison = promoted.metrics["comparison"]
    assert comparison["champion_version"] == 1 and comparison["rows"] > 0
    interval = comparison["intervals"]["accuracy"]
    assert interval["low"] <= interval["diff"] <= interval["high"]
    assert interval["diff"] == pytest.approx(
        promoted.metrics["challenger"]["accuracy"] - promoted.metrics["champion"]["accuracy"])
    listing = conveyor("retrain", "--list", cwd=project)
    assert "95% CI" in listing.stdout and "hold-out rows it never trained on" in listing.stdout
    history = conveyor("models", "history", "retail", cwd=project).stdout
    assert f"vs v1 on {comparison['rows']:,} rows: accuracy Δ +" in history


def test_a_champion_that_cannot_be_loaded_keeps_the_challenger_out(project, retail_data):
    from conveyor.store import ArtifactRef

    drop(retail_data, project, 9)
    watch_once(project)  # promoted: v2 is champion
    store = open_store(project)
    ref = ArtifactRef.from_dict(Registry(store).alias("retail").artifact)
    path = store.artifacts.path(ref)
    store.close()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    done = conveyor("retrain", "--force", cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    last = decisions(project)[-1]
    assert last.outcome == "kept" and "cannot be loaded" in last.reasons[-1]
    assert "fails closed" in last.reasons[-1] and champion(project) == 2


def test_a_challenger_that_fails_its_gate_is_kept_with_the_reason(project, retail_data):
    drop(retail_data, project, 9)
    assert watch_once(project)[0]["status"] == "drift"
    before = champion(project)
    config = project / "conveyor.yaml"
    config.write_text(config.read_text().replace('roc_auc: ">= 0.70"', 'roc_auc: ">= 0.99"'))
    done = conveyor("retrain", "--force", cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    last = decisions(project)[-1]
    assert last.outcome == "kept" and "failed its gate" in last.reasons[-1]
    assert "roc_auc" in last.reasons[-1] and champion(project) == before
    # the decision keeps the gate's paired comparison with the champion
    assert last.metrics["comparison"]["intervals"]["accuracy"]["level"] == 0.95
    store = open_store(project)
    try:
        assert Registry(store).aliases("retail")["challenger"] == last.challenger_version
    finally:
        store.close()


def test_new_training_data_failing_validation_blocks_retraining(project, retail_data):
    drop(retail_data, project, 9)
    watch_once(project)
    schema = project / "schema.yaml"
    schema.write_text(schema.read_text().replace("le: 100000.0", "le: 50.0"))  # prices too dear
    done = conveyor("retrain", "--force", cwd=project)
    assert done.returncode == 1
    last = decisions(project)[-1]
    assert last.outcome == "blocked", last
    assert "price" in last.reasons[-1] or "validat" in last.reasons[-1]


def test_no_action_without_batches_and_a_bad_policy_is_a_config_error(project):
    done = conveyor("retrain", cwd=project)
    assert done.returncode == 1 and "no_action" in done.stdout
    config = project / "conveyor.yaml"
    config.write_text(config.read_text().replace("drift.share:", "drift.shares:"))
    bad = conveyor("retrain", cwd=project)
    assert bad.returncode == 2 and "retrain.when.drift.shares" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_watch_killed_mid_retrain_promotes_nothing_by_half_and_resumes(project, retail_data):
    drop(retail_data, project, 9)
    watcher = subprocess.Popen([conveyor_executable(), "watch", "--inbox", "inbox", "--once"],
                               cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    window = project / "data" / "windows"
    deadline = time.time() + 300
    while time.time() < deadline and not (window.is_dir() and any(window.glob("*.csv"))):
        assert watcher.poll() is None, watcher.stdout.read()
        time.sleep(0.05)
    os.killpg(watcher.pid, signal.SIGKILL)  # the challenger is training now
    watcher.wait()
    assert champion(project) in (1, 2)       # one or the other, never something in between
    assert decisions(project)[-1].outcome in ("interrupted", "promoted")
    state = json.loads((project / ".conveyor" / "watch" / "state.json").read_text())
    assert [f["status"] for f in state["files"].values()] == ["started"]
    resumed = conveyor("watch", "--inbox", "inbox", "--once", cwd=project)
    assert resumed.returncode == 0, resumed.stderr
    assert "monitored before the restart" in resumed.stdout
    store = open_store(project)
    try:
        assert len(Monitoring(store).batches()) == 1  # the batch was not monitored twice
    finally:
        store.close()
    # Either the killed process had already moved the champion (then the restart sees that
    # retrain as done) or the restart retrained and promoted: a retrained champion either way.
    assert champion(project) >= 2
    last = decisions(project)[-1]
    assert last.outcome in ("promoted", "no_action"), last
    assert watch_once(project) == []


@each_store  # SQLite, then a fresh PostgreSQL database
def test_a_retrain_killed_after_it_promoted_counts_as_done(project, retail_data):
    drop(retail_data, project, 9)
    done = conveyor("monitor", "--data", "inbox/week-09.csv", cwd=project)
    assert done.returncode in (0, 1), done.stderr
    store = open_store(project)
    try:
        # what a process killed between moving the champion and recording the outcome leaves
        decision = RetrainDecisions(store).start(model_name="retail", trigger=None, batches=[])
        with store.write() as conn:
            conn.execute("UPDATE retrain_decisions SET pid=? WHERE id=?", (2**22 + 7, decision))
        Registry(store).set_alias("retail", "champion", 1, action="retrain",
                                  actor="conveyor-retrain",
                                  reason=f"retrain decision {decision}: challenger v1 beat v1")
    finally:
        store.close()
    assert decisions(project)[-1].outcome == "interrupted"
    again = conveyor("retrain", cwd=project)
    assert again.returncode == 1 and "no_action" in again.stdout, again.stdout
    assert "since the last retrain" in again.stdout


@pytest.mark.slow
@pytest.mark.parametrize("watchers", [2, 4])
def test_watchers_on_one_inbox_process_each_batch_once(project, retail_data, watchers):
    """Issue 14.7: two (or four) `watch` processes on one inbox monitored the same batch twice
    and trained two challengers, bypassing the cooldown."""
    drop(retail_data, project, 4)
    drop(retail_data, project, 9)                  # triggers a retrain
    drop(retail_data, project, 10)                 # inside the cooldown: no second challenger
    procs = [subprocess.Popen([conveyor_executable(), "watch", "--inbox", "inbox", "--once",
                               "--json"], cwd=project, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"})
             for _ in range(watchers)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    handled = [h for out, _ in outputs for h in json.loads(out)]
    assert sorted(h["file"] for h in handled) == ["inbox/week-04.csv", "inbox/week-09.csv",
                                                  "inbox/week-10.csv"]
    store = open_store(project)
    try:
        assert len(Monitoring(store).batches()) == 3
        made = RetrainDecisions(store).list()
        assert len(made) == 3 and sum(d.acted for d in made) == 1, [d.outcome for d in made]
        assert len(Registry(store).versions("retail")) == 2
    finally:
        store.close()
    # a retrain by hand waits for the watcher's decision rather than racing it; none runs now
    assert conveyor("retrain", cwd=project).returncode == 1


def test_an_error_comparing_the_challenger_blocks_the_decision_with_the_reason(
        project, retail_data, monkeypatch):
    from conveyor import Session
    from conveyor_retrain import retrain

    drop(retail_data, project, 9)
    watch_once(project)

    def broken(*args, **kwargs):
        raise RuntimeError("the challenger's scorer exploded")

    monkeypatch.setattr(retrain, "compare", broken)
    with Session(project) as session:
        decision = retrain.apply(session, force=True, log=lambda m: None)
    assert decision.outcome == "blocked"  # not left "running"
    assert "could not be compared" in decision.reasons[-1]
    assert "RuntimeError: the challenger's scorer exploded" in decision.reasons[-1]
    assert decisions(project)[-1].outcome == "blocked"
