"""The validate stage with conveyor-pandera, end to end through the real CLI: what a broken CSV
reports, what quarantine keeps, bad schema files, Parquet dtypes, DataFrameModel schemas, and
the same schema validating monitoring batches and serving requests."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from conveyor.testing import store_rows
from pandera_support import artifact, assert_error, nothing_ran, stage_outputs

# One row for each kind of bad cell the issue names (rows count from 0).
BAD_CELLS = {(3, "tenure_months"): "abc",       # a text value in a numeric column
             (4, "tenure_months"): "-4",        # ... and a negative one in that same column
             (5, "support_calls"): "-2",        # a negative value where ge: 0
             (7, "region"): "mars",             # an unknown category
             (9, "churned"): ""}                # a missing target value


def registered_versions(project) -> int:
    return len(store_rows(project.path, "SELECT name FROM model_versions"))


def test_the_template_ships_a_schema_and_its_data_passes(shop):
    assert "schema: schema.yaml" in (shop.path / "conveyor.yaml").read_text()
    schema = (shop.path / "schema.yaml").read_text()
    assert "strict: true" in schema and "min_rows: 100" in schema
    plan = json.loads(shop.cli("plan", "--json", check=True).stdout)
    assert [row["stage"] for row in plan][:3] == ["load", "validate", "split"]


@pytest.mark.slow
def test_the_template_project_validates_then_trains(shop):
    result = shop.run(check=True)
    assert "3,000 rows valid against schema.yaml (pandera" in result.stdout
    run = shop.runs()[0]
    assert run["status"] == "completed" and set(run["data"]) == {"data/customers.csv",
                                                                 "schema.yaml"}


def test_a_broken_csv_fails_with_a_report_naming_every_bad_cell(shop, write_csv):
    source = write_csv(shop, "broken.csv", BAD_CELLS, drop=("has_partner",), add={"extra": "x"})
    result = shop.run(f"data.source={source}")
    assert_error(result, 1, "validation failed", "no model is trained on invalid data")
    table = result.stdout
    for line in ("tenure_months  coerce_dtype('int64')", "row 3: 'abc'",
                 "tenure_months  greater_than_or_equal_to(1)", "row 4: -4",
                 "support_calls  greater_than_or_equal_to(0)", "row 5: -2",
                 "region         isin(['east', 'north', 'south', 'west'])", "row 7: 'mars'",
                 "churned        not_nullable (missing value)", "row 9: None",
                 "has_partner    column is missing", "extra          column not in the schema"):
        assert line in table, f"{line!r} not in the report\n{table}"
    run = shop.runs()[0]
    assert run["status"] == "failed"
    details = shop.show(run["id"])
    assert details["metrics"]["validation.invalid_rows"] == 5
    failures = artifact(shop, stage_outputs(shop, run["id"])["validate"]["failures"])
    assert sorted(failures["row"].dropna().astype(int).unique()) == [3, 4, 5, 7, 9]
    assert {"has_partner", "extra"} <= set(failures["column"])
    assert registered_versions(shop) == 0


@pytest.mark.slow
def test_quarantine_trains_on_the_valid_rows_and_records_what_it_dropped(shop, write_csv):
    source = write_csv(shop, "rows.csv", BAD_CELLS)
    result = shop.run(f"data.source={source}", "validate.on_failure=quarantine", check=True)
    assert "quarantined 5 of 3,000 rows" in result.stdout
    assert "going on with the 2,995 valid rows" in result.stdout
    assert "train 2,396 rows, test 599 rows" in result.stdout
    run = shop.runs()[0]
    assert run["metrics"]["validation.dropped_rows"] == 5
    outputs = stage_outputs(shop, run["id"])
    quarantined = artifact(shop, outputs["validate"]["quarantine"])
    assert quarantined["_row"].tolist() == [3, 4, 5, 7, 9]
    reasons = dict(zip(quarantined["_row"], quarantined["_reasons"], strict=True))
    assert reasons[7] == "region: isin(['east', 'north', 'south', 'west'])"
    assert reasons[9] == "churned: not_nullable (missing value)"
    assert "registered and promoted to champion" in result.stdout


def test_quarantine_cannot_fix_a_missing_column(shop, write_csv):
    source = write_csv(shop, "nocol.csv", {}, drop=("region",))
    assert_error(shop.run(f"data.source={source}", "validate.on_failure=quarantine"), 1,
                 "quarantine cannot save the run", "region: column is missing")


def test_a_parquet_file_whose_dtypes_differ_from_the_schema_is_named(shop):
    frame = pd.read_csv(shop.path / "data" / "customers.csv")
    frame["region"] = frame["region"].astype("category")
    frame["support_calls"] = frame["support_calls"].astype("float64")
    frame.to_parquet(shop.path / "data" / "customers.parquet")
    schema = shop.path / "schema.yaml"
    text = schema.read_text()
    start = text.index("  support_calls:")
    schema.write_text(text[:start] + text[start:].replace("    coerce: true\n", "", 1))
    result = shop.run("data.source=data/customers.parquet")
    assert_error(result, 1, "validation failed")
    assert re.search(r"region +dtype\('str.*'\), got category", result.stdout)
    assert "dtype('int64'), got float64" in result.stdout


BAD_SCHEMAS = [
    (None, "schema file not found", "conveyor schema infer"),
    ("columns:\n  age: {dtype: int64\n", "schema.yaml:3: invalid YAML", None),
    ("- just\n- a list\n", "expected a mapping with 'columns:'", None),
    ("columns:\n  age:\n    dtype: int64\n    nulable: false\n",
     "columns.age.nulable: unknown key or check; did you mean 'nullable'?", None),
    ("columns:\n  age: {dtype: integr}\n", "columns.age.dtype: unknown data type 'integr'", None),
    ("columns:\n  age: {dtype: int64, greater_then: 0}\n",
     "did you mean 'greater_than'?", None),
    ("colums:\n  age: {dtype: int64}\n", "'colums': unknown key; did you mean 'columns'?", None),
    ("columns:\n  age: {dtype: int64, in_range: {low: 0}}\n", "is not a valid Pandera schema", None),
]


@pytest.mark.parametrize(("content", "message", "hint"), BAD_SCHEMAS)
def test_a_bad_schema_file_is_a_config_error_before_anything_runs(shop, content, message, hint):
    schema = shop.path / "schema.yaml"
    if content is None:
        schema.unlink()
    else:
        schema.write_text(content)
    stderr = assert_error(shop.run(), 2, "data.schema", message)
    if hint:
        assert hint in stderr
    assert nothing_ran(shop)


MODEL = '''
import pandera.pandas as pa


class Customers(pa.DataFrameModel):
    customer_id: str = pa.Field(unique=True)
    tenure_months: int = pa.Field(ge=1)
    contract: str = pa.Field(nullable=True, isin=["month-to-month", "one-year", "two-year"])
    region: str = pa.Field(isin=["east", "north", "south", "west"])
    monthly_charges: float = pa.Field(nullable=True, ge=0)
    support_calls: int = pa.Field(ge=0)
    has_partner: str
    churned: int = pa.Field(isin=[0, 1])

    class Config:
        strict = True
'''


def test_a_dataframe_model_by_import_path_validates_the_data(shop, write_csv):
    (shop.path / "schemas.py").write_text(MODEL)
    plan = shop.cli("plan", "data.schema=schemas.Customers", check=True)
    assert "validate" in plan.stdout
    source = write_csv(shop, "neg.csv", {(11, "support_calls"): "-1"})
    result = shop.run("data.schema=schemas.Customers", f"data.source={source}")
    assert_error(result, 1, "validation failed", "schemas.Customers")
    assert "row 11: -1" in result.stdout
    assert_error(shop.run("data.schema=os.Customers"), 2, "refusing to import", "os.Customers")
    assert_error(shop.run("data.schema=schemas.Nope"), 2, "has no attribute 'Nope'")


ONLY_VALIDATE = ("~pipeline.split", "~pipeline.train", "~pipeline.evaluate", "~pipeline.register")


def test_editing_the_schema_reruns_the_validate_stage(shop):
    shop.run(*ONLY_VALIDATE, check=True)
    again = json.loads(shop.cli("plan", "--json", *ONLY_VALIDATE, check=True).stdout)
    assert [row["action"] for row in again] == ["skip", "skip"]
    schema = shop.path / "schema.yaml"
    schema.write_text(schema.read_text().replace("min_rows: 100", "min_rows: 50"))
    plan = {r["stage"]: r for r in json.loads(
        shop.cli("plan", "--json", *ONLY_VALIDATE, check=True).stdout)}
    assert plan["validate"]["action"] == "run"
    assert plan["validate"]["reason"] == "data file schema.yaml changed"


# --- one schema, three places ------------------------------------------------------------------


@pytest.fixture
def host():
    from conveyor.testing import plugin_host

    return plugin_host()


def test_one_schema_validates_training_data_monitoring_batches_and_serving_requests(shop, host):
    from conveyor.validation import validate_frame

    config = {"data": {"schema": "schema.yaml", "target": "churned"}}
    frame = pd.read_csv(shop.path / "data" / "customers.csv")

    def check(data, purpose):
        return validate_frame(host, data, config=config, project_dir=shop.path, purpose=purpose)

    assert check(frame, "train").ok
    unlabelled = frame.drop(columns=["churned"])
    assert not check(unlabelled, "train").ok  # training data needs its target
    assert check(unlabelled.head(500), "batch").ok  # a monitoring batch may lack it
    request = unlabelled.head(1)
    report = check(request, "request")
    assert report.ok and report.validator.startswith("pandera") and report.data is request
    bad = request.assign(region="mars", support_calls=-3)
    report = check(bad, "request")
    assert not report.ok and report.invalid_rows == {
        0: ("region: isin(['east', 'north', 'south', 'west'])",
            "support_calls: greater_than_or_equal_to(0)")}
    assert report.failures[0].examples == ((0, "mars"),)


def test_without_the_plugin_a_schema_is_refused_with_what_to_install(shop, write_csv):
    assert_error(shop.run("plugins.disable=[pandera]"), 2,
                 "data.schema is set (schema.yaml), but no installed plugin validates it",
                 "pip install conveyor-pandera")


def test_a_large_valid_frame_takes_the_fast_path(shop, host):
    from conveyor.validation import validate_frame

    rows = 300_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "customer_id": pd.array([f"C{i:07d}" for i in range(rows)], dtype="str"),
        "tenure_months": rng.integers(1, 72, rows), "contract": pd.array(
            rng.choice(["month-to-month", "one-year", "two-year"], rows), dtype="str"),
        "region": pd.array(rng.choice(["east", "north", "south", "west"], rows), dtype="str"),
        "monthly_charges": rng.uniform(15, 120, rows), "support_calls": rng.integers(0, 7, rows),
        "has_partner": pd.array(rng.choice(["no", "yes"], rows), dtype="str"),
        "churned": rng.integers(0, 2, rows)})
    config = {"data": {"schema": "schema.yaml", "target": "churned"}}
    report = validate_frame(host, frame, config=config, project_dir=shop.path)
    assert report.ok and report.data is frame  # the frame itself: nothing copied
    frame.loc[rows - 1, "support_calls"] = 99
    report = validate_frame(host, frame, config=config, project_dir=shop.path)
    assert not report.ok and list(report.invalid_rows) == [rows - 1]
