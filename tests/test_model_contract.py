"""A model version carries its contract (issue 13, item 1): the schema it was validated against
(its content), target, id column and features are recorded with the version, and predict and
monitor use them, not the project's current files. Through the real CLI, on generated data that
is not the template's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from conveyor import api
from conveyor.testing import assert_clear_error, assert_run_failed, store_execute


def _credit(rows: int, seed: int, *, labelled: bool = True, extra: bool = False) -> pd.DataFrame:
    """Numbers and categories, some missing, a label that depends on them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "applicant": [f"A{seed}-{i}" for i in range(rows)],
        "income": rng.lognormal(10, 0.4, rows).round(2),
        "debt_ratio": rng.uniform(0, 1.2, rows).round(3),
        "accounts": rng.integers(1, 9, rows),
        "region": rng.choice(["north", "south", "east", None], rows, p=[.4, .3, .25, .05]),
    })
    frame.loc[rng.random(rows) < 0.05, "income"] = np.nan
    if extra:
        frame["channel"] = rng.choice(["web", "branch"], rows)
    if labelled:
        score = (frame["debt_ratio"] * 2 - np.log(frame["income"].fillna(22000)) / 10
                 + (frame["region"] == "south") + rng.normal(0, 0.4, rows))
        frame["default"] = np.where(score > np.median(score), "yes", "no")
    return frame


def _contract(project):
    return api.model_contract(project.path)


def test_a_template_trains_on_any_csv_and_predict_scores_a_file_of_its_shape(new_project):
    project = new_project("classification")
    _credit(800, seed=11).to_csv(project.path / "credit.csv", index=False)
    _credit(150, seed=12, labelled=False).to_csv(project.path / "credit_new.csv", index=False)

    result = project.run("data.source=credit.csv", "data.target=default", check=True)
    # the template's schema describes its sample file: it is replaced by an inferred one, and
    # the sample's id column (customer_id) is not asked of credit.csv; said in one line each
    assert "schema.yaml describes the template's sample data data/customers.csv, not " \
           "credit.csv: inferred one from credit.csv (6 columns" in result.stdout
    assert "customer_id is the sample's id column" in result.stdout

    contract = _contract(project)
    assert contract.schema.inferred and contract.schema.describes == "credit.csv"
    assert contract.target == "default" and contract.id_column is None
    assert contract.source == "credit.csv"
    assert [f.name for f in contract.features] == ["applicant", "income", "debt_ratio",
                                                   "accounts", "region"]
    assert dict((f.name, f.dtype) for f in contract.features)["accounts"] == "int64"
    # what a model cannot score without; the observed ranges and categories only as
    # expectations (counted, never refused)
    ranges = [line for line in contract.schema.text.splitlines() if "ge:" in line
              or "isin:" in line]
    assert ranges and all("raise_warning: true" in line for line in ranges)

    scored = project.cli("predict", "--data", "credit_new.csv", check=True)
    assert "written to" in scored.stdout
    out = pd.read_parquet(project.path / "credit_new.predictions.parquet")
    assert len(out) == 150 and {"row", "prediction"} <= set(out.columns)
    assert set(out["prediction"]) <= {"yes", "no"}

    # values beyond anything in the training file are still scored (drift, not a broken
    # contract); a file lacking a feature column is not
    wider = _credit(50, seed=13, labelled=False)
    wider["income"] *= 50
    wider.to_csv(project.path / "wider.csv", index=False)
    project.cli("predict", "--data", "wider.csv", check=True)
    _credit(50, seed=14, labelled=False).drop(columns="debt_ratio").to_csv(
        project.path / "narrow.csv", index=False)
    assert_run_failed(project.cli("predict", "--data", "narrow.csv"), "debt_ratio",
                      "nothing was written")


def test_no_schema_configured_infers_one_and_says_so(new_project):
    project = new_project("classification")
    _credit(600, seed=21).to_csv(project.path / "credit.csv", index=False)
    result = project.run("data.source=credit.csv", "data.target=default",
                         "data.id_column=applicant", "data.schema=null", check=True)
    lines = [line for line in result.stdout.splitlines() if "inferred one from" in line]
    assert len(lines) == 1 and "no data.schema: inferred one from credit.csv" in lines[0]
    contract = _contract(project)
    assert contract.id_column == "applicant" and contract.schema.inferred
    assert "applicant" not in [f.name for f in contract.features]
    _credit(40, seed=22, labelled=False).to_csv(project.path / "new.csv", index=False)
    project.cli("predict", "--data", "new.csv", check=True)
    out = pd.read_parquet(project.path / "new.predictions.parquet")
    assert out["applicant"].tolist()[:2] == ["A22-0", "A22-1"]


def test_an_id_column_the_data_lacks_is_an_error_when_training(new_project):
    project = new_project("classification")
    _credit(300, seed=31).to_csv(project.path / "credit.csv", index=False)
    # with data.schema=null the template's schema is out of the picture: its id column is the
    # project's setting, and the data must have it
    result = project.run("data.source=credit.csv", "data.target=default", "data.schema=null")
    assert_run_failed(result, "data.id_column 'customer_id' is not a column of credit.csv",
                      "data.id_column=null")
    assert project.runs()[0]["status"] == "failed"
    result = project.run("data.source=credit.csv", "data.target=default",
                         "data.id_column=applicnt")
    assert_run_failed(result, "data.id_column 'applicnt'", "did you mean 'applicant'?")


def test_a_schema_written_for_another_file_is_not_applied_to_other_data(new_project):
    project = new_project("classification")
    _credit(300, seed=41).to_csv(project.path / "credit.csv", index=False)
    _credit(300, seed=42).to_csv(project.path / "week2.csv", index=False)
    other = _credit(300, seed=43, extra=True)
    other.columns = [f"{c}_2" for c in other.columns]  # another kind of file: no column shared
    other.to_csv(project.path / "other.csv", index=False)
    project.cli("schema", "infer", "credit.csv", "-o", "credit.yaml", "--target", "default",
                "--id-column", "applicant", check=True)
    common = ("data.target=default", "data.id_column=applicant", "data.schema=credit.yaml",
              "validate.on_failure=quarantine", "validate.max_invalid_fraction=0.5")

    # a file of the same shape (another week): the schema applies, and the log says whose it is
    result = project.run("data.source=week2.csv", *common)
    assert "credit.yaml was written for credit.csv; week2.csv has its columns, so it " \
           "applies" in result.stdout

    # another file: exit 2 naming both files and the fix, before anything learns from it
    result = project.run("data.source=other.csv", *common)
    assert_clear_error(result, 2, "data.schema credit.yaml was written for credit.csv, not for "
                                  "data.source other.csv", "debt_ratio",
                       "conveyor schema infer other.csv")


def test_predict_and_monitor_use_the_versions_contract_not_the_current_schema(new_project):
    project = new_project("classification")
    project.run(check=True)  # v1, validated against the template's schema.yaml
    v1 = _contract(project)
    assert v1.schema.origin == "schema.yaml" and v1.schema.written_by == "conveyor init"
    assert v1.id_column == "customer_id" and v1.target == "churned"

    batch = pd.read_csv(project.path / "data" / "customers.csv").head(400)
    batch.drop(columns="churned").to_csv(project.path / "batch.csv", index=False)
    # the project's schema changes afterwards: no tenure is allowed over 1 month
    schema = (project.path / "schema.yaml").read_text()
    (project.path / "schema.yaml").write_text(schema.replace(
        "  tenure_months:\n", "  tenure_months:\n    lt: 2\n", 1))

    # v1 still scores and monitors against what it was validated with
    project.cli("predict", "--data", "batch.csv", check=True)
    monitored = project.cli("monitor", "--data", "batch.csv", "--json")
    assert monitored.returncode in (0, 1), monitored.stderr
    report = json.loads(monitored.stdout)
    assert report["status"] != "invalid", report.get("invalid")

    # the changed schema applies to models trained after it
    result = project.run("model.params.max_depth=3")
    assert_run_failed(result, "validation failed", "against schema.yaml")
    assert "tenure_months  less_than(2)" in result.stdout

    # a version registered before contracts were recorded falls back to its run's config
    store_execute(project.path, "DELETE FROM model_contracts")
    assert _contract(project) is None
    assert_run_failed(project.cli("predict", "--data", "batch.csv"), "less_than(2)")


DERIVING = '''
import numpy as np
import conveyor


def derive(frame, settings):
    out = frame.copy()
    out["income_per_account"] = out["income"] / out["accounts"]
    out["log_income"] = np.log(out["income"]) * settings.get("scale", 1.0)
    return out


def _run(ctx):
    return {"data": derive(ctx.inputs["data"], ctx.settings)}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("deriving.features", _run, "derive credit features",
                                ephemeral_outputs=frozenset({"data"}), row_transform=derive))
'''

DERIVE_PIPELINE = """
plugins:
  local: [deriving]
pipeline:
  derive:
    uses: deriving.features
    needs: [load]
    scale: 2.0
  validate:
    needs: [derive]
"""


def test_the_inference_path_is_recorded_and_applied_to_raw_records(new_project):
    project = new_project("classification")
    (project.path / "deriving.py").write_text(DERIVING)
    config = project.path / "conveyor.yaml"
    plain = config.read_text()
    config.write_text(plain + DERIVE_PIPELINE)
    _credit(700, seed=51).to_csv(project.path / "credit.csv", index=False)
    raw = _credit(300, seed=52)
    raw.drop(columns="default").to_csv(project.path / "raw.csv", index=False)
    project.run("data.source=credit.csv", "data.target=default", "data.id_column=applicant",
                "data.schema=null", check=True)
    contract = _contract(project)
    assert [(t.stage, t.uses, t.settings, t.before_schema) for t in contract.transforms] == \
        [("derive", "deriving.features", {"scale": 2.0}, True)]
    assert {"income_per_account", "log_income"} <= {f.name for f in contract.features}

    # raw records, without the derived features, are scored and monitored through the path
    project.cli("predict", "--data", "raw.csv", check=True)
    assert len(pd.read_parquet(project.path / "raw.predictions.parquet")) == 300
    monitored = project.cli("monitor", "--data", "raw.csv", "--json")
    assert monitored.returncode in (0, 1), monitored.stderr
    report = json.loads(monitored.stdout)
    assert report["status"] != "invalid", report.get("invalid")
    assert "log_income" in report["feature_results"]

    # the stage leaves the pipeline: the champion keeps its own path and stays scorable
    config.write_text(plain + "plugins:\n  local: [deriving]\n")
    project.cli("predict", "--data", "raw.csv", "-o", "again.parquet", check=True)
    # (predict runs with the training run's config, whose plugins it loads); with the
    # plugin's module gone, the model cannot be used, and the error says why
    config.write_text(plain)
    (project.path / "deriving.py").unlink()
    failed = project.cli("predict", "--data", "raw.csv", "-o", "x.parquet")
    assert failed.returncode == 2 and "deriving" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
