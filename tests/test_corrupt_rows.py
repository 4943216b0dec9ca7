"""One corrupt row must not take out a listing (issue 14, item 6): a metric that is not a number
crashed `runs list`, `runs show` and `runs compare` (exit 70); bad JSON in one `model_versions`
row crashed `models list`. Each listing now shows the damaged row flagged and the others as
before. (The UI's pages: plugins/ui/tests/test_ui_hardening.py.)"""

from __future__ import annotations

import json

import pytest
from _support import local_project
from conveyor.store import Registry, open_store
from conveyor.testing import Project, current_store_backend, each_store, store_execute

# On each store backend (SQLite, then PostgreSQL), except where a damage needs SQLite's loose
# column types: PostgreSQL refuses to store text in a number column at all.
pytestmark = each_store


def sqlite_only(why: str) -> None:
    if current_store_backend().backend != "sqlite":
        pytest.skip(f"SQLite only: {why}")


def two_runs(tmp_path) -> tuple[Project, str, str]:
    """A project with two completed runs, each with a numeric metric; the first one's second
    metric is damaged in the store ('n/a' where a number belongs)."""
    sqlite_only("a metric's value column is a number on PostgreSQL, which refuses 'n/a'")
    project = local_project(tmp_path / "p")
    project.run(check=True)
    project.run("--force", check=True)
    intact, damaged = [r["id"] for r in project.runs()]
    insert = "INSERT INTO metrics VALUES (:run, 'second', :key, :value)"
    for run_id in (intact, damaged):
        store_execute(project.path, insert, run=run_id, key="accuracy", value=0.9)
    store_execute(project.path, insert, run=damaged, key="f1", value="n/a")
    store_execute(project.path, insert, run=intact, key="f1", value=0.5)
    return project, intact, damaged


def assert_survived(result) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_a_non_numeric_metric_is_flagged_by_runs_list_show_and_compare(tmp_path):
    project, intact, damaged = two_runs(tmp_path)

    listing = project.cli("runs", "list", "--json")
    assert_survived(listing)
    runs = {r["id"]: r for r in json.loads(listing.stdout)}
    assert runs[damaged]["metrics"] == {"accuracy": 0.9}
    assert runs[damaged]["problems"] == ["metric f1 is not a number: 'n/a'"]
    assert runs[intact]["metrics"] == {"accuracy": 0.9, "f1": 0.5} and "problems" not in runs[intact]
    table = project.cli("runs", "list")
    assert_survived(table)
    assert "⚠" in table.stdout and "metric f1 is not a number" in table.stdout
    assert intact in table.stdout and "0.5" in table.stdout

    for args in (["runs", "show", damaged], ["runs", "show", damaged, "--json"]):
        shown = project.cli(*args)
        assert_survived(shown)
        assert "metric f1 is not a number" in shown.stdout
        assert "accuracy" in shown.stdout

    compared = project.cli("runs", "compare", intact, damaged, "--json")
    assert_survived(compared)
    result = json.loads(compared.stdout)
    assert result["metrics"]["f1"] == {intact: 0.5, damaged: None}
    assert result["problems"] == [f"run {damaged}: metric f1 is not a number: 'n/a'"]
    compared = project.cli("runs", "compare", intact, damaged)
    assert_survived(compared)
    assert "⚠" in compared.stdout and "metric f1 is not a number" in compared.stdout


@pytest.mark.parametrize("damage", [
    ("metrics", "{not json"), ("gate", "[1, 2"), ("artifact", "null"), ("data", "7"),
    ("metrics", '{"roc_auc": "high"}'), ("created_at", "yesterday")])
def test_one_damaged_model_version_row_is_flagged_by_models_list(tmp_path, damage):
    column, value = damage
    if column == "created_at":
        sqlite_only("created_at is a number column on PostgreSQL, which refuses text")
    project = local_project(tmp_path / "p")
    project.run(check=True)
    store = open_store(project.path)
    registry = Registry(store)
    for _ in range(3):
        registry.register(name="faults", run_id="r", stage="register", artifact={},
                          metrics={"roc_auc": 0.8}, gate={"reasons": []}, decision="passed",
                          config_hash="h", data={})
    registry.set_alias("faults", "champion", 3, action="gate", reason="passed the gate")
    store.close()
    store_execute(project.path, f"UPDATE model_versions SET {column}=:value WHERE version=2",
                  value=value)

    listing = project.cli("models", "list", "--json")
    assert_survived(listing)
    rows = {r["version"]: r for r in json.loads(listing.stdout)}
    assert set(rows) == {1, 2, 3}
    assert rows[2]["problems"] and column[:6] in rows[2]["problems"][0]
    assert "problems" not in rows[1] and rows[3]["aliases"] == ["champion"]
    table = project.cli("models", "list")
    assert_survived(table)
    assert "damaged record" in table.stdout and "roc_auc=0.8" in table.stdout

    # Using the damaged version is a clear error, not a crash (nor a silent empty record).
    promoted = project.cli("models", "promote", "faults", "2")
    assert promoted.returncode == 1 and "Traceback" not in promoted.stderr
    assert "version 2: its record in the store is damaged" in promoted.stderr
    assert project.cli("models", "promote", "faults", "1").returncode == 0
