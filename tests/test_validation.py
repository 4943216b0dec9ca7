"""The core's side of validation: the `conveyor.validate` stage, its policies, and the hooks any
validation plugin answers. A toy validator (a project-local plugin) stands in for
conveyor-pandera here, which shows the hook can be answered by someone else."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from _support import assert_run_failed, assert_usage_error, local_project, recorded_runs

TOY_STAGES = '''
import pandas as pd
import conveyor


def _load(ctx):
    return {"data": pd.read_csv(ctx.project_dir / "data.csv")}


def _learn(ctx):
    frame = ctx.inputs["data"]
    ctx.log_metrics({"rows_learned": len(frame)})
    return {"learned": {"rows": len(frame)}}


def _serve(ctx):
    request = pd.DataFrame({"x": [ctx.settings["value"]]})
    report = ctx.validate(request, purpose="request")
    return {"answer": {"ok": report.ok, "checked": report.checked}}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("toy.load", _load, input_files=lambda s: ["data.csv"],
                                ephemeral_outputs=frozenset({"data"})))
    register(conveyor.StageType("toy.learn", _learn))
    register(conveyor.StageType("toy.serve", _serve))
'''

TOY_VALIDATOR = '''
import pandas as pd
import conveyor


@conveyor.hookimpl
def conveyor_check_schema(schema):
    if not schema.startswith("toy:"):
        return None
    if schema != "toy:no-negatives":
        raise conveyor.ConfigError(f"data.schema: unknown toy rule {schema}")
    return "toy rule: no negative numbers"


@conveyor.hookimpl
def conveyor_validate_frame(frame, schema, purpose):
    if not schema.startswith("toy:"):
        return None
    failures, invalid, cases = [], {}, []
    for column in frame.columns:
        bad = [(i, v) for i, v in enumerate(frame[column]) if v < 0]
        if bad:
            failures.append(conveyor.ValidationFailure(column, "no negatives", len(bad),
                                                       tuple(bad[:3])))
            for row, value in bad:
                invalid.setdefault(row, []).append(f"{column}: no negatives")
                cases.append({"row": row, "column": column, "check": "no negatives",
                              "value": str(value)})
    return conveyor.ValidationReport(
        ok=not failures, rows=len(frame), failures=tuple(failures),
        invalid_rows={r: tuple(v) for r, v in invalid.items()}, schema=schema,
        validator=f"toy ({purpose})", data=frame if not failures else None,
        cases=pd.DataFrame(cases) if cases else None)
'''

PIPELINE = {
    "load": {"uses": "toy.load"},
    "validate": {"uses": "conveyor.validate", "needs": ["load"], "schema": "${data.schema}",
                 "on_failure": "${validate.on_failure}",
                 "max_invalid_fraction": "${validate.max_invalid_fraction}"},
    "learn": {"uses": "toy.learn", "needs": ["validate"]},
}


def toy_project(folder: Path, values: list[int], schema: str | None = "toy:no-negatives",
                local: tuple[str, ...] = ("toystages", "toyvalidator")):
    project = local_project(folder, pipeline=PIPELINE, local=list(local),
                            modules={"toystages": TOY_STAGES, "toyvalidator": TOY_VALIDATOR},
                            extra={"data": {"schema": schema}})
    pd.DataFrame({"x": values, "y": [1] * len(values)}).to_csv(folder / "data.csv", index=False)
    return project


def stage_outputs(project, run_id: str) -> dict[str, dict]:
    return {s["name"]: s["outputs"] for s in project.show(run_id)["stages"]}


def load_artifact(project, ref: dict) -> pd.DataFrame:
    path = next((project.path / ".conveyor" / "artifacts").rglob(ref["sha256"] + "*"))
    return pd.read_feather(path) if path.suffix == ".arrow" else pd.read_parquet(path)


def test_valid_data_passes_the_validate_stage_unchanged(tmp_path):
    project = toy_project(tmp_path / "p", [1, 2, 3])
    result = project.run(check=True)
    assert "3 rows valid against toy:no-negatives (toy (train)" in result.stdout
    assert project.runs()[0]["metrics"] == {"rows_learned": 3}


def test_without_a_schema_the_data_passes_through_unvalidated(tmp_path):
    project = toy_project(tmp_path / "p", [-1, 2], schema=None)
    project.run(check=True)
    run = project.runs()[0]
    assert run["metrics"] == {"rows_learned": 2}


def test_invalid_data_fails_the_run_with_a_table_stored_failures_and_metrics(tmp_path):
    project = toy_project(tmp_path / "p", [5, -1, 7, -3])
    result = project.run()
    message = assert_run_failed(result, "validation failed: 1 check failed on 2 of 4 rows",
                                "on_failure=quarantine")
    assert "row 1: -1, row 3: -3" in result.stdout and "no negatives" in result.stdout
    run = recorded_runs(project)[0]
    assert run["status"] == "failed" and "validation failed" in run["error"]
    assert "Traceback" not in message
    outputs = stage_outputs(project, run["id"])
    failures = load_artifact(project, outputs["validate"]["failures"])
    assert failures["row"].tolist() == [1, 3]
    metrics = project.show(run["id"])["metrics"]
    assert metrics["validation.invalid_rows"] == 2 and metrics["validation.failed_checks"] == 1
    assert "learn" not in outputs or not outputs["learn"]  # nothing learned from invalid data


def test_quarantine_goes_on_with_the_valid_rows_and_keeps_the_invalid_ones(tmp_path):
    values = [1] * 98 + [-1, -2]
    project = toy_project(tmp_path / "p", values)
    result = project.run("validate.on_failure=quarantine", check=True)
    assert "quarantined 2 of 100 rows" in result.stdout
    run = project.runs()[0]
    assert run["metrics"]["rows_learned"] == 98 and run["metrics"]["validation.dropped_rows"] == 2
    outputs = stage_outputs(project, run["id"])
    quarantined = load_artifact(project, outputs["validate"]["quarantine"])
    assert quarantined["_row"].tolist() == [98, 99]
    assert quarantined["_reasons"].tolist() == ["x: no negatives"] * 2


def test_quarantine_refuses_to_drop_more_than_the_allowed_share(tmp_path):
    project = toy_project(tmp_path / "p", [1, -1, 2, 3])
    assert_run_failed(project.run("validate.on_failure=quarantine"),
                      "25.0% of the rows are invalid, more than validate.max_invalid_fraction=0.05")


def test_warn_goes_on_with_every_row(tmp_path):
    project = toy_project(tmp_path / "p", [1, -1])
    result = project.run("validate.on_failure=warn", check=True)
    assert "warning: going on with every row" in result.stdout
    assert project.runs()[0]["metrics"]["rows_learned"] == 2


def test_an_unknown_policy_is_a_config_error(tmp_path):
    project = toy_project(tmp_path / "p", [1])
    assert_usage_error(project.run("validate.on_failure=ignore"),
                       "validate.on_failure", "fail, quarantine, warn")
    assert recorded_runs(project) == []


def test_a_schema_no_installed_plugin_validates_stops_before_anything_runs(tmp_path):
    project = toy_project(tmp_path / "p", [1], local=("toystages",))
    assert_usage_error(project.run(), "data.schema is set (toy:no-negatives), but no installed "
                       "plugin validates it", "pip install conveyor-pandera")
    assert recorded_runs(project) == []


def test_a_broken_schema_stops_before_anything_runs(tmp_path):
    project = toy_project(tmp_path / "p", [1], schema="toy:nonsense")
    assert_usage_error(project.run(), "unknown toy rule toy:nonsense")
    assert recorded_runs(project) == []


def test_any_stage_validates_through_the_hook_with_a_purpose(tmp_path):
    config = json.loads(json.dumps(PIPELINE))
    config["serve"] = {"uses": "toy.serve", "value": -4}
    project = local_project(tmp_path / "q", pipeline=config, local=["toystages", "toyvalidator"],
                            modules={"toystages": TOY_STAGES, "toyvalidator": TOY_VALIDATOR},
                            extra={"data": {"schema": "toy:no-negatives"}})
    pd.DataFrame({"x": [1]}).to_csv(project.path / "data.csv", index=False)
    project.run(check=True)
    outputs = stage_outputs(project, project.runs()[0]["id"])
    answer = json.loads(next((project.path / ".conveyor" / "artifacts").rglob(
        outputs["serve"]["answer"]["sha256"] + "*")).read_text())
    assert answer == {"ok": False, "checked": True}


def test_the_fingerprint_covers_the_schema_file_or_the_module_of_an_import_path():
    from conveyor.validation import schema_files

    assert schema_files(None) == []
    assert schema_files("schema.yaml") == ["schema.yaml"]
    assert schema_files("checks/schema.yml") == ["checks/schema.yml"]
    assert {"schemas.py", "schemas/__init__.py"} <= set(schema_files("schemas.Customers"))
