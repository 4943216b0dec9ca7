"""The `conveyor` command's garbage-collection policy (conveyor.collection): paused while it
starts, back on before any stage or long-running command does work, never touched when
Conveyor is used as a library."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from _support import local_project
from conveyor import api, collection

PROBE = """
import gc, json, sys
from conveyor import collection
from conveyor.cli import run_cli
collection.pause()
code = run_cli(sys.argv[1:])
print(json.dumps({"code": code, "enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}))
"""


def _probe(cwd, *args):
    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_run_collects_again_once_its_stages_start(tmp_path):
    project = local_project(tmp_path / "p")
    state = _probe(project.path, "run", "--quiet")
    assert state["code"] == 0 and state["enabled"] and state["frozen"] > 0


def test_other_commands_collect_again_before_they_start(tmp_path):
    project = local_project(tmp_path / "p")
    state = _probe(project.path, "runs", "list")
    assert state["code"] == 0 and state["enabled"] and state["frozen"] > 0


def test_library_use_leaves_the_collector_alone(tmp_path):
    project = local_project(tmp_path / "p")
    frozen = gc.get_freeze_count()
    collection.resume()  # not paused: nothing to do
    assert api.run(project.path).status == "completed"
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_a_hydra_run_or_sweep_collects_from_the_start(tmp_path):
    """`--cfg`, `--multirun` and friends go through Hydra's own runtime: its parent process may
    run an Optuna study for hours, so it does not wait for a Runner to resume collection."""
    project = local_project(tmp_path / "p")
    state = _probe(project.path, "run", "--cfg", "job")
    assert state["code"] == 0 and state["enabled"] and state["frozen"] > 0
