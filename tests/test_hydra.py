"""Hydra's command-line grammar and runtime work unchanged through `conveyor run`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conveyor.testing import conveyor_executable


def test_cfg_job_prints_the_resolved_config_and_runs_nothing(new_project):
    project = new_project()
    result = project.cli("run", "--cfg", "job", "model=random_forest", "+extra.note=hi",
                         "~evaluate.slices", check=True)
    assert "RandomForestClassifier" in result.stdout and "note: hi" in result.stdout
    assert project.runs() == []


def test_append_and_delete_overrides_reach_the_run(new_project):
    project = new_project()
    project.run("+model.params.min_samples_leaf=5", "~evaluate.gate.f1_macro", check=True)
    params = project.show(project.runs()[0]["id"])["config"]
    assert params["model"]["params"]["min_samples_leaf"] == 5
    assert "f1_macro" not in params["evaluate"]["gate"]


@pytest.mark.slow
def test_multirun_with_the_joblib_launcher_records_each_job_and_reports_the_best(new_project):
    project = new_project()
    result = project.cli("run", "--multirun", "hydra/launcher=joblib",
                         "model.params.max_depth=2,3,4", check=True)
    runs = project.runs()
    assert len(runs) == 3 and {r["status"] for r in runs} == {"completed"}
    assert "best run:" in result.stdout
    depths = sorted(project.show(r["id"])["config"]["model"]["params"]["max_depth"] for r in runs)
    assert depths == [2, 3, 4]
    # Jobs register without promoting; the best run's version is promoted once, afterwards.
    best_id = next(line.split()[2] for line in result.stdout.splitlines()
                   if line.startswith("best run:"))
    history = json.loads(project.cli("models", "history", "proj", "--json", check=True).stdout)
    assert [h["action"] for h in history] == ["sweep"]
    models = json.loads(project.cli("models", "list", "--json", check=True).stdout)
    assert [m["run_id"] for m in models if "champion" in m["aliases"]] == [best_id]


@pytest.mark.slow
def test_optuna_sweeper_records_each_trial_and_reports_the_best(new_project):
    project = new_project()
    result = project.cli("run", "--multirun", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3",
                         "hydra.sweeper.direction=maximize",
                         "model.params.learning_rate=interval(0.05,0.3)", check=True)
    runs = project.runs()
    assert len(runs) == 3
    best_line = next(line for line in result.stdout.splitlines() if line.startswith("best run:"))
    best_id = best_line.split()[2]
    best = next(r for r in runs if r["id"] == best_id)
    assert best["metrics"]["accuracy"] == max(r["metrics"]["accuracy"] for r in runs)


def test_a_bad_choice_in_a_sweep_stops_it_before_any_job(new_project):
    project = new_project()
    result = project.cli("run", "--multirun", "model=nope,random_forest")
    assert result.returncode == 2
    assert "Available options in 'model'" in result.stderr
    assert project.runs() == []


def test_bash_completion_offers_commands_keys_and_group_choices(new_project):
    project = new_project()
    script = project.cli("completion", "bash", check=True).stdout
    (project.path / "complete.sh").write_text(script)
    probe = ('source complete.sh; compopt() { :; }; for l in "conveyor ru" "conveyor run model=r" '
             '"conveyor run data.t"; do COMP_LINE="$l"; COMP_POINT=${#l}; _conveyor_complete; '
             'echo "${COMPREPLY[*]}"; done')
    env = {**os.environ, "PATH": f"{Path(conveyor_executable()).parent}:{os.environ['PATH']}"}
    lines = subprocess.run(["bash", "-c", probe], cwd=project.path, capture_output=True,
                           text=True, env=env, check=True).stdout.splitlines()
    assert lines[0] == "run runs"
    assert "random_forest" in lines[1].split() and "ridge" in lines[1].split()
    assert "data.target=" in lines[2].split()


@pytest.mark.slow
def test_a_sweep_whose_best_is_worse_than_the_champion_does_not_replace_it(new_project):
    project = new_project()
    project.run(check=True)
    # No gate rules: the weak trials pass them, so only the champion comparison can stop them.
    result = project.cli("run", "--multirun", "model.params.max_iter=1,2", "~evaluate.gate",
                         "~evaluate.slices.gate", check=True)
    assert "does not beat the champion's" in result.stdout
    models = json.loads(project.cli("models", "list", "--json", check=True).stdout)
    assert [m["version"] for m in models if "champion" in m["aliases"]] == [1]


def test_a_hydra_callback_named_exactly_by_a_plugin_is_allowed_a_package_is_not():
    """A plugin's preset may add its own Hydra callback: its exact class path registered through
    `conveyor_target_prefixes` is trusted as one; a package registered there allows estimators,
    never an arbitrary class as a callback."""
    from conveyor.config import check_hydra_callbacks
    from conveyor.errors import ConfigError
    from omegaconf import OmegaConf

    def config(target: str):
        return OmegaConf.create({"hydra": {"callbacks": {"check": {"_target_": target}}}})

    trusted = ["sklearn", "myplugin.sweep.CheckCluster"]
    check_hydra_callbacks(config("myplugin.sweep.CheckCluster"), trusted)
    check_hydra_callbacks(config("hydra.experimental.callbacks.LogJobReturnCallback"), trusted)
    for refused in ("myplugin.sweep.Other", "sklearn.utils.Bunch", "myplugin.sweep"):
        with pytest.raises(ConfigError, match=f"hydra.callbacks.check._target_ '{refused}' is"):
            check_hydra_callbacks(config(refused), trusted)
