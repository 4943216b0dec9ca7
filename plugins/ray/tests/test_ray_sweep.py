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
