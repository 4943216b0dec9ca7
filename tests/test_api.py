"""`conveyor.api`: run a project, read a recorded run, run its resolved config again."""

from __future__ import annotations

import pytest
from _support import local_project
from conveyor import api
from conveyor.errors import ConveyorError, UsageError
from conveyor.testing import each_store

# Runs and models written and read in-process: each test on each store backend.
pytestmark = each_store


def test_run_then_get_run_then_run_the_recorded_config_again(tmp_path):
    project = local_project(tmp_path / "p")
    first = api.run(project.path)
    assert first.status == "completed"
    record = api.get_run(project.path, first.run_id[:16])
    assert record.id == first.run_id and record.status == "completed"
    assert record.config["project"] == "faults" and record.command == "run"
    again = api.run(project.path, config=record.config, force=True, command="reproduce")
    second = api.get_run(project.path, again.run_id)
    assert second.command == "reproduce"
    assert second.config_hash == record.config_hash  # the very same resolved config
    assert [r["cached"] for r in project.runs()] == [0, 0]  # --force: every stage ran again


def test_a_resolved_config_is_used_literally(tmp_path):
    project = local_project(tmp_path / "p", extra={"env": {"note": "${not.an.interpolation}"}})
    record_config = {**api.load_config(project.path, ["env.note=plain"]).data}
    record_config["env"] = {"note": "${still.literal}"}
    result = api.run(project.path, config=record_config)
    assert api.get_run(project.path, result.run_id).config["env"]["note"] == "${still.literal}"


def test_get_run_names_unknown_and_ambiguous_ids(tmp_path):
    project = local_project(tmp_path / "p")
    api.run(project.path)
    api.run(project.path)
    with pytest.raises(UsageError, match="no run with id 'nope'"):
        api.get_run(project.path, "nope")
    with pytest.raises(UsageError, match="ambiguous"):
        api.get_run(project.path, "2")
    with pytest.raises(UsageError, match="not both"):
        api.run(project.path, config={}, overrides=["seed=1"])


def test_load_model_returns_the_champion_and_refuses_a_tampered_file(trained_project):
    from conveyor.errors import StoreError
    from conveyor.store import ArtifactRef, open_store

    project = trained_project("classification")
    loaded = api.load_model(project.path)
    assert loaded.number == 1 and loaded.version.decision == "passed"
    assert hasattr(loaded.model, "predict_proba")
    assert loaded.config["data"]["target"] == "churned"
    with pytest.raises(UsageError, match="has no version 9"):
        api.load_model(project.path, loaded.name, version=9)
    with pytest.raises(UsageError, match="has no challenger"):
        api.load_model(project.path, alias="challenger")
    store = open_store(project.path / "")
    path = store.artifacts.path(ArtifactRef.from_dict(loaded.version.artifact))
    store.close()
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(StoreError, match="tampered"):
        api.load_model(project.path)


def test_resolve_model_names_the_version_without_loading_it(tmp_path):
    from conveyor.store import Registry, open_store

    registry = Registry(open_store(tmp_path))
    with pytest.raises(UsageError, match="no registered model yet"):
        api.resolve_model(tmp_path)
    for run_id in ("r1", "r2"):
        registry.register(name="m", run_id=run_id, stage="register", artifact={}, metrics={},
                          gate={}, decision="passed", config_hash="h", data={})
    with pytest.raises(UsageError, match="model 'm' has no champion yet"):
        api.resolve_model(tmp_path)
    registry.set_alias("m", "champion", 1, action="gate", reason="passed")
    assert (api.resolve_model(tmp_path).version, api.resolve_model(tmp_path, "m", version=2)
            .version) == (1, 2)
    with pytest.raises(UsageError, match="no model named 'x'"):
        api.resolve_model(tmp_path, "x")


def test_list_runs_lists_newest_first_and_filters(tmp_path):
    """Issue 15: a plugin author could read one run but not list them."""
    project = local_project(tmp_path / "p")
    first = api.run(project.path)
    (project.path / "BREAK").write_text("")
    with pytest.raises(ConveyorError):
        api.run(project.path, overrides=["seed=7"], force=True)
    (project.path / "BREAK").unlink()
    again = api.run(project.path, force=True, command="reproduce")
    runs = api.list_runs(project.path)
    failed = api.get_run(project.path, runs[1].id)
    assert [r.id for r in runs] == [again.run_id, failed.id, first.run_id]
    assert isinstance(runs[0], api.RunSummary)
    assert runs[2].status == "completed" and runs[2].exit_code == 0 and runs[2].duration >= 0
    assert runs[1].status == "failed" and runs[1].exit_code == 1
    assert [r.id for r in api.list_runs(project.path, status="failed")] == [failed.id]
    assert [r.id for r in api.list_runs(project.path, command="reproduce")] == [again.run_id]
    assert [r.id for r in api.list_runs(project.path, params={"seed": 7})] == [failed.id]
    assert [r.id for r in api.list_runs(project.path, limit=1)] == [again.run_id]
    assert [r.id for r in api.list_runs(project.path, since=runs[1].created_at)] == \
        [again.run_id, failed.id]
    assert api.list_runs(project.path, metrics=[("nothing", ">", 0)]) == []
    with pytest.raises(UsageError):
        api.list_runs(project.path, metrics=[("accuracy", "~", 1)])
    with pytest.raises(UsageError):
        api.list_runs(project.path, order="bogus")
