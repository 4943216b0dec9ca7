"""init -> run -> runs list -> plan, through the real console script."""

from __future__ import annotations

import json

from conveyor.testing import each_store

# The store records every run and answers the cache's questions: each test on each backend.
pytestmark = each_store


def test_classification_project_runs_end_to_end_and_is_recorded(new_project):
    project = new_project("classification")
    first = project.run(check=True)
    assert "registered and promoted to champion" in first.stdout
    runs = project.runs()
    assert len(runs) == 1 and runs[0]["status"] == "completed"
    assert runs[0]["cached"] == 0 and runs[0]["stages"] == 6
    assert set(runs[0]["metrics"]) == {"accuracy", "balanced_accuracy", "f1_macro"}
    assert list(runs[0]["data"]) == ["data/customers.csv", "schema.yaml"]


def test_regression_project_runs_end_to_end(new_project):
    project = new_project("regression")
    project.run(check=True)
    metrics = project.runs()[0]["metrics"]
    assert metrics["r2"] > 0.7


def test_rerun_with_nothing_changed_executes_no_stage(trained_project):
    project = trained_project()  # run once, copied to a new folder: the cache still holds
    second = project.run(check=True)
    runs = project.runs()
    assert runs[0]["cached"] == runs[0]["stages"] == 6
    assert runs[0]["metrics"] == runs[1]["metrics"]
    assert second.stdout.count("cached, unchanged since run") == 6


def test_changing_model_params_reruns_only_downstream_stages_and_says_why(trained_project):
    project = trained_project()
    plan = json.loads(project.cli("plan", "--json", "model.params.max_depth=3", check=True).stdout)
    actions = {row["stage"]: row["action"] for row in plan}
    assert actions == {"load": "skip", "validate": "skip", "split": "skip", "train": "run",
                       "evaluate": "run", "register": "run"}
    train = next(row for row in plan if row["stage"] == "train")
    assert "model.params.max_depth: null → 3" in train["reason"]
    result = project.run("model.params.max_depth=3", check=True)
    assert "model.params.max_depth: null → 3" in result.stdout
    stages = {s["name"]: s for s in project.show(project.runs()[0]["id"])["stages"]}
    assert [n for n, s in stages.items() if s["cached"]] == ["load", "validate", "split"]


def test_changed_data_file_reruns_everything_from_load(trained_project):
    project = trained_project()
    data = project.path / "data" / "customers.csv"
    data.write_text(data.read_text() + data.read_text().splitlines()[1] + "\n")
    rerun = project.run()
    assert rerun.returncode in (0, 1), rerun.stderr  # 1: the gate may reject the new model
    latest = project.show(project.runs()[0]["id"])
    assert not any(s["cached"] for s in latest["stages"])
    assert latest["stages"][0]["reason"] == "data file data/customers.csv changed"
