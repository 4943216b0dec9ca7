"""`conveyor reproduce RUN`: restored data, the run's config, metrics compared; the faults."""

from __future__ import annotations

import json
import shutil

import yaml
from _dvc_support import (
    cache_object,
    closed_port,
    git,
    md5,
    runs_in_store,
    set_remote,
)
from conveyor.testing import assert_clear_error, each_store


def first_run(project) -> str:
    project.run(check=True)
    return project.runs()[0]["id"]


@each_store
def test_reproduce_restores_a_deleted_file_from_the_cache_and_matches(dvc_project):
    project = dvc_project()
    run_id = first_run(project)
    a = project.path / "data" / "a.txt"
    version = md5(a)
    a.write_text("5\n")
    project.run(check=True)
    a.unlink()
    result = project.cli("reproduce", run_id[:-2])  # a unique prefix
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"data/a.txt: md5:{version} from the local DVC cache" in result.stdout
    assert f"✓ reproduced run {run_id}: 5 metric(s) identical" in result.stdout
    assert "total=36" in result.stdout  # 1+2+3 + 10+20, not the edited file's
    assert not a.exists()
    # same code, same packages: no warning (but a shared store's note that artifacts stay on
    # this machine, on PostgreSQL)
    assert [line for line in result.stderr.splitlines() if "warning" in line
            and "store.artifacts is unset" not in line] == [], result.stderr


def test_reproduce_fetches_from_the_remote_when_the_cache_lacks_the_version(dvc_project):
    project = dvc_project()
    run_id = first_run(project)
    project.cli("data", "push", check=True)
    shutil.rmtree(project.path / ".dvc" / "cache")
    result = project.cli("reproduce", run_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "from remote 'local'" in result.stdout
    assert "5 metric(s) identical" in result.stdout


def test_cache_entry_missing_and_remote_unreachable_is_a_clear_error_and_changes_nothing(
        dvc_project):
    project = dvc_project()
    run_id = first_run(project)
    a = project.path / "data" / "a.txt"
    version = md5(a)
    cache_object(project, version).unlink()
    a.write_text("7\n8\n")  # the workspace holds another version: it must survive
    set_remote(project, f"http://127.0.0.1:{closed_port()}/dvc")
    dvcfile = (project.path / "data" / "a.txt.dvc").read_text()
    stderr = assert_clear_error(project.cli("reproduce", run_id), 1,
                          f"cannot restore data/a.txt as run {run_id} read it (md5:{version})",
                          "not in the local DVC cache", "remote 'conveyor'",
                          "cannot be reached", "nothing was changed")
    assert "conveyor data push" in stderr
    assert a.read_text() == "7\n8\n"
    assert (project.path / "data" / "a.txt.dvc").read_text() == dvcfile
    assert not cache_object(project, version).exists()
    assert len(runs_in_store(project)) == 1
    assert list((project.path / ".conveyor" / "reproduce").iterdir()) == []


def test_a_missing_local_remote_folder_is_named(dvc_project):
    project = dvc_project()
    run_id = first_run(project)
    shutil.rmtree(project.path / ".dvc" / "cache")
    assert_clear_error(project.cli("reproduce", run_id), 1, "not in the local DVC cache",
                 "remote 'local'", "the remote folder does not exist")


def test_reproduce_warns_when_the_code_differs_from_the_runs(dvc_project):
    project = dvc_project()
    run_id = first_run(project)
    module = project.path / "lightstages.py"
    module.write_text(module.read_text() + "\n# a comment: still the same results\n")
    git(project.path, "commit", "-q", "-am", "touch the stages")
    result = project.cli("reproduce", run_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"warning: the code differs from run {run_id}'s: it ran at commit" in result.stderr
    module.write_text(module.read_text() + "# uncommitted\n")
    result = project.cli("reproduce", run_id)
    assert "with uncommitted changes" in result.stderr


def test_reproduce_shows_the_difference_when_metrics_are_not_deterministic(dvc_project):
    project = dvc_project()
    config = yaml.safe_load((project.path / "conveyor.yaml").read_text())
    config["pipeline"]["total"]["noisy"] = True
    (project.path / "conveyor.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run_id = first_run(project)
    result = project.cli("reproduce", run_id)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"✗ the metrics differ from run {run_id}'s" in result.stdout
    assert "noise" in result.stdout and "total" not in result.stdout.split("differ")[1]
    data = json.loads(project.cli("reproduce", run_id, "--json").stdout)
    assert data["identical"] is False
    assert data["metrics"]["total"]["difference"] == 0
    assert data["metrics"]["noise"]["difference"] != 0


def test_reproduce_of_an_unknown_or_failed_run_is_a_usage_error(dvc_project):
    project = dvc_project()
    assert_clear_error(project.cli("reproduce", "nosuchrun"), 2, "no run with id 'nosuchrun'")


def test_reproduce_of_a_predict_run_says_how_to_score_again(dvc_project):
    project = dvc_project("classification")
    project.run(check=True)
    source = yaml.safe_load((project.path / "conveyor.yaml").read_text())["data"]["source"]
    project.cli("predict", "--data", source, "-o", "scored.parquet", check=True)
    scoring = next(r for r in project.runs() if r.get("command") == "predict")
    result = project.cli("reproduce", scoring["id"])
    assert_clear_error(result, 2, "scored data with `conveyor predict`", "conveyor predict --data")
    assert not (project.path / ".conveyor" / "reproduce").exists() or \
        not any((project.path / ".conveyor" / "reproduce").iterdir())


EXTRA_PLUGIN = '''
import os

import conveyor


@conveyor.hookimpl
def conveyor_before_run(run):
    with open(os.environ["EXTRA_MARKER"], "a") as out:
        out.write(run.command + "\\n")
'''


def test_reproduce_runs_with_the_plugins_the_run_ran_with(dvc_project, tmp_path):
    """A plugin installed after the run is switched off for its reproduction, and said so."""
    project = dvc_project()
    run_id = first_run(project)
    # "Installed" since the run: a dist-info with a `conveyor` entry point, on PYTHONPATH.
    site = tmp_path / "site"
    info = site / "conveyor_extra-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: conveyor-extra\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[conveyor]\nextra = conveyor_extra\n")
    (site / "conveyor_extra.py").write_text(EXTRA_PLUGIN)
    marker = tmp_path / "extra-ran.txt"
    env = {"PYTHONPATH": str(site), "EXTRA_MARKER": str(marker)}
    result = project.cli("reproduce", run_id, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "switched off for the reproduction, as run" in result.stderr
    assert "ran without them: extra" in result.stderr
    assert not marker.exists()  # it did not run
    assert project.cli("run", env=env).returncode == 0
    assert marker.read_text() == "run\n"  # an ordinary run does load it
