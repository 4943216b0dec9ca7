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
