"""Broken plugins stop startup with exit 2 and a message naming the plugin (for an installed one:
its distribution and version); `plugins.disable` switches an installed plugin off."""

from __future__ import annotations

import json

import conveyor
import yaml
from _support import (
    assert_run_failed,
    assert_usage_error,
    fake_distribution,
    local_project,
    recorded_runs,
)

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


def test_entry_point_plugin_with_an_argument_the_hook_does_not_pass(tmp_path):
    project = local_project(tmp_path / "p")
    env = fake_distribution(tmp_path / "site", "conveyor-extra-arg", "conveyor_extra_arg", """
        import conveyor


        @conveyor.hookimpl
        def conveyor_before_run(run, config, verbosity):
            pass
    """, version="1.4")
    assert_usage_error(project.cli("run", env=env), "'conveyor-extra-arg' (conveyor-extra-arg 1.4)",
                       "conveyor_before_run takes verbosity", "the hook passes: run, config")
    assert recorded_runs(project) == []


def test_entry_point_plugin_raising_inside_a_hook_is_named_with_distribution_and_version(tmp_path):
    project = local_project(tmp_path / "p")
    env = fake_distribution(tmp_path / "site", "conveyor-raiser", "conveyor_raiser", """
        import conveyor


        @conveyor.hookimpl
        def conveyor_before_run(run):
            raise ValueError("tracker unreachable")
    """, version="1.2.0")
    assert_run_failed(project.cli("run", env=env), "'conveyor-raiser' (conveyor-raiser 1.2.0)",
                      "raised in conveyor_before_run", "ValueError: tracker unreachable")
    assert [run["status"] for run in recorded_runs(project)] == ["failed"]


IMPORT_WOULD_FAIL = """
    raise RuntimeError("imported although Conveyor refuses it")
"""


def test_plugin_made_for_another_conveyor_version_is_refused_before_it_is_imported(tmp_path):
    project = local_project(tmp_path / "p")
    env = fake_distribution(tmp_path / "site", "conveyor-future", "conveyor_future",
                            IMPORT_WOULD_FAIL, version="3.0",
                            requires=("pandas>=2", "conveyor>=0.2,<0.3"))
    for command in (["run"], ["plugins", "list"]):
        message = assert_usage_error(
            project.cli(*command, env=env), "'conveyor-future' (conveyor-future 3.0)",
            "supports Conveyor <0.3,>=0.2", f"this is Conveyor {conveyor.__version__}",
            "plugins.disable=[conveyor-future]")
        assert "imported although" not in message
    assert project.cli("run", "plugins.disable=[conveyor-future]", env=env).returncode == 0


def test_plugin_declaring_this_conveyor_version_loads(tmp_path):
    project = local_project(tmp_path / "p")
    # The extra's requirement on a future Conveyor is optional and ignored.
    env = fake_distribution(tmp_path / "site", "conveyor-today", "conveyor_today", """
        import conveyor


        @conveyor.hookimpl
        def conveyor_before_run(run):
            (run.project_dir / "today.marker").write_text("ran")
    """, requires=("conveyor>=0.1,<1", 'conveyor>=9; extra == "future"'))
    result = project.cli("run", env=env)
    assert result.returncode == 0, result.stderr
    assert (project.path / "today.marker").read_text() == "ran"


def test_plugin_implementing_older_hook_signatures_with_fewer_arguments_still_works(tmp_path):
    """Hookspecs gain arguments without breaking plugins: an implementation takes any subset."""
    project = local_project(tmp_path / "p", local=["faultstages", "older"], modules={"older": """
        import conveyor

        seen = []


        @conveyor.hookimpl
        def conveyor_before_stage(stage):
            seen.append(stage.name)


        @conveyor.hookimpl(wrapper=True)
        def conveyor_run_stage(stage):
            outputs = yield
            seen.append(f"ran {stage.name}")
            return outputs


        @conveyor.hookimpl
        def conveyor_after_run(status):
            from pathlib import Path

            Path("older.marker").write_text(status + ": " + ", ".join(seen))
    """})
    result = project.run()
    assert result.returncode == 0, result.stderr
    assert (project.path / "older.marker").read_text() == \
        "completed: first, ran first, second, ran second"


def test_a_wrapper_works_on_every_hook_and_its_own_error_names_the_plugin(tmp_path):
    # One dispatch path (pluggy's hook callers): a wrapper on a broadcast hook runs around the
    # other implementations, for every stage.
    project = local_project(tmp_path / "p", local=["faultstages", "wrapping"], modules={
        "wrapping": """
            from pathlib import Path

            import conveyor


            @conveyor.hookimpl(wrapper=True)
            def conveyor_after_stage(run, stage):
                result = yield
                with open(Path(run.project_dir) / "wrapped.marker", "a") as out:
                    out.write(stage.name + ",")
                return result
        """})
    result = project.run()
    assert result.returncode == 0, result.stderr
    assert (project.path / "wrapped.marker").read_text() == "first,second,"

    failing = local_project(tmp_path / "q", local=["faultstages", "wrapfail"], modules={
        "wrapfail": """
            import conveyor


            @conveyor.hookimpl(wrapper=True)
            def conveyor_before_stage(stage):
                yield
                raise RuntimeError("wrapper broke")
        """})
    assert_run_failed(failing.run(), "'wrapfail'", "conveyor_before_stage", "wrapper broke")


def test_an_old_style_hookwrapper_outside_run_stage_is_refused(tmp_path):
    project = local_project(tmp_path / "p", local=["faultstages", "wrapping"], modules={
        "wrapping": """
            import conveyor


            @conveyor.hookimpl(hookwrapper=True)
            def conveyor_after_stage(stage):
                yield
        """})
    assert_usage_error(project.run(), "'wrapping'", "conveyor_after_stage as an old-style "
                       "hookwrapper", "wrapper=True")
    assert recorded_runs(project) == []


def test_plugin_command_named_like_a_core_command_is_refused(tmp_path):
    project = local_project(tmp_path / "p", local=["faultstages", "clash"], modules={"clash": """
        import conveyor


        @conveyor.hookimpl
        def conveyor_cli_commands(register):
            register(conveyor.CliCommand("runs", "mine", configure=print, run=print))
    """})
    assert_usage_error(project.cli("runs", "list"), "'clash'", "registers the command 'runs'",
                       "Conveyor's own")
