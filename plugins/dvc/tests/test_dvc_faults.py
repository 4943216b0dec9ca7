"""Faults at run time: data changing under a run, two runs at once, DVC's lock held elsewhere,
a hard-linked data file edited in place."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from _dvc_support import (
    cache_object,
    data_inputs,
    dvc_md5,
    md5,
    runs_in_store,
    stages,
)
from conveyor.testing import Project, assert_clear_error, conveyor_executable, each_store


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode} early: {process.communicate()}")
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def edit_config(project: Project, **sections) -> None:
    config = yaml.safe_load((project.path / "conveyor.yaml").read_text())
    for key, value in sections.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    (project.path / "conveyor.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@each_store
def test_a_data_file_modified_while_a_stage_reads_it_fails_the_run(dvc_project):
    project = dvc_project()
    a = project.path / "data" / "a.txt"
    recorded = md5(a)
    (project.path / "HOLD").write_text("")
    process = subprocess.Popen([conveyor_executable(), "run"], cwd=project.path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(project.path / "reading", process)  # stage 'first' is running, before its read
    a.write_text("100\n200\n")
    (project.path / "HOLD").unlink()
    stdout, stderr = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert_clear_error(result, 1, "data file data/a.txt changed while stage 'first' read it",
                 f"md5:{recorded[:12]}", f"md5:{md5(a)[:12]}", "run again")
    failed = runs_in_store(project)[-1]
    assert failed["status"] == "failed"
    assert stages(project, failed["id"])["first"]["status"] == "failed"
    # The next run reads and records the version it actually reads.
    project.run(check=True)
    latest = project.runs()[0]
    assert data_inputs(project, latest["id"])["data/a.txt"] == f"md5:{md5(a)}"
    assert project.show(latest["id"])["metrics"]["first_sum"] == 300


MEDDLER = '''
import conveyor


@conveyor.hookimpl
def conveyor_before_run(run, config):
    # Called before the DVC plugin's (local plugins come last, so pluggy calls them first):
    # the data file changes after the run recorded its version, before DVC versions it.
    if (run.project_dir / "MEDDLE").exists():
        with open(run.project_dir / "data" / "a.txt", "a") as handle:
            handle.write("4\\n")
'''


def test_a_data_file_modified_before_dvc_versions_it_fails_the_run(dvc_project):
    project = dvc_project()
    (project.path / "meddler.py").write_text(textwrap.dedent(MEDDLER))
    edit_config(project, plugins={"local": ["lightstages", "meddler"]})
    (project.path / "MEDDLE").write_text("")
    recorded = md5(project.path / "data" / "a.txt")
    assert_clear_error(project.run(), 1, "data file data/a.txt changed while the run was starting",
                 f"md5:{recorded[:12]}", "plugin 'dvc'", "run again")
    assert runs_in_store(project)[-1]["status"] == "failed"
    (project.path / "MEDDLE").unlink()
    project.run(check=True)
    assert dvc_md5(project.path / "data" / "a.txt") == md5(project.path / "data" / "a.txt")


def dvc_status(project: Project) -> dict:
    from dvc.repo import Repo

    repo = Repo(str(project.path))
    try:
        return repo.status()
    finally:
        repo.close()


@each_store
def test_two_runs_at_once_share_dvcs_lock_and_both_are_recorded(dvc_project):
    project = dvc_project()
    project.run(check=True)
    a = project.path / "data" / "a.txt"
    a.write_text("".join(f"{i}\n" for i in range(5000)))  # a new version both must version
    processes = [subprocess.Popen([conveyor_executable(), "run", f"+pipeline.total.tag={n}"],
                                  cwd=project.path, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for n in range(2)]
    outcomes = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    for code, stdout, stderr in outcomes:
        assert code == 0, stdout + stderr
        assert "Traceback" not in stderr
    runs = runs_in_store(project)
    assert [r["status"] for r in runs] == ["completed"] * 3
    for run in runs[1:]:
        assert data_inputs(project, run["id"])["data/a.txt"] == f"md5:{md5(a)}"
    assert dvc_md5(a) == md5(a)
    assert md5(cache_object(project, md5(a))) == md5(a)
    assert dvc_status(project) == {}


LOCK_HOLDER = """
import sys, time
from dvc.repo import Repo

repo = Repo(sys.argv[1])
repo.lock.lock()
open(sys.argv[2], "w").close()
time.sleep(float(sys.argv[3]))
repo.lock.unlock()
"""


def hold_dvc_lock(project: Project, seconds: float) -> subprocess.Popen:
    marker = project.path / "locked"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(project.path),
                               str(marker), str(seconds)])
    wait_for(marker, holder)
    return holder


@pytest.mark.slow
def test_a_run_waits_for_dvcs_lock_held_by_another_process(dvc_project):
    project = dvc_project()
    project.run(check=True)
    (project.path / "data" / "a.txt").write_text("4\n5\n")
    holder = hold_dvc_lock(project, 5)
    started = time.monotonic()
    result = project.run()
    waited = time.monotonic() - started
    holder.wait(timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "waiting for DVC's lock" in result.stderr
    assert waited >= 3
    assert dvc_md5(project.path / "data" / "a.txt") == md5(project.path / "data" / "a.txt")


def test_a_run_gives_up_on_dvcs_lock_after_lock_timeout(dvc_project):
    project = dvc_project()
    edit_config(project, dvc={"lock_timeout": 1})
    holder = hold_dvc_lock(project, 6)
    try:
        assert_clear_error(project.run(), 1, "could not version data/a.txt", "DVC's lock",
                     "stayed taken", "dvc.lock_timeout: 1s", ".dvc/tmp/lock")
    finally:
        holder.wait(timeout=30)
    assert runs_in_store(project)[-1]["status"] == "failed"


def test_a_hardlinked_file_edited_in_place_loses_only_the_cached_copy_and_says_so(dvc_project):
    project = dvc_project()
    edit_config(project, dvc={"link_min_mb": 0})  # link every file, as large ones are
    a = project.path / "data" / "a.txt"
    project.run(check=True)
    first = project.runs()[0]["id"]
    old = md5(a)
    assert a.stat().st_nlink == 2  # hard-linked to the cache...
    assert not a.stat().st_mode & 0o222  # ...and read-only, as DVC protects it
    project.cli("data", "push", check=True)
    os.chmod(a, 0o644)  # what root does without asking
    with open(a, "r+") as handle:  # in place: the cache's copy is the same inode
        handle.write("9")
    result = project.run()
    assert result.returncode == 0, result.stderr
    assert "data/a.txt was edited in place while hard-linked to DVC's cache" in result.stderr
    assert not cache_object(project, old).exists()  # it held the wrong content: removed
    assert md5(cache_object(project, md5(a))) == md5(a)
    reproduced = project.cli("reproduce", first)  # the pushed copy is still good
    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr
    assert "from remote 'local'" in reproduced.stdout
    assert "5 metric(s) identical" in reproduced.stdout
