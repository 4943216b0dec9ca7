"""Stages named under `ray.stages` run as Ray tasks on a real local cluster (`ray start
--head` on 127.0.0.1, the session's fixture), recorded by `conveyor run` as local stages are."""

from __future__ import annotations

import json
import os

import pytest
from conveyor.testing import assert_clear_error, conveyor_executable, free_port


def _env(head) -> dict[str, str]:
    return head.env


def test_a_stage_on_ray_gives_the_outputs_and_metrics_of_a_local_run(ray_cluster, sums_project):
    local = sums_project()
    local.run(check=True)
    remote = sums_project(stages={"total": {"num_cpus": 2}})
    ran = remote.cli("run", "--force", env=_env(ray_cluster), check=True)
    runs = [remote.show(r["id"]) for r in remote.runs()]
    assert runs[0]["status"] == "completed"
    assert runs[0]["metrics"]["total"] == 90.0 == local.show(local.runs()[0]["id"])["metrics"]["total"]
    # Shown as a local stage's lines are: where it ran, what it logged and printed.
    assert "on Ray node " in ran.stdout and "(CPU 2) · " in ran.stdout, ran.stdout
    assert "summing 10 numbers in process" in ran.stdout
    # The task ran in a Ray worker, not in the `conveyor run` process, with 2 native threads.
    assert runs[0]["metrics"]["threads"] == 2.0
    summary = json.loads(remote.cli("runs", "show", runs[0]["id"], "--json", check=True).stdout)
    assert summary["metrics"] == runs[0]["metrics"]


def test_a_failing_stage_on_ray_fails_the_run_with_its_own_message(ray_cluster, sums_project):
    project = sums_project(stages={"total": {"num_cpus": 1}})
    config = project.path / "conveyor.yaml"
    config.write_text(config.read_text().replace("local.total", "local.boom"))
    failed = project.cli("run", env=_env(ray_cluster))
    text = assert_clear_error(failed, 1, "ValueError: the numbers are bad: 10 of them")
    assert "RayTaskError" not in text and "Traceback" not in text
    run = project.show(project.runs()[0]["id"])
    assert run["status"] == "failed" and "the numbers are bad" in run["error"]


def test_an_unreachable_ray_address_is_exit_2_naming_the_setting(sums_project, tmp_path):
    from conveyor.testing import free_port

    project = sums_project(stages={"total": {}}, address=f"127.0.0.1:{free_port()}")
    failed = project.run()
    assert_clear_error(failed, 2, "ray.address=", "conveyor.yaml", "nothing answers")
    bad = project.run("ray.address=not-an-address")
    assert_clear_error(bad, 2, "ray.address='not-an-address' (from the command line)")
    unknown = project.run("+ray.stages.nope.num_cpus=1")
    assert_clear_error(unknown, 2, "ray.stages.nope", "no stage 'nope'")


def test_the_plugin_registers_through_its_entry_point(sums_project):
    import subprocess

    listed = subprocess.run([conveyor_executable(), "plugins", "list", "--json"],
                            capture_output=True, text=True, check=True,
                            cwd=sums_project().path, env={**os.environ, "COLUMNS": "200"})
    ray = {p["name"]: p for p in json.loads(listed.stdout)}["ray"]
    assert ray["distribution"] == "conveyor-ray" and ray["origin"] == "entry point"
    assert "conveyor_run_stage" in ray["hooks"]


@pytest.mark.slow
def test_a_scikit_learn_train_stage_on_ray_scores_as_it_does_locally(ray_cluster, tmp_path):
    import subprocess

    from conveyor.testing import Project

    subprocess.run([conveyor_executable(), "init", "shop"], cwd=tmp_path, check=True,
                   capture_output=True)
    project = Project(tmp_path / "shop")
    project.run(check=True)
    local = project.show(project.runs()[0]["id"])["metrics"]
    ran = project.cli("run", "--force", "+ray.stages.train.num_cpus=1",
                      env=_env(ray_cluster), check=True)
    assert "train: on Ray node " in ran.stdout, ran.stdout
    remote = project.show(project.runs()[0]["id"])
    assert remote["status"] == "completed" and remote["metrics"] == local


@pytest.mark.slow
def test_predict_runs_without_ray_when_only_the_projects_stages_are_named(tmp_path):
    """`conveyor predict` runs a pipeline of its own (stage `predict`): `ray.stages.train` is
    not its business, so no cluster is needed (none answers at the address) and it is no
    error; a typo in `conveyor run` still is (test_an_unreachable_ray_address_is_exit_2...)."""
    import subprocess

    import pandas as pd
    from conveyor.testing import Project

    subprocess.run([conveyor_executable(), "init", "shop"], cwd=tmp_path, check=True,
                   capture_output=True)
    project = Project(tmp_path / "shop")
    project.run(check=True)
    data = next((project.path / "data").glob("*.csv"))
    frame = pd.read_csv(data).head(50)
    frame.to_csv(tmp_path / "new.csv", index=False)
    scored = project.cli("predict", "--data", str(tmp_path / "new.csv"), "-o",
                         str(tmp_path / "scored.csv"), "+ray.stages.train.num_cpus=1",
                         f"ray.address=127.0.0.1:{free_port()}")
    assert scored.returncode == 0, scored.stdout + scored.stderr
    assert len(pd.read_csv(tmp_path / "scored.csv")) == 50
    typo = project.cli("run", "--force", "+ray.stages.trian.num_cpus=1")
    assert_clear_error(typo, 2, "ray.stages.trian", "no stage 'trian'")


def test_a_stage_on_ray_reads_its_inputs_from_s3_artifacts(ray_cluster, sums_project, s3_server):
    """moto's S3 server stands in for the cloud's object storage (conveyor.testing)."""
    s3_server.create_bucket("ray-artifacts")
    project = sums_project(stages={"total": {"num_cpus": 1}},
                           forward_env=sorted(s3_server.env))
    env = {**_env(ray_cluster), "CONVEYOR_STORE_ARTIFACTS": "s3://ray-artifacts/runs"}
    project.cli("run", env=env, check=True)
    run = project.show(project.runs()[0]["id"])
    assert run["status"] == "completed" and run["metrics"]["total"] == 90.0
    stored = s3_server.client().list_objects_v2(Bucket="ray-artifacts").get("Contents", [])
    assert len(stored) >= 2  # the input the task read and the output the task stored
    # The task loaded its input from the bucket, into its own cache, not from a local folder.
    assert not (project.path / ".conveyor" / "artifacts").exists()
