"""The issue's "done when": in a fresh project, run, edit the CSV, run again, delete the data,
reproduce the first run and get its metrics back, all through the real console script."""

from __future__ import annotations

import json
import subprocess

import pytest
from _dvc_support import cache_object, dvc_md5, md5, runs_in_store
from conveyor.testing import Project, conveyor_executable


@pytest.mark.slow
def test_run_edit_run_delete_then_reproduce_the_first_run(tmp_path):
    init = subprocess.run([conveyor_executable(), "init", "churn"], cwd=tmp_path, text=True,
                          capture_output=True, timeout=300)
    assert init.returncode == 0, init.stderr
    assert "dvc: data versioned by DVC: data/customers.csv" in init.stdout
    project = Project(tmp_path / "churn")
    data = project.path / "data" / "customers.csv"

    first = project.run()
    assert first.returncode == 0, first.stderr
    first_run = project.runs()[0]
    first_version = md5(data)
    # The CSV is versioned by DVC; a schema file (with conveyor-pandera) stays with git.
    assert first_run["data"]["data/customers.csv"] == f"md5:{first_version}"[:12]
    shown = project.cli("runs", "show", first_run["id"], check=True).stdout
    assert f"data/customers.csv  version md5:{first_version}" in shown

    # Edit the CSV in place (drop the last 500 rows): a new version on the next run.
    lines = data.read_text().splitlines(keepends=True)
    data.write_text("".join(lines[:-500]))
    second = project.run()
    assert second.returncode in (0, 1), second.stderr  # 1: the gate may refuse the new model
    second_version = md5(data)
    assert second_version != first_version
    assert dvc_md5(data) == second_version  # versioned by DVC: its .dvc file and cache
    assert cache_object(project, first_version).is_file()
    assert cache_object(project, second_version).is_file()
    second_run = project.runs()[0]
    compare = project.cli("runs", "compare", first_run["id"], second_run["id"], check=True).stdout
    assert "data: DIFFERENT data versions" in compare
    assert f"md5:{first_version} ({first_run['id']})" in compare
    assert f"md5:{second_version} ({second_run['id']})" in compare

    data.unlink()
    reproduced = project.cli("reproduce", first_run["id"])
    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr
    assert f"md5:{first_version} from the local DVC cache" in reproduced.stdout
    assert f"reproduced run {first_run['id']}: 3 metric(s) identical" in reproduced.stdout
    metrics = project.show(first_run["id"])["metrics"]
    for name, value in metrics.items():
        assert f"{name}={value:.6g}" in reproduced.stdout

    # The project itself is untouched: the data stays deleted, no run was added to its store,
    # and the temporary workspace is gone.
    assert not data.exists()
    assert len(runs_in_store(project)) == 2
    assert list((project.path / ".conveyor" / "reproduce").iterdir()) == []

    as_json = json.loads(project.cli("reproduce", first_run["id"], "--json", check=True).stdout)
    assert as_json["identical"] is True
    assert {k: v["original"] for k, v in as_json["metrics"].items()} == metrics
