"""Bad config and bad usage: one clear message naming the culprit, exit 2, nothing run.

Every case goes through the real console script; "nothing ran" is checked in the store itself.
"""

from __future__ import annotations

import pytest
from _support import assert_usage_error, line_of, local_project, recorded_runs
from conveyor.testing import Project


def assert_nothing_ran(project: Project) -> None:
    assert recorded_runs(project) == []
    assert not (project.path / ".conveyor" / "artifacts").exists()


def test_unknown_key_in_conveyor_yaml_names_file_line_and_nearest_key(new_project):
    project = new_project()
    config = project.path / "conveyor.yaml"
    config.write_text(config.read_text().replace("  source: data/", "  sourse: data/"))
    line = line_of(config, "sourse:")
    message = assert_usage_error(project.run(), "'data.sourse'", f"conveyor.yaml:{line}",
                                 "'data.source'")
    assert "did you mean" in message
    assert_nothing_ran(project)


def test_unknown_key_in_override_names_the_override_and_nearest_key(new_project):
    project = new_project()
    message = assert_usage_error(project.run("data.sourse=x"), "'data.sourse'", "command line",
                                 "data.sourse=x", "'data.source'")
    assert "not in struct" not in message  # Hydra's wording, not ours
    assert_nothing_ran(project)


def test_unknown_key_in_override_of_untyped_section_says_how_to_add_it(new_project):
    project = new_project()
    assert_usage_error(project.run("pipeline.load.needs=[split]"), "'pipeline.load.needs'",
                       "+pipeline.load.needs=[split]")
    assert_nothing_ran(project)


@pytest.mark.parametrize(("override", "key"), [("data.test_size=abc", "data.test_size"),
                                                ("seed=x", "seed")])
def test_wrong_type_names_the_key_the_value_and_where_it_was_set(new_project, override, key):
    project = new_project()
    value = override.split("=", 1)[1]
    assert_usage_error(project.run(override), f"'{key}'", f"'{value}'", "command line")
    assert_nothing_ran(project)


def test_wrong_type_in_conveyor_yaml_names_file_and_line(new_project):
    project = new_project()
    config = project.path / "conveyor.yaml"
    config.write_text(config.read_text().replace("test_size: 0.2", "test_size: lots"))
    assert_usage_error(project.run(), "'data.test_size'",
                       f"conveyor.yaml:{line_of(config, 'test_size: lots')}")
    assert_nothing_ran(project)


def test_out_of_range_test_size_stops_before_anything_runs(new_project):
    project = new_project()
    assert_usage_error(project.run("data.test_size=5"), "data.test_size=5.0", "between 0 and 1")
    assert_nothing_ran(project)


def test_yaml_syntax_error_names_the_file_and_line(new_project):
    project = new_project()
    config = project.path / "conveyor.yaml"
    config.write_text(config.read_text().replace("  target: churned", "  target: churned\n"
                                                                      "   oops: [1, 2"))
    assert_usage_error(project.run(), f"conveyor.yaml:{line_of(config, 'oops:')}: invalid YAML")
    assert_nothing_ran(project)


@pytest.mark.parametrize("flags", [[], ["--cfg", "job"], ["--multirun"]])
def test_an_override_hydra_cannot_parse_is_a_usage_error(new_project, flags):
    project = new_project()
    assert_usage_error(project.cli("run", *flags, "model.params.max_iter=["),
                       "cannot parse the command-line override", "key=value")
    assert_nothing_ran(project)


def test_unknown_config_group_choice_lists_the_available_choices(new_project):
    project = new_project()
    message = assert_usage_error(project.run("model=nope"), "model/nope", "random_forest",
                                 "logistic_regression", "hist_gradient_boosting")
    assert "pip install conveyor-sklearn" not in message  # it is installed
    assert_nothing_ran(project)


def test_missing_data_file_is_named(new_project):
    project = new_project()
    assert_usage_error(project.run("data.source=missing.csv"), "missing.csv", "data.source")
    assert_nothing_ran(project)


def test_unknown_stage_type_lists_the_available_ones(new_project):
    project = new_project()
    message = assert_usage_error(project.run("+pipeline.extra={uses: foo.bar}"), "'foo.bar'",
                                 "pipeline.extra.uses", "available stage types")
    for stage_type in ("sklearn.load", "sklearn.train", "sklearn.evaluate", "conveyor.register"):
        assert stage_type in message
    assert_nothing_ran(project)


def test_stage_needing_a_missing_stage_is_named(new_project):
    project = new_project()
    assert_usage_error(project.run("+pipeline.extra={uses: sklearn.load, needs: [trian]}"),
                       "'extra'", "'trian'", "pipeline.extra.needs", "did you mean 'train'")
    assert_nothing_ran(project)


def test_cycle_in_needs_is_shown(tmp_path):
    project = local_project(tmp_path / "p", pipeline={
        "a": {"uses": "faults.produce", "needs": ["c"]},
        "b": {"uses": "faults.produce", "needs": ["a"]},
        "c": {"uses": "faults.produce", "needs": ["b"]}})
    message = assert_usage_error(project.run(), "cycle")
    assert "a -> c -> b -> a" in message
    assert_nothing_ran(project)


def test_estimator_target_that_cannot_be_imported(new_project):
    project = new_project()
    assert_usage_error(project.run("model._target_=sklearn.ensemble.NoSuchModel"),
                       "sklearn.ensemble.NoSuchModel", "'NoSuchModel'")
    assert_nothing_ran(project)


def test_estimator_target_not_set(new_project):
    project = new_project()
    assert_usage_error(project.run("model._target_=null"), "model._target_ is not set")
    assert_nothing_ran(project)


def test_unknown_metric_name_suggests_the_nearest(new_project):
    project = new_project()
    assert_usage_error(project.run("evaluate.metrics=[acuracy]"), "'acuracy'",
                       "did you mean 'accuracy'")
    assert_nothing_ran(project)


@pytest.mark.parametrize("command", [["run"], ["plan"], ["runs", "list"]])
def test_outside_a_project_folder(tmp_path, command):
    outside = Project(tmp_path)
    assert_usage_error(outside.cli(*command), "no conveyor.yaml", str(tmp_path), "conveyor init")
    assert not (tmp_path / ".conveyor").exists()


def test_unknown_global_option(new_project):
    project = new_project()
    assert_usage_error(project.cli("--bogus", "run"), "--bogus")
    assert_nothing_ran(project)


def test_unknown_run_option(new_project):
    project = new_project()
    assert_usage_error(project.cli("run", "--bogus"), "--bogus", "conveyor run --help")
    assert_nothing_ran(project)


def test_unknown_subcommand_option(new_project):
    project = new_project()
    result = project.cli("runs", "list", "--bogus")
    assert result.returncode == 2, result.stderr
    assert "--bogus" in result.stderr and "Traceback" not in result.stderr


def test_runs_show_of_unknown_run(new_project):
    project = new_project()
    assert_usage_error(project.cli("runs", "show", "NOPE"), "'NOPE'", "conveyor runs list")


def test_debug_shows_the_traceback_of_a_config_error(new_project):
    project = new_project()
    result = project.cli("--debug", "run", "data.sourse=x")
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "'data.sourse'" in result.stderr
    assert_nothing_ran(project)


def test_a_typed_plugin_key_missing_from_the_yaml_is_set_without_plus(conveyor_project):
    """dvc: a section conveyor-dvc types, absent from this project's YAML. Its keys exist (with
    their defaults), so `key=value` sets one, as for any other key; a misspelt one is still an
    unknown key with the nearest valid one."""
    project = conveyor_project("defaults: [conveyor/defaults, _self_]\nproject: x\n"
                               "pipeline: {r: {uses: conveyor.register}}\n")
    shown = project.cli("run", "--cfg", "job", "dvc.lock_timeout=1",
                        "serve.batching.max_batch_size=8")  # Hydra's runtime
    assert shown.returncode == 0, shown.stderr
    assert "lock_timeout: 1" in shown.stdout and "max_batch_size: 8" in shown.stdout
    plan = project.cli("plan", "--json", "dvc.lock_timeout=1")  # Conveyor's own composition
    assert plan.returncode == 0, plan.stderr
    sweep = conveyor_project(
        "defaults: [conveyor/defaults, _self_]\nproject: y\nplugins: {local: [noop]}\n"
        "pipeline: {r: {uses: t.noop}}\n",
        files={"noop.py": "import conveyor\n\n\n@conveyor.hookimpl\n"
                          "def conveyor_stage_types(register):\n"
                          "    register(conveyor.StageType('t.noop', lambda ctx: {'out': 1}))\n"})
    swept = sweep.cli("run", "--multirun", "dvc.lock_timeout=1,2")
    assert swept.returncode == 0, swept.stderr
    summary = swept.stdout.split("sweep: 2 jobs")[1]  # as written on the command line
    assert "dvc.lock_timeout=2" in summary and "++" not in summary
    assert sorted(sweep.show(r["id"])["config"]["dvc"]["lock_timeout"] for r in sweep.runs()) \
        == [1.0, 2.0]
    typo = project.run("dvc.lock_timout=1")
    assert typo.returncode == 2
    assert "unknown config key 'dvc.lock_timout'" in typo.stderr
    assert "did you mean 'dvc.lock_timeout'" in typo.stderr
