"""Hydra's composition is cached; the cache must never serve a stale config."""

from __future__ import annotations

import json


def _train_settings(project, *overrides):
    config = project.show(project.runs()[0]["id"])["config"]
    return config["model"]


def test_editing_conveyor_yaml_is_seen_at_once(new_project):
    project = new_project()
    project.run(check=True)
    assert list((project.path / ".conveyor" / "compose").glob("*.json"))
    path = project.path / "conveyor.yaml"
    path.write_text(path.read_text().replace("test_size: 0.2", "test_size: 0.3"))
    plan = json.loads(project.cli("plan", "--json", check=True).stdout)
    split = next(row for row in plan if row["stage"] == "split")
    assert split["action"] == "run" and "test_size: 0.2 → 0.3" in split["reason"]


def test_a_new_group_file_in_the_project_shadows_the_plugins_at_once(new_project):
    project = new_project()
    project.run(check=True)
    (project.path / "model").mkdir()
    (project.path / "model" / "hist_gradient_boosting.yaml").write_text(
        "_target_: sklearn.ensemble.HistGradientBoostingClassifier\nparams: {max_iter: 7}\n")
    project.run("--quiet")
    assert _train_settings(project)["params"] == {"max_iter": 7}


def test_env_interpolations_are_resolved_on_every_run(new_project):
    import os
    import subprocess

    from conveyor.testing import conveyor_executable

    project = new_project()
    path = project.path / "conveyor.yaml"
    path.write_text(path.read_text() + "seed: ${oc.env:CONVEYOR_TEST_SEED,0}\n")
    hashes = []
    for seed in ("3", "4"):
        done = subprocess.run([conveyor_executable(), "run", "--quiet"], cwd=project.path,
                              capture_output=True, text=True,
                              env={**os.environ, "CONVEYOR_TEST_SEED": seed})
        assert done.returncode in (0, 1), done.stderr  # 1: the gate may reject the new model
        shown = project.show(project.runs()[0]["id"])
        # An ${oc.env:...} value is recorded as its interpolation, never in clear
        # (conveyor.secrets); the config hash covers the value each run resolved.
        assert shown["config"]["seed"] == "${oc.env:CONVEYOR_TEST_SEED,0}"
        hashes.append(shown["config_hash"])
    assert hashes[0] != hashes[1]


def test_configs_using_hydra_only_resolvers_are_not_cached(new_project):
    project = new_project()
    path = project.path / "conveyor.yaml"
    path.write_text(path.read_text() + "tag: ${now:%Y}\n")
    result = project.run()
    # `tag` is not a known key: the point is that composing it works, and nothing is cached.
    assert "unknown config key 'tag'" in result.stderr
    assert not list((project.path / ".conveyor" / "compose").glob("*.json"))
