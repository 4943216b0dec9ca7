"""`conveyor_run_stage` may return `conveyor.StoredOutputs`: outputs the implementation already
wrote to the artifact store, recorded by the runner without storing them again. Proven here
with a plain in-process plugin (no Ray): it runs the stage type's `run` itself, writes each
output through an `ArtifactStore` without the database (as a Ray task does) and returns the
references only."""

from __future__ import annotations

import json

from conveyor.testing import assert_clear_error

STAGES = '''
import json
import os
import tempfile
from pathlib import Path

import conveyor
from conveyor.store import ArtifactRef, ArtifactStore


def _numbers(ctx):
    return {"numbers": list(range(ctx.settings["count"]))}


def _total(ctx):
    ctx.log_metrics({"total": sum(ctx.inputs["numbers"])})
    return {"summary": {"total": sum(ctx.inputs["numbers"])}}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("local.numbers", _numbers, outputs={"numbers": "the numbers"}))
    register(conveyor.StageType("local.total", _total))


@conveyor.hookimpl
def conveyor_run_stage(run, stage, context):
    if stage.name not in os.environ.get("ELSEWHERE", "").split(","):
        return None
    produced = stage.type.run(context)
    # An artifact store without the database: the bytes only, as a remote task writes them.
    artifacts = ArtifactStore(run.project_dir / ".conveyor", None)
    refs = {}
    for name, value in produced.items():
        fd, tmp = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        Path(tmp).write_text(json.dumps(value))
        refs[name] = artifacts.adopt(Path(tmp), "json", ".json")
    mode = os.environ.get("MODE", "ok")
    ref = refs.get("numbers")
    if mode == "missing":
        refs["numbers"] = ArtifactRef("0" * 64, "json", ".json", ref.size)
    elif mode == "foreign":
        refs["numbers"] = ArtifactRef(ref.sha256, "pickle", ".pkl", ref.size)
    elif mode == "undeclared":
        refs["extra"] = ref
    elif mode == "plain":
        return refs
    Path(run.project_dir / "returned.json").write_text(
        json.dumps({name: r.as_dict() for name, r in refs.items()}))
    return conveyor.StoredOutputs(refs)


@conveyor.hookimpl
def conveyor_after_stage(run, stage, outputs, cached):
    if stage.name == "numbers" and not cached:
        Path(run.project_dir / "after.json").write_text(json.dumps(dict(outputs)))
'''

CONFIG = {
    "defaults": ["conveyor/defaults", "_self_"], "project": "stored",
    "plugins": {"local": ["remote_stages"]},
    "pipeline": {
        "numbers": {"uses": "local.numbers", "count": 10},
        "total": {"uses": "local.total", "needs": ["numbers"]},
    }}


WRAPPER = '''
import os

import conveyor


@conveyor.hookimpl(wrapper=True)
def conveyor_run_stage(run, stage, context):
    outputs = yield
    if os.environ.get("WRAP") == "copy":
        return dict(outputs)
    if os.environ.get("WRAP") == "rebuild" and isinstance(outputs, conveyor.StoredOutputs):
        return conveyor.StoredOutputs(outputs.refs, outputs.ephemeral)
    return outputs
'''


def _project(conveyor_project):
    return conveyor_project(CONFIG, files={"remote_stages.py": STAGES})


def test_a_wrapper_passing_on_a_plain_copy_of_stored_outputs_is_named(conveyor_project):
    """A `conveyor_run_stage` wrapper doing `return dict(outputs)` turns StoredOutputs into a
    plain mapping of ArtifactRefs: refused naming the wrapper, not blamed on the stage (review
    finding 5); a new StoredOutputs from the wrapper is fine."""
    config = {**CONFIG, "plugins": {"local": ["remote_stages", "copy_wrapper"]}}
    project = conveyor_project(config, files={"remote_stages.py": STAGES,
                                              "copy_wrapper.py": WRAPPER})
    copied = project.cli("run", env={"ELSEWHERE": "numbers", "WRAP": "copy"})
    text = assert_clear_error(copied, 1, "stage 'numbers'", "copy_wrapper",
                              "output 'numbers' came back as an ArtifactRef in a plain dict",
                              "wrapper passed on a copy", "dict(outputs)")
    assert "no installed codec" not in text and "Traceback" not in text
    run = project.show(project.runs()[0]["id"])
    assert run["status"] == "failed"
    rebuilt = project.cli("run", env={"ELSEWHERE": "numbers", "WRAP": "rebuild"}, check=True)
    run = project.show(project.runs()[0]["id"])
    assert run["status"] == "completed" and run["metrics"]["total"] == 45.0, rebuilt.stdout


def test_an_implementation_returning_references_in_a_plain_mapping_is_told_to_use_stored(
        conveyor_project):
    project = _project(conveyor_project)
    plain = project.cli("run", env={"ELSEWHERE": "numbers", "MODE": "plain"})
    assert_clear_error(plain, 1, "stage 'numbers'", "remote_stages", "in a plain dict",
                       "conveyor.StoredOutputs({name: ArtifactRef})")


def test_outputs_stored_by_the_implementation_are_recorded_and_used_downstream(
        conveyor_project):
    project = _project(conveyor_project)
    first = project.cli("run", env={"ELSEWHERE": "numbers"}, check=True)
    run = project.show(project.runs()[0]["id"])
    assert run["status"] == "completed" and run["metrics"]["total"] == 45.0, first.stdout
    returned = json.loads((project.path / "returned.json").read_text())["numbers"]
    stages = {s["name"]: s for s in run["stages"]}
    # The stage's record holds the references the plugin returned, as they were.
    assert stages["numbers"]["outputs"]["numbers"] == returned
    stored = project.path / ".conveyor" / "artifacts" / returned["sha256"][:2] / \
        f"{returned['sha256']}.json"
    assert json.loads(stored.read_text()) == list(range(10))
    # conveyor_after_stage reads the outputs as values, loaded from the store.
    assert json.loads((project.path / "after.json").read_text()) == {"numbers": list(range(10))}
    # A second run reuses both stages, the stored output included.
    again = project.cli("run", env={"ELSEWHERE": "numbers"}, check=True)
    rerun = project.show(project.runs()[0]["id"])
    assert {s["name"]: s["cached"] for s in rerun["stages"]} == {"numbers": True, "total": True}, \
        again.stdout
    # ... and a changed downstream stage runs again on the cached stored output.
    changed = project.cli("run", "+pipeline.total.note=again", env={"ELSEWHERE": "numbers"},
                          check=True)
    last = project.show(project.runs()[0]["id"])
    assert {s["name"]: s["cached"] for s in last["stages"]} == {"numbers": True, "total": False}
    assert last["metrics"]["total"] == 45.0, changed.stdout


def test_a_reference_to_a_missing_artifact_fails_the_stage_naming_the_plugin(conveyor_project):
    project = _project(conveyor_project)
    failed = project.cli("run", env={"ELSEWHERE": "numbers", "MODE": "missing"})
    text = assert_clear_error(failed, 1, "stage 'numbers'", "remote_stages",
                              "is not in the artifact store")
    assert "Traceback" not in text
    run = project.show(project.runs()[0]["id"])
    stages = {s["name"]: s for s in run["stages"]}
    assert run["status"] == "failed" and stages["numbers"]["status"] == "failed"
    assert "total" not in stages or stages["total"]["status"] != "completed"


def test_a_foreign_codec_or_an_undeclared_name_fails_the_stage(conveyor_project):
    project = _project(conveyor_project)
    foreign = project.cli("run", env={"ELSEWHERE": "numbers", "MODE": "foreign"})
    assert_clear_error(foreign, 1, "remote_stages", "codec 'pickle'",
                       "no installed plugin provides")
    undeclared = project.cli("run", env={"ELSEWHERE": "numbers", "MODE": "undeclared"})
    assert_clear_error(undeclared, 1, "output 'extra'", "does not declare")


def test_stored_outputs_is_a_public_mapping_of_references():
    import conveyor
    import pytest
    from conveyor.store import ArtifactRef

    ref = ArtifactRef("a" * 64, "json", ".json", 3)
    stored = conveyor.StoredOutputs({"x": ref}, ephemeral={"frame": object()})
    assert "StoredOutputs" in conveyor.__all__
    assert dict(stored) == {"x": ref} and "frame" in stored.ephemeral and list(stored.values()) == [ref]
    assert "x=aaaaaaaaaaaa" in repr(stored)
    with pytest.raises(ValueError, match="both stored and passed in memory"):
        conveyor.StoredOutputs({"x": ref}, ephemeral={"x": 1})
