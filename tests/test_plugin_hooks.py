"""The typed, public hook contract: one dispatch path through pluggy's hook callers, the public
argument types (`conveyor.Stage`, `RunInfo`, `Host`, `PluginInfo`), result rules, stage types
held to their plugin's prefix and their declared outputs."""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
from pathlib import Path

import conveyor
import pytest
from _support import (
    assert_run_failed,
    assert_usage_error,
    fake_distribution,
    local_project,
    recorded_runs,
)
from conveyor import hookspecs
from conveyor.markers import PROJECT_NAME
from conveyor.plugins import PluginHost

REPO = Path(__file__).resolve().parents[1]
SPECS = {name for name, fn in vars(hookspecs).items()
         if inspect.isfunction(fn) and hasattr(fn, f"{PROJECT_NAME}_spec")}


# --- every call site names a hook that exists -----------------------------------------------


def _hook_names_called(path: Path) -> list[tuple[int, str]]:
    """`x.hook.conveyor_NAME(...)` attribute calls and `call_each("conveyor_NAME", ...)` /
    `call_first(...)` string calls in one source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr.startswith("conveyor_") and \
                isinstance(node.value, ast.Attribute) and node.value.attr == "hook":
            found.append((node.lineno, node.attr))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in {"call_each", "call_first"} and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            found.append((node.lineno, node.args[0].value))
    return found


def test_every_hook_name_called_in_the_framework_and_plugins_exists_in_hookspecs():
    sources = [*(REPO / "framework").rglob("*.py"), *(REPO / "plugins").glob("*/src/**/*.py")]
    calls = [(path, line, name) for path in sources for line, name in _hook_names_called(path)]
    assert len(calls) >= 15  # the scan finds the call sites (runner, validation, alerts, ...)
    unknown = [f"{path.relative_to(REPO)}:{line}: {name}" for path, line, name in calls
               if name not in SPECS]
    assert unknown == []


def test_the_static_scan_catches_a_misspelt_call_site(tmp_path):
    source = tmp_path / "caller.py"
    source.write_text("def f(host):\n    host.hook.conveyor_befor_run(run=None, config={})\n"
                      "    host.call_first('conveyor_validate_frme', frame=None)\n")
    names = [name for _, name in _hook_names_called(source)]
    assert sorted(names) == ["conveyor_befor_run", "conveyor_validate_frme"]
    assert not set(names) & SPECS


# --- result rules ------------------------------------------------------------------------------


def test_every_hookspec_states_its_result_rule_in_one_line_matching_how_it_is_called():
    for name in SPECS:
        fn = getattr(hookspecs, name)
        rules = re.findall(r"^\s*((?:Result|Cleanup): .+)$", fn.__doc__ or "", re.MULTILINE)
        assert len(rules) == 1, f"{name}: {rules}"
        rule = rules[0]
        options = getattr(fn, f"{PROJECT_NAME}_spec")
        if options.get("firstresult"):
            assert rule == "Result: first non-None answer wins.", name
        elif name in hookspecs.CLEANUP_HOOKS:
            assert rule == "Cleanup: every implementation runs even if one raises.", name
        elif "register" in inspect.signature(fn).parameters:
            assert rule == "Result: none; call register(...) for each contribution.", name
        else:
            assert rule == "Result: ignored; every implementation runs.", name
    assert hookspecs.CLEANUP_HOOKS <= SPECS and hookspecs.UNGUARDED_HOOKS <= SPECS


# --- the public types ---------------------------------------------------------------------------


def test_the_hook_arguments_are_public_types():
    for name in ("Stage", "RunInfo", "StageContext", "Alert", "Host", "PluginInfo"):
        assert name in conveyor.__all__
    hints = {
        "conveyor_before_stage": {"run": "RunInfo", "stage": "Stage"},
        "conveyor_run_stage": {"run": "RunInfo", "stage": "Stage", "context": "StageContext"},
        "conveyor_after_run": {"run": "RunInfo"},
        "conveyor_alert": {"alert": "Alert"},
        "conveyor_monitor_batch": {"host": "Host", "session": "Session"},
    }
    for hook, expected in hints.items():
        parameters = inspect.signature(getattr(hookspecs, hook)).parameters
        for argument, annotation in expected.items():
            assert parameters[argument].annotation == annotation, (hook, argument)
    untyped = [f"{name}({p.name})" for name in SPECS
               for p in inspect.signature(getattr(hookspecs, name)).parameters.values()
               if p.annotation in ("Any", inspect.Parameter.empty)
               and p.name in {"run", "stage", "context", "alert", "host", "session"}]
    assert untyped == []


def test_the_plugin_host_is_a_public_host_with_read_only_contributions():
    host = PluginHost().load()
    assert isinstance(host, conveyor.Host)
    assert "conveyor.register" in host.stage_types
    assert host.codecs and host.codecs[0].priority >= host.codecs[-1].priority
    core = host.provider("stage type", "conveyor.register")
    assert isinstance(core, conveyor.PluginInfo) and core.origin == "core"
    assert host.provider("stage type", "no.such") is None
    assert core in host.plugins and host.plugins[0] == core
    assert host.describe("conveyor.core").startswith("'conveyor.core' (conveyor ")
    with pytest.raises(TypeError):
        host.stage_types["x.y"] = None  # type: ignore[index]
    with pytest.raises(ValueError, match="unknown kind"):
        host.provider("stages", "conveyor.register")


# --- one dispatch path through pluggy -------------------------------------------------------

TRACED_STAGES = """
    import conveyor

    SEEN = []


    def _make(ctx):
        return {"value": {"n": 1}}


    @conveyor.hookimpl
    def conveyor_stage_types(register):
        register(conveyor.StageType("traced.make", _make, outputs={"value": "a number"}))


    @conveyor.hookimpl
    def conveyor_before_stage(run, stage):
        SEEN.append((type(run).__name__, type(stage).__name__, stage.name, stage.uses,
                     stage.position, stage.type.name))
"""


def test_pluggy_hookcall_monitoring_sees_every_lifecycle_call_of_a_real_run(tmp_path,
                                                                          monkeypatch):
    from conveyor import api

    project = local_project(tmp_path / "p", local=["tracedstages"],
                            modules={"tracedstages": TRACED_STAGES},
                            pipeline={"make": {"uses": "traced.make"}})
    calls: list[str] = []
    original = PluginHost.__init__

    def monitored(self: PluginHost) -> None:
        original(self)
        self.pm.add_hookcall_monitoring(lambda name, impls, kwargs: calls.append(name),
                                        lambda outcome, name, impls, kwargs: None)

    monkeypatch.setattr(PluginHost, "__init__", monitored)
    try:
        result = api.run(project.path, quiet=True)
    finally:
        sys.path[:] = [p for p in sys.path if p != str(project.path)]
    assert result.status == "completed"
    for hook in ("conveyor_stage_types", "conveyor_file_fingerprint", "conveyor_before_run",
                 "conveyor_before_stage", "conveyor_run_stage", "conveyor_after_stage",
                 "conveyor_finish_run", "conveyor_after_run"):
        if hook == "conveyor_file_fingerprint":
            continue  # no stage of this pipeline reads a data file
        assert hook in calls, f"{hook} was not seen by pluggy's monitoring: {calls}"
    seen = sys.modules["tracedstages"].SEEN
    assert seen == [("RunInfo", "Stage", "make", "traced.make", 0, "traced.make")]


def test_first_result_answer_names_its_plugin_and_cleanup_hooks_collect_errors(tmp_path):
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "answer_a.py").write_text(textwrap.dedent("""
        import conveyor

        @conveyor.hookimpl
        def conveyor_file_fingerprint(path):
            return "md5:" + "0" * 32
    """))
    (folder / "answer_none.py").write_text(textwrap.dedent("""
        import conveyor

        @conveyor.hookimpl
        def conveyor_file_fingerprint(path):
            return None

        @conveyor.hookimpl
        def conveyor_after_run(run, status):
            raise RuntimeError("sink down")
    """))
    (folder / "sink_ok.py").write_text(textwrap.dedent("""
        import conveyor

        CALLS = []

        @conveyor.hookimpl
        def conveyor_after_run(run, status):
            CALLS.append(status)
    """))
    try:
        from importlib import metadata

        installed = [ep.name for ep in metadata.entry_points(group="conveyor")]
        host = PluginHost().load(disable=installed, project_dir=folder,
                                 local_modules=["answer_a", "answer_none", "sink_ok"])
        answer, plugin = host.call_first("conveyor_file_fingerprint", path=folder,
                                         project_dir=folder, verify=False)
        assert (answer, plugin) == ("md5:" + "0" * 32, "answer_a")
        # The same answer through the public relay.
        assert host.hook.conveyor_file_fingerprint(path=folder, project_dir=folder,
                                                   verify=False) == answer
        errors = host.call_each("conveyor_after_run", run=None, status="completed")
        assert [str(e.message) for e in errors] == [
            "plugin 'answer_none' (local module of the project, plugins.local) raised in "
            "conveyor_after_run: RuntimeError: sink down"]
        assert sys.modules["sink_ok"].CALLS == ["completed"]
        # Called through the relay with no collector, the error is a warning, never raised.
        host.hook.conveyor_after_run(run=None, status="failed")
        assert sys.modules["sink_ok"].CALLS == ["completed", "failed"]
    finally:
        sys.path[:] = [p for p in sys.path if p != str(folder)]
        for name in ("answer_a", "answer_none", "sink_ok"):
            sys.modules.pop(name, None)


def test_a_plain_error_in_a_broadcast_hook_names_the_plugin_and_the_hook(tmp_path):
    project = local_project(tmp_path / "p", local=["faultstages", "grumpy"], modules={
        "grumpy": """
            import conveyor


            @conveyor.hookimpl
            def conveyor_before_stage(stage):
                raise KeyError("no " + stage.name)
        """})
    assert_run_failed(project.run(), "'grumpy'", "raised in conveyor_before_stage",
                      "KeyError", "no first")


# --- stage types: prefix and declared outputs ---------------------------------------------------


def test_every_built_in_stage_type_is_under_its_plugin_prefix_and_declares_its_outputs():
    from conveyor.plugins import stage_type_prefix

    host = PluginHost().load()
    for name, stage_type in host.stage_types.items():
        info = host.provider("stage type", name)
        assert name.startswith(stage_type_prefix(info) + "."), name
        if info.distribution in {"conveyor", "conveyor-sklearn"}:
            assert stage_type.outputs, f"{name} declares no outputs"


def test_an_installed_plugin_registering_a_stage_type_outside_its_prefix_is_refused(tmp_path):
    project = local_project(tmp_path / "p")
    env = fake_distribution(tmp_path / "site", "thief", "conveyor_thief", """
        import conveyor


        @conveyor.hookimpl
        def conveyor_stage_types(register):
            register(conveyor.StageType("sklearn.train2", lambda ctx: {}))
    """)
    assert_usage_error(project.cli("run", env=env), "'thief' (thief 0.1)",
                       "stage type 'sklearn.train2'", "not under its prefix 'thief.'",
                       "name it 'thief.train2'")
    assert recorded_runs(project) == []
    fine = fake_distribution(tmp_path / "site2", "honest", "conveyor_honest", """
        import conveyor


        @conveyor.hookimpl
        def conveyor_stage_types(register):
            register(conveyor.StageType("honest.make", lambda ctx: {"value": 1}))
    """)
    ok = local_project(tmp_path / "q", pipeline={"make": {"uses": "honest.make"}}, local=[])
    done = ok.cli("run", env=fine)
    assert done.returncode == 0, done.stderr


def test_a_stage_returning_an_output_its_type_does_not_declare_fails_naming_the_plugin(tmp_path):
    project = local_project(tmp_path / "p", local=["declared"], modules={"declared": """
        import conveyor


        @conveyor.hookimpl
        def conveyor_stage_types(register):
            register(conveyor.StageType("declared.make", lambda ctx: {"value": 1, "extra": 2},
                                        outputs={"value": "a number"}))
    """}, pipeline={"make": {"uses": "declared.make"}})
    assert_run_failed(project.run(), "stage 'make'", "output 'extra'",
                      "'declared' (local module", "it declares: value")


def test_a_wrapper_on_an_extension_hook_registers_in_its_own_name(tmp_path):
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "ext_plain.py").write_text(textwrap.dedent("""
        import conveyor

        @conveyor.hookimpl
        def conveyor_stage_types(register):
            register(conveyor.StageType("ext_plain.make", lambda ctx: {}))
    """))
    (folder / "ext_wrap.py").write_text(textwrap.dedent("""
        import conveyor

        SEEN = []

        @conveyor.hookimpl(wrapper=True)
        def conveyor_stage_types(register):
            register(conveyor.StageType("ext_wrap.before", lambda ctx: {}))
            result = yield
            SEEN.append("after")
            return result
    """))
    try:
        host = PluginHost().load(local_modules=["ext_plain", "ext_wrap"], project_dir=folder)
        assert host.provider("stage type", "ext_plain.make").name == "ext_plain"
        assert host.provider("stage type", "ext_wrap.before").name == "ext_wrap"
        assert sys.modules["ext_wrap"].SEEN == ["after"]
    finally:
        sys.path[:] = [p for p in sys.path if p != str(folder)]
        for name in ("ext_plain", "ext_wrap"):
            sys.modules.pop(name, None)
