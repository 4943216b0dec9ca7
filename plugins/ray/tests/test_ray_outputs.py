"""A stage on Ray stores its outputs itself, in the shared artifact store (`store.artifacts`:
the project's folder, or object storage), and hands the driver only their references
(`conveyor.StoredOutputs`); the driver records them, downstream stages and cached re-runs read
them from the store. Real parts: the session's Ray head; moto's S3 server standing in for the
cloud's object storage."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conveyor.testing import assert_clear_error

# A project-local plugin: the stages, and a wrapper around `conveyor_run_stage` in the driver
# that writes down what the driver got back from the stage's runner (and, asked to, loses the
# stored artifacts: a store the task wrote that the driver does not see).
STAGES = '''
import json
import os
from pathlib import Path

import conveyor
from conveyor.store import ArtifactStore


def _numbers(ctx):
    return {"numbers": list(range(ctx.settings["count"]))}


def _total(ctx):
    ctx.log_metrics({"total": sum(ctx.inputs["numbers"])})
    return {"summary": {"total": sum(ctx.inputs["numbers"]), "pid": os.getpid()}}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("local.numbers", _numbers))
    register(conveyor.StageType("local.total", _total))


@conveyor.hookimpl(wrapper=True)
def conveyor_run_stage(run, stage, context):
    outputs = yield
    seen = {"type": type(outputs).__name__, "pid": os.getpid()}
    if isinstance(outputs, conveyor.StoredOutputs):
        store = ArtifactStore(run.project_dir / ".conveyor", None,
                              url=os.environ.get("CONVEYOR_STORE_ARTIFACTS"))
        seen["refs"] = {name: ref.as_dict() for name, ref in outputs.items()}
        seen["ephemeral"] = sorted(outputs.ephemeral)
        # Stored before the driver records anything: the task wrote them.
        seen["present"] = {name: store.exists(ref) for name, ref in outputs.items()}
        if os.environ.get("LOSE_OUTPUTS"):
            for ref in outputs.values():
                if store.fs is not None:
                    store.fs.rm_file(store.key(ref))
                else:
                    store.path(ref).unlink()
    Path(run.project_dir / f"seen-{stage.name}.json").write_text(json.dumps(seen))
    return outputs
'''


def _project(conveyor_project, **ray: Any):
    config = {
        "defaults": ["conveyor/defaults", "_self_"], "project": "outputs",
        "plugins": {"local": ["out_stages"]},
        "pipeline": {
            "numbers": {"uses": "local.numbers", "count": 10},
            "total": {"uses": "local.total", "needs": ["numbers"]},
        },
        "ray": {"stages": {"numbers": {"num_cpus": 1}}, **ray}}
    return conveyor_project(config, files={"out_stages.py": STAGES})


def _seen(project, stage: str) -> dict[str, Any]:
    return json.loads((project.path / f"seen-{stage}.json").read_text())


def _stages(project) -> dict[str, dict[str, Any]]:
    run = project.show(project.runs()[0]["id"])
    return {s["name"]: s for s in run["stages"]} | {"run": run}


def _check_reuse(project, env: dict[str, str]) -> None:
    """A second run reuses both stages; a changed downstream stage reads the stored output."""
    project.cli("run", env=env, check=True)
    stages = _stages(project)
    assert stages["numbers"]["cached"] and stages["total"]["cached"]
    project.cli("run", "+pipeline.total.note=again", env=env, check=True)
    stages = _stages(project)
    assert stages["numbers"]["cached"] and not stages["total"]["cached"]
    assert stages["run"]["metrics"]["total"] == 45.0


def test_the_task_stores_its_outputs_in_the_projects_folder_and_returns_references(
        ray_cluster, conveyor_project):
    project = _project(conveyor_project)
    ran = project.cli("run", env=ray_cluster.env, check=True)
    assert "numbers: on Ray node " in ran.stdout and "storing outputs" in ran.stdout, ran.stdout
    seen = _seen(project, "numbers")
    # The driver got references only, the artifact already in the store.
    assert seen["type"] == "StoredOutputs" and seen["ephemeral"] == []
    assert seen["present"] == {"numbers": True}
    ref = seen["refs"]["numbers"]
    stages = _stages(project)
    assert stages["run"]["status"] == "completed" and stages["run"]["metrics"]["total"] == 45.0
    assert stages["numbers"]["outputs"]["numbers"] == ref
    stored = project.path / ".conveyor" / "artifacts" / ref["sha256"][:2] / \
        f"{ref['sha256']}.json"
    assert json.loads(stored.read_text()) == list(range(10))
    # A local stage still hands the driver its values.
    assert _seen(project, "total")["type"] == "dict"
    _check_reuse(project, ray_cluster.env)


def test_the_task_stores_its_outputs_in_s3_artifacts(ray_cluster, conveyor_project, s3_server):
    """moto's S3 server stands in for the cloud's object storage (conveyor.testing)."""
    s3_server.create_bucket("ray-outputs")
    project = _project(conveyor_project, forward_env=sorted(s3_server.env))
    env = {**ray_cluster.env, "CONVEYOR_STORE_ARTIFACTS": "s3://ray-outputs/runs"}
    project.cli("run", env=env, check=True)
    seen = _seen(project, "numbers")
    assert seen["type"] == "StoredOutputs" and seen["present"] == {"numbers": True}
    sha = seen["refs"]["numbers"]["sha256"]
    body = s3_server.client().get_object(Bucket="ray-outputs",
                                         Key=f"runs/{sha[:2]}/{sha}.json")["Body"].read()
    assert json.loads(body) == list(range(10))
    assert _stages(project)["run"]["metrics"]["total"] == 45.0
    assert not (project.path / ".conveyor" / "artifacts").exists()
    _check_reuse(project, env)


def test_a_reference_the_driver_cannot_find_fails_the_stage_naming_conveyor_ray(
        ray_cluster, conveyor_project):
    project = _project(conveyor_project)
    failed = project.cli("run", env={**ray_cluster.env, "LOSE_OUTPUTS": "1"})
    text = assert_clear_error(failed, 1, "stage 'numbers'", "plugin 'ray'",
                              "is not in the artifact store")
    assert "Traceback" not in text
    stages = _stages(project)
    assert stages["run"]["status"] == "failed" and stages["numbers"]["status"] == "failed"
    assert "total" not in stages or stages["total"]["status"] != "completed"


def test_ephemeral_outputs_of_a_task_go_back_as_values():
    """An output the stage type declares ephemeral is never stored: it travels as a value."""
    from types import SimpleNamespace

    from conveyor_ray.worker import StagePayload, StageResult, _store_outputs

    result = StageResult()
    stage_type = SimpleNamespace(ephemeral_outputs=frozenset({"frame"}))
    payload = StagePayload(run=None, stage="load", uses="x.load", settings={}, inputs=[],
                           threads=1, import_target=None)
    _store_outputs(payload, None, None, stage_type, {"frame": [1, 2]}, result)
    assert result.ephemeral == {"frame": [1, 2]} and result.stored == {}


def test_a_task_on_a_node_without_the_project_folder_does_not_write_a_local_store(tmp_path):
    """A local `store.artifacts` on a node that lacks the project folder: a clear failure, and
    the driver's path is not created there (the driver would never see what was written)."""
    from types import SimpleNamespace

    from conveyor import StageFailed
    from conveyor_ray.worker import StagePayload, StageResult, _artifact_store, _store_outputs

    elsewhere = tmp_path / "driver-home" / "proj"  # only on the driver's machine
    payload = StagePayload(run=SimpleNamespace(project_dir=elsewhere), stage="numbers",
                           uses="local.numbers", settings={}, inputs=[], threads=1,
                           import_target=None)
    stage_type = SimpleNamespace(ephemeral_outputs=frozenset())
    with pytest.raises(StageFailed, match="without the project folder") as raised:
        _store_outputs(payload, None, _artifact_store(elsewhere, None), stage_type,
                       {"numbers": [1]}, StageResult())
    assert "s3://" in (raised.value.hint or "")
    assert not (tmp_path / "driver-home").exists()
