"""`conveyor data status | push | pull`: thin wrappers over DVC with Conveyor-level messages."""

from __future__ import annotations

import json
import shutil

import pytest
from _dvc_support import cache_object, closed_port, dvc_md5, md5, set_remote
from conveyor.testing import assert_clear_error


@pytest.mark.parametrize("command", [("data", "status"), ("data", "push"), ("data", "pull"),
                                     ("reproduce", "someid")])
def test_not_a_dvc_repository_is_a_clear_error_with_the_fix(conveyor_project, command):
    project = conveyor_project({"defaults": ["conveyor/defaults", "_self_"], "project": "plain",
                                "pipeline": {"noop": {"uses": "conveyor.register"}}})
    stderr = assert_clear_error(project.cli(*command), 2, "is not a DVC repository", "dvc init")
    assert "--no-scm" in stderr and "conveyor init" in stderr


def test_data_without_an_action_is_a_usage_error(dvc_project):
    assert_clear_error(dvc_project().cli("data"), 2, "conveyor data status | push | pull")


@pytest.mark.slow
def test_status_push_and_pull_round_trip_every_version_runs_used(dvc_project):
    project = dvc_project()
    a = project.path / "data" / "a.txt"
    project.run(check=True)
    first = md5(a)
    a.write_text("1\n2\n3\n4\n")
    project.run(check=True)
    second = md5(a)

    status = json.loads(project.cli("data", "status", "--json", check=True).stdout)
    rows = {(r["path"], r["version"]): r for r in status["versions"]}
    assert rows[("data/a.txt", f"md5:{second}")]["current"] is True
    assert rows[("data/a.txt", f"md5:{second}")]["workspace"] == "unchanged"
    assert rows[("data/a.txt", f"md5:{first}")]["current"] is False  # an earlier run's
    assert all(r["cache"] and not r["remote"] for r in status["versions"])
    assert status["remote"] == {"name": "local", "exists": False,
                                "url": str(project.path / ".conveyor" / "dvc-remote")}
    text = project.cli("data", "status", check=True).stdout
    assert "3 version(s) only in the local cache: `conveyor data push`" in text

    pushed = project.cli("data", "push", check=True).stdout
    assert "pushed 3 data version(s) to remote 'local'" in pushed
    assert "1 already there" not in pushed
    assert "already there" in project.cli("data", "push", check=True).stdout
    status = json.loads(project.cli("data", "status", "--json", check=True).stdout)
    assert all(r["remote"] for r in status["versions"])

    # Lose the cache and a data file: pull brings back every version and the missing file.
    shutil.rmtree(project.path / ".dvc" / "cache")
    a.unlink()
    b = project.path / "data" / "b.txt"
    b.write_text("99\n")  # changed by hand: pull leaves it alone
    pulled = project.cli("data", "pull", check=True).stdout
    assert "fetched 3 data version(s) from remote 'local'" in pulled
    assert "restored 1 file(s) in the workspace: data/a.txt" in pulled
    assert "data/b.txt: changed in the workspace since its .dvc version, left as it is" in pulled
    assert md5(a) == second and b.read_text() == "99\n"
    assert cache_object(project, first).is_file()


@pytest.mark.slow
def test_the_remote_can_be_any_folder_set_in_the_config(dvc_project, tmp_path):
    project = dvc_project()
    project.run(check=True)
    elsewhere = tmp_path / "shared-remote"
    set_remote(project, str(elsewhere))
    pushed = project.cli("data", "push", check=True).stdout
    assert f"remote 'conveyor' ({elsewhere})" in pushed
    digest = dvc_md5(project.path / "data" / "a.txt")
    assert (elsewhere / "files" / "md5" / digest[:2] / digest[2:]).is_file()
    assert not (project.path / ".conveyor" / "dvc-remote").exists()
    # --remote overrides it once, by name or URL.
    again = project.cli("data", "push", "--remote", "local", check=True).stdout
    assert "remote 'local'" in again


def test_a_cloud_remote_without_dvcs_extra_says_what_to_install(dvc_project):
    project = dvc_project()
    project.run(check=True)
    set_remote(project, "s3://conveyor-test-bucket/data")
    stderr = assert_clear_error(project.cli("data", "push"), 2, "s3", "pip install 'dvc[s3]'")
    assert "dvc-s3" in stderr


def test_pull_from_an_unreachable_remote_is_a_clear_error_and_overwrites_nothing(dvc_project):
    project = dvc_project()
    project.run(check=True)
    a = project.path / "data" / "a.txt"
    shutil.rmtree(project.path / ".dvc" / "cache")
    a.unlink()
    set_remote(project, f"http://127.0.0.1:{closed_port()}/dvc")
    stderr = assert_clear_error(project.cli("data", "pull"), 1, "the current version of data/a.txt",
                          "neither in the local cache nor on remote 'conveyor'",
                          "cannot be reached")
    assert "conveyor data push" in stderr
    assert not a.exists()
    b = project.path / "data" / "b.txt"
    assert b.read_text() == "10\n20\n"  # untouched


def test_push_to_an_unreachable_remote_says_why(dvc_project):
    project = dvc_project()
    project.run(check=True)
    port = closed_port()
    assert_clear_error(project.cli("data", "push", "--remote", f"http://127.0.0.1:{port}/dvc"), 1,
                 "2 data version(s) could not be pushed", f"127.0.0.1:{port}",
                 "Cannot connect to host")
