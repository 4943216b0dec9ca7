"""What a plugin mirroring runs to a tracker sees through the hooks: every stage's metrics, the
cached ones included, and the run's command, overrides and code version."""

from __future__ import annotations

import json

from _support import local_project

TRACKER = '''
import json

import conveyor


def _scored(ctx):
    ctx.log_metrics({"score": 0.5 + ctx.settings.get("bump", 0)})
    return {"scored": {"ok": True}}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("tracker.scored", _scored))


@conveyor.hookimpl
def conveyor_before_run(run):
    with open(run.project_dir / "tracked.jsonl", "a") as out:
        out.write(json.dumps({"run": run.id, "command": run.command,
                              "overrides": list(run.overrides),
                              "git_commit": run.git_commit}) + "\\n")


@conveyor.hookimpl
def conveyor_log_metrics(run, stage, metrics, cached):
    with open(run.project_dir / "tracked.jsonl", "a") as out:
        out.write(json.dumps({"run": run.id, "stage": stage, "metrics": dict(metrics),
                              "cached": cached}) + "\\n")
'''


def test_a_tracker_sees_cached_metrics_and_the_runs_command_line(tmp_path):
    project = local_project(tmp_path / "p", local=["tracker"], modules={"tracker": TRACKER},
                            pipeline={"score": {"uses": "tracker.scored"}},
                            extra={"env": {"note": "a"}})
    assert project.run("env.note=b").returncode == 0
    assert project.run("env.note=b").returncode == 0  # the stage comes from the cache
    lines = [json.loads(line) for line in (project.path / "tracked.jsonl").read_text().splitlines()]
    starts = [line for line in lines if "command" in line]
    assert [s["command"] for s in starts] == ["run", "run"]
    assert starts[0]["overrides"] == ["env.note=b"]
    assert starts[0]["git_commit"] is None  # not a git checkout
    metrics = [line for line in lines if "metrics" in line]
    assert [(m["metrics"], m["cached"]) for m in metrics] == [({"score": 0.5}, False),
                                                              ({"score": 0.5}, True)]
    assert metrics[1]["run"] == starts[1]["run"]
