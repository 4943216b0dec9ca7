"""Names that become paths (issue 14, item 4): `registry.model_name=../../../../elsewhere/x` was
accepted, and `conveyor monitor` then wrote its profile outside the project. Project names,
model names and batch ids now follow `conveyor.names`' rule wherever they enter: the config
check (every command that loads the config, exit 2 naming the key and the rule), `conveyor
init`, `Registry.register`, `Monitoring.record`, and the code that joins them into paths."""

from __future__ import annotations

import pytest
from _support import local_project
from conveyor.errors import UsageError
from conveyor.names import NAME_RULE, check_name, is_valid_name, path_part
from conveyor.store import Registry, open_store
from conveyor.testing import assert_usage_error, store_execute, store_rows
from conveyor_monitor.records import Monitoring

TRAVERSAL = "../../../../elsewhere/x"
BAD_NAMES = [TRAVERSAL, "..", ".", ".hidden", "-rf", "a/b", "a\\b", "/abs", "", "a b",
             "tab\there", "x" * 101, "nul\0byte", "ünïcode"]
GOOD_NAMES = ["churn", "shop", "credit-risk", "model_v2", "retail.eu", "A1", "x" * 100]


def test_the_rule():
    for name in BAD_NAMES:
        assert not is_valid_name(name), name
        with pytest.raises(UsageError, match="not a usable name"):
            check_name(name, "model name")
    for name in GOOD_NAMES:
        assert is_valid_name(name) and check_name(name, "model name") == name
    assert not is_valid_name(None) and not is_valid_name(3)


def test_a_traversing_model_name_is_refused_by_every_command_before_anything_runs(tmp_path):
    project = local_project(tmp_path / "proj")
    elsewhere = tmp_path / "elsewhere"
    for command in (["run"], ["plan"], ["serve", "--port", "1"]):
        result = project.cli(*command, f"registry.model_name={TRAVERSAL}")
        assert_usage_error(result, "config key 'registry.model_name'",
                           f"'{TRAVERSAL}' is not a usable name", NAME_RULE)
    config = project.path / "conveyor.yaml"
    config.write_text(config.read_text() + f"registry:\n  model_name: '{TRAVERSAL}'\n")
    (project.path / "batch.csv").write_text("a,b\n1,2\n")
    for command in (["run"], ["plan"], ["monitor", "--data", "batch.csv"],
                    ["retrain"]):
        result = project.cli(*command)
        assert_usage_error(result, "config key 'registry.model_name'",
                           f"'{TRAVERSAL}' is not a usable name", NAME_RULE)
    assert not elsewhere.exists()
    assert not store_rows(project.path, "SELECT * FROM model_versions")


@pytest.mark.parametrize("key, value", [("project", "../up"), ("project", ".hidden"),
                                        ("pipeline.second.model_name", "a/b")])
def test_names_in_the_yaml_are_refused_naming_the_key(tmp_path, key, value):
    project = local_project(tmp_path / "proj")
    text = (project.path / "conveyor.yaml").read_text()
    if key == "project":
        text = text.replace("project: faults", f"project: '{value}'")
    else:
        text = text.replace("uses: faults.flaky", f"uses: faults.flaky\n    model_name: '{value}'")
    (project.path / "conveyor.yaml").write_text(text)
    assert_usage_error(project.run(), f"config key '{key}'", f"'{value}' is not a usable name")


def test_init_refuses_a_name_that_is_not_a_usable_folder_name(tmp_path, cli):
    for name in (".hidden", "a b", "x;y"):
        result = cli("init", "--", name, cwd=tmp_path)
        assert_usage_error(result, "is not a usable project name", NAME_RULE)
    assert list(tmp_path.iterdir()) == []


def test_the_store_refuses_such_names_at_its_boundary(tmp_path):
    store = open_store(tmp_path)
    try:
        with pytest.raises(UsageError, match="model name"):
            Registry(store).register(name=TRAVERSAL, run_id="r", stage="s", artifact={},
                                     metrics={}, gate={}, decision="passed", config_hash="h",
                                     data={})
        for kwargs in ({"model_name": TRAVERSAL}, {"model_name": "m", "batch_id": "../b"}):
            with pytest.raises(UsageError, match="not a usable name"):
                Monitoring(store).record(**{"model_version": 1, "source": "s",
                                            "source_sha256": "0", "rows": 1, "status": "ok",
                                            **kwargs})
        assert store.query("SELECT COUNT(*) FROM model_versions")[0][0] == 0
    finally:
        store.close()
    with pytest.raises(UsageError):
        path_part(tmp_path, "../x")
    assert path_part(tmp_path, "x") == tmp_path / "x"


def test_monitor_never_writes_outside_the_project_for_a_hand_edited_model_name(new_project,
                                                                              tmp_path):
    """A store written by an older Conveyor (or by hand) may hold such a name: the paths built
    from it are refused, and nothing is written outside the project."""
    project = new_project("classification")
    project.run(check=True)
    store_execute(project.path, "UPDATE model_versions SET name=:name", name=TRAVERSAL)
    store_execute(project.path, "UPDATE aliases SET name=:name", name=TRAVERSAL)
    result = project.cli("monitor", "--data", "data/customers.csv", "--model", f"{TRAVERSAL}:1")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "model name" in result.stderr and "not a usable name" in result.stderr
    assert not (project.path.parent.parent.parent / "elsewhere").exists()
    assert not list(tmp_path.rglob("*.npz"))
