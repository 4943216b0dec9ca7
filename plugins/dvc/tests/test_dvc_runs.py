"""`conveyor init` makes a git + DVC repository; runs version their data with DVC and record
each input's DVC md5; cached runs read DVC's state, not the data, and do not import DVC."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from _dvc_support import cache_object, data_inputs, dvc_md5, git, md5, stages
from conveyor.testing import Project, conveyor_executable, each_store


def test_init_makes_a_git_and_dvc_repository_with_a_default_local_remote(dvc_project):
    project = dvc_project("classification")
    assert (project.path / ".git").is_dir() and (project.path / ".dvc").is_dir()
    config = (project.path / ".dvc" / "config").read_text()
    assert "remote = local" in config and "url = ../.conveyor/dvc-remote" in config
    tracked = git(project.path, "ls-files").split()
    assert "data/customers.csv.dvc" in tracked and "conveyor.yaml" in tracked
    assert "data/customers.csv" not in tracked  # the data itself is DVC's, not git's
    assert git(project.path, "log", "--oneline").count("\n") == 1
    assert git(project.path, "status", "--porcelain") == ""
    assert dvc_md5(project.path / "data" / "customers.csv") == \
        md5(project.path / "data" / "customers.csv")


def test_init_without_git_makes_a_dvc_repository_without_scm(tmp_path):
    result = subprocess.run([conveyor_executable(), "init", "nogit"], cwd=tmp_path, text=True,
                            capture_output=True, env={**os.environ, "PATH": str(tmp_path)},
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "git: not installed" in result.stdout
    project = tmp_path / "nogit"
    assert not (project / ".git").exists()
    assert "no_scm = True" in (project / ".dvc" / "config").read_text()
    run = subprocess.run([conveyor_executable(), "run", "--quiet"], cwd=project, text=True,
                         capture_output=True, env={**os.environ, "PATH": str(tmp_path)},
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert Project(project).runs()[0]["data"]["data/customers.csv"].startswith("md5:")


def test_init_inside_a_git_repository_adds_a_dvc_subdirectory_repository(tmp_path):
    git(tmp_path, "init", "-q")
    result = subprocess.run([conveyor_executable(), "init", "inner"], cwd=tmp_path, text=True,
                            capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"git: inside the repository at {tmp_path}" in result.stdout
    assert not (tmp_path / "inner" / ".git").exists()
    assert (tmp_path / "inner" / ".dvc").is_dir()
    assert (tmp_path / "inner" / "data" / "customers.csv.dvc").is_file()


@each_store
def test_a_run_versions_its_inputs_with_dvc_and_records_their_md5(dvc_project):
    project = dvc_project()
    a, b = project.path / "data" / "a.txt", project.path / "data" / "b.txt"
    assert dvc_md5(a) is None  # not versioned yet
    result = project.run()
    assert result.returncode == 0, result.stderr
    run_id = project.runs()[0]["id"]
    assert data_inputs(project, run_id) == {"data/a.txt": f"md5:{md5(a)}",
                                            "data/b.txt": f"md5:{md5(b)}"}
    for path in (a, b):
        assert dvc_md5(path) == md5(path)
        assert md5(cache_object(project, md5(path))) == md5(path)
    assert "/a.txt" in (project.path / "data" / ".gitignore").read_text()
    shown = project.cli("runs", "show", run_id, check=True).stdout
    assert f"data: data/a.txt  version md5:{md5(a)}" in shown


def test_a_changed_file_is_a_new_version_and_only_stages_downstream_rerun(dvc_project):
    project = dvc_project()
    project.run(check=True)
    first = project.runs()[0]["id"]
    b = project.path / "data" / "b.txt"
    old = md5(b)
    b.write_text("10\n20\n30\n")
    plan = json.loads(project.cli("plan", "--json", check=True).stdout)
    assert {row["stage"]: row["action"] for row in plan} == {
        "first": "skip", "second": "run", "total": "run"}
    assert next(r for r in plan if r["stage"] == "second")["reason"] == \
        "data file data/b.txt changed"
    project.run(check=True)
    second = project.runs()[0]["id"]
    ran = {name: not s["cached"] for name, s in stages(project, second).items()}
    assert ran == {"first": False, "second": True, "total": True}
    assert data_inputs(project, second)["data/b.txt"] == f"md5:{md5(b)}"
    assert data_inputs(project, second)["data/a.txt"] == data_inputs(project, first)["data/a.txt"]
    assert dvc_md5(b) == md5(b) != old
    assert cache_object(project, old).is_file() and cache_object(project, md5(b)).is_file()
    compare = project.cli("runs", "compare", first, second, "--json", check=True).stdout
    assert json.loads(compare)["same_data"] is False


PROBE = """
import json, sys
from conveyor.cli import run_cli
code = run_cli(sys.argv[1:])
loaded = sorted({m.split('.')[0] for m in sys.modules} & {"dvc", "dvc_data", "dvc_objects",
                                                          "fsspec", "diskcache"})
print(json.dumps({"code": code, "loaded": loaded}))
"""


def test_a_cached_run_reads_dvcs_state_not_the_data_and_never_imports_dvc(dvc_project):
    project = dvc_project()
    project.run(check=True)
    probe = subprocess.run([sys.executable, "-c", PROBE, "run", "--quiet"], cwd=project.path,
                           capture_output=True, text=True, timeout=300)
    assert json.loads(probe.stdout.strip().splitlines()[-1]) == {"code": 0, "loaded": []}

    # The version is looked up by (inode, mtime, size) in DVC's state, as DVC does: content
    # swapped behind identical metadata is not read again, so the run is still fully cached.
    a = project.path / "data" / "a.txt"
    st = a.stat()
    with open(a, "r+b") as handle:  # same inode, same size
        handle.write(b"9")
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    project.run(check=True)
    assert project.runs()[0]["cached"] == 3


def test_state_lookup_agrees_with_dvcs_own_state(dvc_project):
    """The light reader of DVC's state (no DVC import) against DVC's API: a guard against a
    DVC release changing the state's format."""
    from conveyor_dvc import state
    from dvc.repo import Repo
    from dvc_data.hashfile.state import _checksum

    project = dvc_project()
    project.run(check=True)
    a = project.path / "data" / "a.txt"
    repo = Repo(str(project.path))
    try:
        info = repo.fs.info(str(a))
        assert state.checksum(a.stat()) == _checksum(info)
        _, hash_info = repo.state.get(str(a), repo.fs)
        assert hash_info.value == state.lookup(project.path, a) == md5(a)
    finally:
        repo.close()
    a.write_text("4\n")  # changed: the light reader no longer answers
    assert state.lookup(project.path, a) is None


def test_a_data_file_committed_to_git_stays_with_git_until_handed_to_dvc(dvc_project):
    # Files git tracks (a schema, small data) are versioned by git: the core's sha256 is
    # recorded and DVC leaves them alone. Once removed from git, DVC versions them.
    project = dvc_project()
    git(project.path, "add", "data/a.txt")
    git(project.path, "commit", "-q", "-m", "data in git")
    project.run(check=True)
    assert not (project.path / "data" / "a.txt.dvc").exists()
    assert not project.runs()[0]["data"]["data/a.txt"].startswith("md5:")
    git(project.path, "rm", "-q", "--cached", "data/a.txt")
    git(project.path, "commit", "-q", "-m", "hand it to DVC")
    project.run(check=True)
    assert dvc_md5(project.path / "data" / "a.txt") == md5(project.path / "data" / "a.txt")


def test_force_reads_again_a_same_size_edit_whose_mtime_was_restored(dvc_project):
    """Issue 14.9: an in-place edit of the same size with the modification time put back was
    recorded as the old data version (DVC's state cache keys on metadata); --force re-hashes."""
    project = dvc_project()
    project.run(check=True)
    b = project.path / "data" / "b.txt"
    before, stat = md5(b), b.stat()
    text = b.read_text()
    b.write_text(text.replace("1", "9", 1))
    os.utime(b, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert b.stat().st_size == stat.st_size and md5(b) != before
    project.run("--force", check=True)
    assert data_inputs(project, project.runs()[0]["id"])["data/b.txt"] == f"md5:{md5(b)}"
    project.run(check=True)  # DVC's state was corrected: no --force needed from now on
    assert data_inputs(project, project.runs()[0]["id"])["data/b.txt"] == f"md5:{md5(b)}"
