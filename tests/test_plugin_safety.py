"""Broken plugins stop startup with exit 2 and a message naming the plugin (for an installed one:
its distribution and version); `plugins.disable` switches an installed plugin off."""

from __future__ import annotations

import json

import yaml
from _support import assert_usage_error, fake_distribution, local_project, recorded_runs

BROKEN_AT_IMPORT = """
    import conveyor

    raise RuntimeError("broken plugin exploded at import")
"""

MISSPELLED_HOOK = """
    import conveyor


    @conveyor.hookimpl
    def conveyor_befor_run(run, config):
        pass
"""


def test_entry_point_plugin_failing_to_import_is_named_with_distribution_and_version(tmp_path):
    project = local_project(tmp_path / "p")
    env = fake_distribution(tmp_path / "site", "conveyor-broken", "conveyor_broken",
                            BROKEN_AT_IMPORT, version="0.3.1")
    for command in (["run"], ["runs", "list"]):
        assert_usage_error(project.cli(*command, env=env), "'conveyor-broken'",
                           "(conveyor-broken 0.3.1)", "failed to import",
                           "broken plugin exploded at import",
                           "plugins.disable=[conveyor-broken]")
    assert recorded_runs(project) == []


def test_disabling_the_broken_entry_point_plugin_lets_the_run_work(tmp_path):
    project = local_project(tmp_path / "p")
    env = fake_distribution(tmp_path / "site", "conveyor-broken", "conveyor_broken",
                            BROKEN_AT_IMPORT)
    on_command_line = project.cli("run", "plugins.disable=[conveyor-broken]", env=env)
    assert on_command_line.returncode == 0, on_command_line.stderr
    config = yaml.safe_load((project.path / "conveyor.yaml").read_text())
    config["plugins"]["disable"] = ["conveyor-broken"]
    (project.path / "conveyor.yaml").write_text(yaml.safe_dump(config))
    in_the_file = project.cli("run", "--force", env=env)
    assert in_the_file.returncode == 0, in_the_file.stderr
    listing = project.cli("runs", "list", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    assert [r["status"] for r in json.loads(listing.stdout)] == ["completed", "completed"]


def test_entry_point_plugin_with_a_misspelled_hook(tmp_path):
    project = local_project(tmp_path / "p")
    env = fake_distribution(tmp_path / "site", "conveyor-typo", "conveyor_typo", MISSPELLED_HOOK,
                            version="2.0")
    assert_usage_error(project.cli("run", env=env),
                       "'conveyor-typo' (conveyor-typo 2.0)", "conveyor_befor_run",
                       "did you mean 'conveyor_before_run'")
    assert recorded_runs(project) == []


def test_local_plugin_with_a_misspelled_hook(tmp_path):
    project = local_project(tmp_path / "p", local=["faultstages", "typo"],
                            modules={"typo": MISSPELLED_HOOK})
    assert_usage_error(project.run(), "'typo'", "local module", "conveyor_befor_run",
                       "did you mean 'conveyor_before_run'")
    assert recorded_runs(project) == []


def test_local_plugin_module_raising_on_import(tmp_path):
    project = local_project(tmp_path / "p", local=["faultstages", "broken"],
                            modules={"broken": BROKEN_AT_IMPORT})
    assert_usage_error(project.run(), "'broken'", "plugins.local", "failed to import",
                       "RuntimeError: broken plugin exploded at import")
    assert recorded_runs(project) == []


def test_local_plugin_module_that_does_not_exist(tmp_path):
    project = local_project(tmp_path / "p", local=["faultstages", "nosuchmodule"])
    assert_usage_error(project.run(), "'nosuchmodule'", "nosuchmodule.py")
    assert recorded_runs(project) == []


def test_plugin_hook_raising_while_registering_contributions_is_named(tmp_path):
    project = local_project(tmp_path / "p", local=["faultstages", "badtypes"], modules={
        "badtypes": """
            import conveyor


            @conveyor.hookimpl
            def conveyor_stage_types(register):
                raise KeyError("no stage types today")
        """})
    assert_usage_error(project.run(), "'badtypes'", "conveyor_stage_types", "no stage types today")
    assert recorded_runs(project) == []
