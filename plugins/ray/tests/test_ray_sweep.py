"""`conveyor run --multirun` with hydra-ray-launcher on the session's local Ray cluster: every
job a run recorded in the project's store, one invocation, and the sweep's summary."""

from __future__ import annotations

import pytest
from conveyor import api


@pytest.mark.slow
def test_a_ray_sweep_records_each_job_as_a_run_with_the_sweep_summary(ray_cluster, sums_project):
    project = sums_project()
    result = project.cli("run", "--multirun", "hydra/launcher=ray_cluster",
                         "pipeline.total.scale=1,2,3", env=ray_cluster.env,
                         check=True)
    assert "sweep: 3 jobs" in result.stdout, result.stdout
    runs = [api.get_run(project.path, row["id"]) for row in project.runs()]
    assert len(runs) == 3 and {r.status for r in runs} == {"completed"}
    assert sorted(r.metrics["total"] for r in runs) == [45.0, 90.0, 135.0]
    # One invocation, as the joblib launcher's jobs share one.
    assert len({r.invocation for r in runs}) == 1 and runs[0].invocation
    for job in range(3):
        assert f"  job {job}   " in result.stdout
    # The jobs ran in Ray workers, whose output Ray forwards with their process id.
    assert "(_run_job pid=" in result.stdout + result.stderr


def test_a_sweep_against_a_dead_address_fails_fast_naming_the_setting(sums_project):
    """hydra-ray-launcher's `ray.init` would retry the connection for long; the preset's
    callback checks the address before Hydra launches anything."""
    import time

    from conveyor.testing import assert_clear_error, free_port

    project = sums_project()
    started = time.monotonic()
    failed = project.cli("run", "--multirun", "hydra/launcher=ray_cluster",
                         f"hydra.launcher.ray.init.address=127.0.0.1:{free_port()}",
                         "pipeline.total.scale=1,2", timeout=120)
    assert_clear_error(failed, 2, "hydra.launcher.ray.init.address=", "(from the command line)",
                       "nothing answers")
    from_env = project.cli("run", "--multirun", "hydra/launcher=ray_cluster",
                           "pipeline.total.scale=1,2", timeout=120,
                           env={"RAY_ADDRESS": f"127.0.0.1:{free_port()}"})
    assert_clear_error(from_env, 2, "hydra.launcher.ray.init.address=",
                       "environment variable RAY_ADDRESS", "nothing answers")
    assert time.monotonic() - started < 60
    assert project.runs() == []  # no job ran


def _choose_preset_in_defaults(project, address: str | None = None):
    """The project's conveyor.yaml choosing the preset in its defaults list (and, with
    `address`, setting the sweep's address itself)."""
    import yaml

    path = project.path / "conveyor.yaml"
    config = yaml.safe_load(path.read_text())
    config["defaults"] = ["conveyor/defaults", {"override hydra/launcher": "ray_cluster"},
                          "_self_"]
    if address is not None:
        config["hydra"] = {"launcher": {"ray": {"init": {"address": address}}}}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return project


def test_the_preset_chosen_in_conveyor_yaml_runs_and_checks_its_address(sums_project):
    """`- override hydra/launcher: ray_cluster` in conveyor.yaml: the preset's callback is a
    class the plugin registers (conveyor_target_prefixes), so the core's check of
    hydra.callbacks accepts it; a plain run does not use the launcher, a sweep checks the
    address the project's config sets and says it came from there."""
    from conveyor.testing import assert_clear_error, free_port

    address = f"127.0.0.1:{free_port()}"
    project = _choose_preset_in_defaults(sums_project(), address)
    plain = project.cli("run", check=True)
    assert "completed" in plain.stdout, plain.stdout + plain.stderr
    assert len(project.runs()) == 1
    failed = project.cli("run", "--multirun", "pipeline.total.scale=1,2", timeout=120)
    assert_clear_error(failed, 2, f"hydra.launcher.ray.init.address='{address}'",
                       f"(from the project's config (hydra.launcher.ray.init.address: {address}))",
                       "nothing answers")
    assert len(project.runs()) == 1  # no job of the sweep ran


def test_the_origin_of_the_sweep_address_compares_the_preset_as_written(monkeypatch):
    from conveyor_ray.sweep import address_origin, preset_address

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert preset_address() == "${oc.env:RAY_ADDRESS,auto}"
    assert address_origin("10.0.0.1:6379", [], preset_address()) == \
        "environment variable RAY_ADDRESS"
    # The project's YAML writes the same address as RAY_ADDRESS holds: still the project's.
    assert address_origin("10.0.0.1:6379", [], "10.0.0.1:6379").startswith("the project's config")
    assert address_origin("h:1", ["hydra.launcher.ray.init.address=h:1"], "h:1") == \
        "the command line"
    monkeypatch.delenv("RAY_ADDRESS")
    assert address_origin("auto", [], preset_address()) == "hydra/launcher=ray_cluster's default"


@pytest.mark.slow
def test_a_sweep_with_the_preset_chosen_in_conveyor_yaml_runs_on_ray(ray_cluster, sums_project):
    project = _choose_preset_in_defaults(sums_project())
    result = project.cli("run", "--multirun", "pipeline.total.scale=1,2", env=ray_cluster.env,
                         check=True)
    assert "sweep: 2 jobs" in result.stdout, result.stdout
    assert "(_run_job pid=" in result.stdout + result.stderr  # the jobs ran on Ray
    assert sorted(row["status"] for row in project.runs()) == ["completed", "completed"]
