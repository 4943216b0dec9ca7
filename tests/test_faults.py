"""Faults at run time: a stage or a hook raising, kill -9 mid-stage, two runs at once, a damaged
store. The run record must tell the truth, the store must stay usable, the next run must work."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _support import (
    artifact_files,
    assert_artifacts_whole,
    assert_run_failed,
    local_project,
    recorded_runs,
)
from conveyor.testing import (
    Project,
    conveyor_executable,
    current_store_backend,
    each_store,
    store_execute,
    store_rows,
)

# Every fault on each store backend (`each_store`: SQLite, then a fresh PostgreSQL database per
# test), but two full trainings at once, on SQLite only: many_concurrent_runs races four runs on
# PostgreSQL too, with stages that take no time.


def assert_store_intact(project: Project) -> None:
    """SQLite's own check of its file (PostgreSQL's write-ahead log keeps a killed client from
    damaging anything: there is no file of ours to check)."""
    if current_store_backend().backend == "sqlite":
        [row] = store_rows(project.path, "PRAGMA integrity_check")
        assert list(row.values()) == ["ok"]


def stage_rows(project: Project, run_id: str) -> dict[str, dict]:
    return {s["name"]: s for s in project.show(run_id)["stages"]}


@each_store
def test_failing_stage_is_recorded_and_the_fixed_run_resumes_from_the_cache(tmp_path):
    project = local_project(tmp_path / "p")
    (project.path / "BREAK").touch()
    failed = project.run()
    assert_run_failed(failed, "stage 'second'", "faults.flaky",
                      "ValueError: flaky stage broke on purpose")

    [run] = project.runs()
    assert run["status"] == "failed"
    shown = project.show(run["id"])
    assert "flaky stage broke on purpose" in shown["error"]
    stages = {s["name"]: s for s in shown["stages"]}
    assert stages["first"]["status"] == "completed"
    assert stages["second"]["status"] == "failed"
    assert "flaky stage broke on purpose" in stages["second"]["error"]
    assert stages["second"]["outputs"] == {}
    # Only the completed stage's output was stored.
    stored = [p.name for p in artifact_files(project)]
    assert stored == [f"{stages['first']['outputs']['value']['sha256']}.json"]
    assert "flaky stage broke on purpose" in project.cli("runs", "show", run["id"]).stdout

    (project.path / "BREAK").unlink()
    fixed = project.run()
    assert fixed.returncode == 0, fixed.stderr
    latest = project.runs()[0]
    assert latest["status"] == "completed"
    stages = stage_rows(project, latest["id"])
    assert stages["first"]["cached"] and stages["first"]["reason"] == f"unchanged since run {run['id']}"
    assert not stages["second"]["cached"]
    assert len(artifact_files(project)) == 2
    assert_artifacts_whole(project)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"conveyor exited {process.returncode} early\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} never appeared")
        time.sleep(0.05)


@each_store
def test_kill_9_during_a_stage_leaves_a_usable_store_and_no_completed_run(tmp_path):
    project = local_project(tmp_path / "p", pipeline={
        "first": {"uses": "faults.produce"},
        "second": {"uses": "faults.flaky", "needs": ["first"]},
        "slow": {"uses": "faults.slow", "needs": ["second"]}})
    (project.path / "SLOW").touch()
    started = project.path / "slow-stage-started"
    process = subprocess.Popen([conveyor_executable(), "run"], cwd=project.path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(started, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    killed_id = started.read_text()

    runs = project.runs()  # also notices the killed process is gone
    assert [(r["id"], r["status"]) for r in runs] == [(killed_id, "interrupted")]
    assert "killed" in project.show(killed_id)["error"]
    assert_artifacts_whole(project)
    assert_store_intact(project)
    assert store_rows(project.path, "SELECT * FROM stages WHERE run_id=:run AND name='slow' "
                      "AND status='completed'", run=killed_id) == []

    (project.path / "SLOW").unlink()
    again = project.run()
    assert again.returncode == 0, again.stderr
    runs = project.runs()
    assert [r["status"] for r in runs] == ["completed", "interrupted"]
    stages = stage_rows(project, runs[0]["id"])
    assert stages["first"]["cached"] and stages["second"]["cached"]  # done before the kill
    assert not stages["slow"]["cached"]
    assert_artifacts_whole(project)


@each_store
def test_sigterm_during_a_stage_records_the_run_as_interrupted_and_runs_cleanup(tmp_path):
    project = local_project(tmp_path / "p", pipeline={
        "first": {"uses": "faults.produce"},
        "slow": {"uses": "faults.slow", "needs": ["first"]}})
    (project.path / "SLOW").touch()
    started = project.path / "slow-stage-started"
    process = subprocess.Popen([conveyor_executable(), "run"], cwd=project.path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(started, process)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert [r["status"] for r in project.runs()] == ["interrupted"]
    assert (project.path / "after-run.marker").read_text() == "interrupted"
    assert_artifacts_whole(project)


@pytest.mark.slow
def test_two_runs_at_once_on_one_project(new_project):
    project = new_project()
    processes = [subprocess.Popen([conveyor_executable(), "run", f"model.params.max_depth={d}"],
                                  cwd=project.path, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"})
                 for d in (3, 4)]
    outputs = [(p, *p.communicate(timeout=300)) for p in processes]
    for process, out, err in outputs:
        assert process.returncode == 0, f"{out}\n{err}"
        assert "locked" not in (out + err).lower(), f"{out}\n{err}"
        assert "Traceback" not in err
    runs = project.runs()
    assert len(runs) == 2
    assert {r["status"] for r in runs} == {"completed"}
    for run in runs:
        assert run["stages"] == 6 and "problems" not in run
        assert {s["status"] for s in project.show(run["id"])["stages"]} == {"completed"}
    versions = project.cli("models", "list", "--json", check=True).stdout
    assert versions.count('"version"') == 2
    assert_artifacts_whole(project)


@each_store
def test_many_concurrent_runs_share_one_store_without_locking_errors(tmp_path):
    project = local_project(tmp_path / "p")
    processes = [subprocess.Popen([conveyor_executable(), "run", f"+pipeline.first.n={n}"],
                                  cwd=project.path, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for n in range(4)]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, f"{out}\n{err}"
        assert "locked" not in (out + err).lower()
    runs = recorded_runs(project)
    assert len(runs) == 4 and {r["status"] for r in runs} == {"completed"}


def corrupt_config(project: Project, run_id: str) -> None:
    store_execute(project.path, "UPDATE runs SET config='{not json' WHERE id=:run", run=run_id)


@each_store
def test_corrupt_run_row_is_flagged_by_runs_list(tmp_path):
    project = local_project(tmp_path / "p")
    project.run(check=True)
    project.run("--force", check=True)
    damaged, intact = [r["id"] for r in project.runs()]
    corrupt_config(project, damaged)

    listing = project.cli("runs", "list", "--json")
    assert listing.returncode == 0 and "Traceback" not in listing.stderr, listing.stderr
    runs = {r["id"]: r for r in project.runs()}
    assert any("unreadable" in p for p in runs[damaged]["problems"])
    assert "problems" not in runs[intact]
    table = project.cli("runs", "list")
    assert table.returncode == 0 and "Traceback" not in table.stderr, table.stderr
    assert "⚠" in table.stdout and "unreadable" in table.stdout
    shown = project.cli("runs", "show", damaged)
    assert shown.returncode == 0 and "config is unreadable" in shown.stdout, shown.stderr


@each_store
@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_artifact_is_flagged_and_the_next_run_repairs_it(tmp_path, damage):
    project = local_project(tmp_path / "p")
    project.run(check=True)
    [run] = project.runs()
    ref = stage_rows(project, run["id"])["first"]["outputs"]["value"]
    path = project.path / ".conveyor" / "artifacts" / ref["sha256"][:2] / f"{ref['sha256']}.json"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:3])
    else:
        path.unlink()

    for args in (["runs", "list"], ["runs", "list", "--json"]):
        listing = project.cli(*args)
        assert listing.returncode == 0 and "Traceback" not in listing.stderr, listing.stderr
        assert "artifact first.value missing or truncated" in listing.stdout

    rerun = project.run()
    assert rerun.returncode == 0, rerun.stderr
    assert "its cached outputs are missing" in rerun.stdout
    assert_artifacts_whole(project)
    latest, first = project.runs()
    assert "problems" not in latest and "problems" not in first  # the same content, whole again


@each_store
def test_hook_raising_fails_the_run_naming_the_plugin_and_cleanup_still_runs(tmp_path):
    project = local_project(tmp_path / "p", local=["faultstages", "badhook", "cleanup"], modules={
        "badhook": """
            import conveyor


            @conveyor.hookimpl
            def conveyor_before_stage(run, stage):
                raise RuntimeError("tracker is down")
        """})
    result = project.run()
    assert_run_failed(result, "'badhook'", "conveyor_before_stage", "tracker is down")
    assert (project.path / "after-run.marker").read_text() == "failed"
    [run] = project.runs()
    assert run["status"] == "failed"
    assert "'badhook'" in project.show(run["id"])["error"]


WRAPPER_MODULE = """
    import conveyor


    @conveyor.hookimpl(wrapper=True)
    def conveyor_run_stage(stage):
        outputs = yield
        if stage.name == "second":
            _publish(stage.name)
        return outputs


    def _publish(name):
        raise ConnectionError(f"tracking server unreachable while timing {name}")
"""


@each_store
def test_a_run_stage_wrapper_raising_fails_the_run_naming_the_plugin(tmp_path):
    project = local_project(tmp_path / "p", local=["faultstages", "timing", "cleanup"],
                            modules={"timing": WRAPPER_MODULE})
    result = project.run()
    assert_run_failed(result, "'timing'", "conveyor_run_stage wrapper", "stage 'second'",
                      "tracking server unreachable")
    assert (project.path / "after-run.marker").read_text() == "failed"
    [run] = project.runs()
    assert run["status"] == "failed" and "'timing'" in project.show(run["id"])["error"]


@each_store
def test_a_stage_raising_through_a_wrapper_is_the_stage_s_failure(tmp_path):
    project = local_project(tmp_path / "p", local=["faultstages", "timing", "cleanup"],
                            modules={"timing": WRAPPER_MODULE.replace('"second"', '"none"')})
    (project.path / "BREAK").write_text("")
    result = project.run()
    message = assert_run_failed(result, "stage 'second' (faults.flaky) failed",
                                "flaky stage broke on purpose")
    assert "timing" not in message


@each_store
def test_cleanup_hook_raising_does_not_stop_the_other_cleanup_hooks(tmp_path):
    project = local_project(tmp_path / "p", local=["faultstages", "cleanup", "badcleanup"],
                            modules={"badcleanup": """
        import conveyor


        @conveyor.hookimpl
        def conveyor_after_run(run, status):
            raise OSError("cannot upload the run")
    """})
    result = project.run()
    # Issue 14.8: the status is final when after-run hooks are called, so each is told the
    # truth; a raising one is a warning naming its plugin and changes neither status nor exit.
    assert result.returncode == 0, result.stderr
    assert "warning:" in result.stderr and "'badcleanup'" in result.stderr
    assert "conveyor_after_run" in result.stderr and "cannot upload the run" in result.stderr
    assert (project.path / "after-run.marker").read_text() == "completed"
    [run] = project.runs()
    assert run["status"] == "completed"


# A model and its evaluation without scikit-learn: what conveyor.register needs.
REGISTERING = {
    "train": {"uses": "faults.produce"},
    "model": {"uses": "fakemodel.fit", "needs": ["train"]},
    "register": {"uses": "conveyor.register", "needs": ["model"], "model_name": "m"},
}
FAKE_MODEL = """
    import conveyor


    def _fit(ctx):
        return {"model": {"weights": [1, 2, 3]}, "metrics": {"overall": {"score": 0.9}}}


    @conveyor.hookimpl
    def conveyor_stage_types(register):
        register(conveyor.StageType("fakemodel.fit", _fit))
"""
FINISH_FAILS = """
    import conveyor


    @conveyor.hookimpl
    def conveyor_finish_run(run):
        raise OSError("the upload the team relies on failed")
"""


def _champion(project: Project) -> int | None:
    from conveyor.store import Registry, open_store

    store = open_store(project.path)
    try:
        return Registry(store).aliases("m").get("champion")
    finally:
        store.close()


@each_store
def test_a_run_failed_by_a_finish_hook_promotes_nothing_and_hooks_hear_failed(tmp_path):
    """Issue 14.8: when a hook failed the run, its model had already been promoted and the
    other hooks were told "completed"."""
    project = local_project(tmp_path / "p", pipeline=REGISTERING,
                            local=["faultstages", "cleanup", "fakemodel", "finishfails"],
                            modules={"fakemodel": FAKE_MODEL, "finishfails": FINISH_FAILS})
    result = project.run()
    assert_run_failed(result, "'finishfails'", "conveyor_finish_run", "the upload")
    assert _champion(project) is None                       # registered, never promoted
    assert (project.path / "after-run.marker").read_text() == "failed"
    [run] = project.runs()
    assert run["status"] == "failed"
    (project.path / "finishfails.py").write_text("")        # the upload works again
    done = project.run()
    assert done.returncode == 0 and "promoted to champion" in done.stdout, done.stdout
    assert _champion(project) is not None


@each_store
def test_a_stage_failing_after_register_leaves_the_champion_as_it_was(tmp_path):
    pipeline = {**REGISTERING, "after": {"uses": "faults.flaky", "needs": ["register", "train"]}}
    project = local_project(tmp_path / "p", pipeline=pipeline,
                            local=["faultstages", "fakemodel"], modules={"fakemodel": FAKE_MODEL})
    (project.path / "BREAK").touch()
    assert_run_failed(project.run(), "stage 'after'", "flaky stage broke on purpose")
    assert _champion(project) is None
    (project.path / "BREAK").unlink()
    assert project.run().returncode == 0
    assert _champion(project) is not None


@each_store
def test_project_without_a_model_section_runs(tmp_path):
    # Regression: the sklearn plugin's schema made model._target_ mandatory for every project.
    project = local_project(tmp_path / "p", local=["faultstages"])
    result = project.run()
    assert result.returncode == 0, result.stderr
    assert project.runs()[0]["model"] == ""
    assert not (project.path / "after-run.marker").exists()  # cleanup.py is not listed


@each_store
def test_a_run_records_the_exit_code_its_command_exits_with(tmp_path):
    """Issue 14.9: `runs.exit_code` was shown by the UI and never written."""
    project = local_project(tmp_path / "p")
    (project.path / "BREAK").touch()
    assert project.run().returncode == 1
    (project.path / "BREAK").unlink()
    assert project.run().returncode == 0
    codes = [project.show(r["id"])["exit_code"] for r in reversed(project.runs())]
    assert codes == [1, 0]


@each_store
def test_run_ids_are_matched_as_text_not_as_like_patterns(tmp_path):
    """Issue 14.9: `runs show %` matched a run (an unescaped LIKE pattern)."""
    project = local_project(tmp_path / "p")
    project.run()
    for pattern in ("%", "_", "2%"):
        done = project.cli("runs", "show", pattern)
        assert done.returncode == 2 and f"no run with id '{pattern}'" in done.stderr


@each_store
def test_a_reader_that_goes_away_does_not_fail_the_run(tmp_path):
    """Issue 14.9: `conveyor run | head` recorded the run failed with BrokenPipeError."""
    project = local_project(tmp_path / "p")
    pipe = subprocess.Popen(f"'{conveyor_executable()}' run | head -c 1 >/dev/null",
                            shell=True, cwd=project.path)
    assert pipe.wait(timeout=300) == 0
    [run] = project.runs()
    assert run["status"] == "completed", project.show(run["id"]).get("error")


@each_store
@pytest.mark.slow
def test_kill_9_ten_times_at_random_moments_never_leaves_a_lie_or_a_broken_store(tmp_path):
    """The reliability probe's case: `kill -9` ten times at random moments of a registering
    run (import, planning, a stage, the writer, promotion). The store stays whole, no killed
    run is recorded completed, the champion is only ever a version that passed its gate, and
    the next run works."""
    import random

    from conveyor.store import Registry, open_store

    project = local_project(tmp_path / "p", pipeline=REGISTERING,
                            local=["faultstages", "fakemodel"], modules={"fakemodel": FAKE_MODEL})
    # The moments are spread over a whole run's life as long as it takes on this machine now
    # (a loaded CI worker starts Python slower: fixed delays would all fall before the start).
    started = time.monotonic()
    assert project.run("--force").returncode == 0
    lifetime = time.monotonic() - started
    chance = random.Random(14)
    for _ in range(10):
        process = subprocess.Popen([conveyor_executable(), "run", "--force"], cwd=project.path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(chance.uniform(0.05, 1.0) * lifetime)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    runs = project.runs()
    assert runs and {r["status"] for r in runs} <= {"completed", "interrupted"}
    assert_artifacts_whole(project)
    assert_store_intact(project)
    store = open_store(project.path)
    try:
        registry = Registry(store)
        champion = registry.aliases("m").get("champion")
        if champion is not None:
            assert registry.get("m", champion).decision == "passed"
    finally:
        store.close()
    assert project.run().returncode == 0
    assert project.runs()[0]["status"] == "completed"
