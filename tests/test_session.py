"""`conveyor.Session`: one plugin host, config and store per invocation, nothing left behind.

Commands run in-process here (`conveyor.cli.run_cli`), so that the plugin hosts they build can
be counted and the process's environment and import path inspected after them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from _support import local_project
from conveyor import Session, api
from conveyor.cli import run_cli
from conveyor.plugins import PluginHost


@pytest.fixture(autouse=True)
def _own_logging() -> Iterator[None]:
    """Commands run in-process here configure logging as they would in their own process
    (DVC binds its handlers to the stderr pytest captures): put every logger back afterwards,
    so later tests in this worker do not write to a closed capture."""
    manager = logging.Logger.manager
    loggers = [logging.getLogger(), *(v for v in manager.loggerDict.values()
                                      if isinstance(v, logging.Logger))]
    saved = {id(lg): (lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers}
    yield
    for logger in [logging.getLogger(), *(v for v in manager.loggerDict.values()
                                          if isinstance(v, logging.Logger))]:
        if id(logger) in saved:
            _, handlers, level, propagate = saved[id(logger)]
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        else:
            logger.handlers.clear()


@pytest.fixture
def host_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many plugin hosts were built since the test started."""
    built = [0]
    original = PluginHost.__init__

    def counting(self: PluginHost) -> None:
        built[0] += 1
        original(self)

    monkeypatch.setattr(PluginHost, "__init__", counting)
    return built


def _cli(project: Path, *args: str) -> int:
    return run_cli(["-C", str(project), *args])


def test_every_command_builds_exactly_one_plugin_host(new_project, host_count, capsys):
    project = new_project("classification")
    data = str(project.path / "data" / "customers.csv")
    commands = [
        ("run",),
        ("run", "--multirun", "seed=1,2"),
        ("plan",),
        ("predict", "--data", data, "-o", str(project.path / "scored.parquet")),
        ("monitor", "--data", data),
        ("retrain",),
        ("runs", "list"),
        ("models", "list"),
        ("--help",),
    ]
    for command in commands:
        host_count[0] = 0
        code = _cli(project.path, *command)
        out = capsys.readouterr()
        assert code in (0, 1), f"{command}: {out.err}"
        assert host_count[0] == 1, f"conveyor {' '.join(command)} built {host_count[0]} hosts"


def test_api_calls_given_a_session_use_its_host(new_project, host_count):
    project = new_project("classification")
    with Session(project.path) as session:
        result = api.run(session)
        api.get_run(session, result.run_id)
        api.load_model(session)
        api.load_output(session, result.run_id, "test")
        api.model_contract(session)
        api.load_config(session)
    assert host_count[0] == 1


def test_nothing_is_left_in_the_environment_or_the_import_path(tmp_path, capsys):
    # scikit-learn and threadpoolctl set KMP_DUPLICATE_LIB_OK when first imported: theirs, not
    # Conveyor's, and in whichever test imports them first.
    import sklearn  # noqa: F401
    import threadpoolctl  # noqa: F401

    project = local_project(tmp_path / "p")
    environ, path = dict(os.environ), list(sys.path)
    assert _cli(project.path, "run", "--cfg", "job") == 0
    assert _cli(project.path, "run", "--multirun", "seed=1,2") == 0
    result = api.run(project.path)
    capsys.readouterr()
    assert dict(os.environ) == environ
    assert sys.path == path
    # The bug this replaced: a later api.run recorded the invocation of an earlier --cfg.
    from conveyor.store import open_store

    store = open_store(project.path)
    try:
        assert store.runs.get(result.run_id).invocation is None
    finally:
        store.close()


def test_a_config_group_that_switches_a_plugin_off_is_honoured_by_run_and_reproduce(
        new_project, capsys):
    """`+extra=nopandera` (a config group holding `plugins: {disable: [pandera]}`) ran with
    Pandera from the command line and without it when reproduced: now the composed config
    decides, for both, and the run records which plugins it ran with."""
    project = new_project("classification")
    group = project.path / "extra"
    group.mkdir()
    (group / "nopandera.yaml").write_text(
        "# @package _global_\nplugins:\n  disable: [pandera]\ndata:\n  schema: null\n")
    assert _cli(project.path, "run", "+extra=nopandera") == 0, capsys.readouterr().err
    record = api.get_run(project.path, project.runs()[0]["id"])
    assert "pandera" not in record.plugins and "sklearn" in record.plugins
    assert record.plugins["sklearn"]["distribution"] == "conveyor-sklearn"
    with Session(project.path) as session:
        config = session.check(record.config)
        assert "pandera" not in session.host.info and config.get("data.schema") is None
    # And a plain run of the same project loads it again.
    assert _cli(project.path, "run") in (0, 1)
    assert "pandera" in api.get_run(project.path, project.runs()[0]["id"]).plugins


def test_an_interpolation_into_a_missing_plugins_section_names_the_plugin(new_project):
    project = new_project("classification")
    config_file = project.path / "conveyor.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["env"] = {"n_jobs": 1, "note": "${monitor.reports}"}
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    result = project.run("plugins.disable=[monitor]")
    assert result.returncode == 2
    assert "env.note" in result.stderr
    assert "plugin 'monitor' (conveyor-monitor), which plugins.disable switches off" \
        in result.stderr


def test_plugin_commands_take_config_overrides(trained_project, cli):
    """`conveyor monitor` took no overrides while `run` did: every command takes them now, as
    its session's (here a batch too small for the default monitor.min_rows)."""
    project = trained_project("classification")
    data = project.path / "data" / "customers.csv"
    small = project.path / "small.csv"
    small.write_text("".join(data.read_text().splitlines(keepends=True)[:151]))
    plain = cli("monitor", "--data", str(small), "--json", cwd=project.path)
    assert '"status": "insufficient"' in plain.stdout, plain.stderr
    lowered = cli("monitor", "--data", str(small), "--json", "monitor.min_rows=50",
                  cwd=project.path)
    assert '"status": "insufficient"' not in lowered.stdout, lowered.stderr
    bad = cli("monitor", "--data", str(small), "monitor.min_rowz=50", cwd=project.path)
    assert bad.returncode == 2 and "monitor.min_rows" in bad.stderr
    unknown = cli("monitor", "--data", str(small), "--frobnicate", cwd=project.path)
    assert unknown.returncode == 2 and "--frobnicate" in unknown.stderr


def test_what_a_switched_off_plugin_provides_names_the_plugin(new_project, tmp_path):
    """Its config group, its stage type: the error says which plugin plugins.disable left out."""
    project = new_project("classification")
    result = project.run("plugins.disable=[sklearn]")
    assert result.returncode == 2
    assert "config group comes with conveyor-sklearn, which plugins.disable switches off" \
        in result.stderr, result.stderr
    bare = local_project(tmp_path / "bare", pipeline={"load": {"uses": "sklearn.load"}})
    result = bare.run("plugins.disable=[sklearn]")
    assert result.returncode == 2
    assert "plugin 'sklearn' (conveyor-sklearn), which plugins.disable switches off" \
        in result.stderr, result.stderr
