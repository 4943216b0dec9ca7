"""`conveyor schema infer`: the YAML it writes is Pandera's own, is meant to be edited, and
validates the file it was inferred from (CSV and Parquet, with gaps, booleans, text)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from conveyor.testing import Project
from pandera.io.pandas_io import from_yaml
from pandera_support import assert_error


def odd_frame(rows: int = 500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "id": [f"row-{i}" for i in range(rows)],
        "age": rng.integers(0, 90, rows),
        "income": rng.normal(50, 15, rows),
        "city": rng.choice(["Oslo", "Lima", "Pune", None], rows),
        "note": [f"free text {i}" for i in rng.integers(0, 10_000, rows)],
        "flag": rng.choice([True, False], rows),
        "label": rng.choice([0, 1], rows),
    })
    frame.loc[rng.random(rows) < 0.1, "income"] = np.nan
    return frame


@pytest.fixture
def folder(tmp_path) -> Project:
    return Project(tmp_path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_inferred_schema_validates_the_file_it_came_from(folder, suffix):
    from conveyor.testing import plugin_host
    from conveyor.validation import validate_frame
    from conveyor_pandera.infer import read_table
    from conveyor_pandera.schemas import pandera

    data = folder.path / f"odd{suffix}"
    frame = odd_frame()
    frame.to_csv(data, index=False) if suffix == ".csv" else frame.to_parquet(data)
    result = folder.cli("schema", "infer", data.name, "-o", "schema.yaml", "--target", "label",
                        "--id-column", "id", check=True)
    assert "wrote" in result.stdout and "7 columns, from 500 rows" in result.stdout
    text = (folder.path / "schema.yaml").read_text()
    pandera()  # registers this plugin's `min_rows` check with Pandera
    schema = from_yaml(folder.path / "schema.yaml")  # Pandera's own reader
    loaded = read_table(data)
    schema.validate(loaded, lazy=True)
    report = validate_frame(plugin_host(), loaded, project_dir=folder.path,
                            config={"data": {"schema": "schema.yaml", "target": "label"}})
    assert report.ok, report.failures
    rules = yaml.safe_load(text)
    columns = rules["columns"]
    assert rules["strict"] is True and rules["coerce"] is False
    # Observed ranges and categories are expectations: counted, never refused.
    assert columns["age"]["ge"] == {"min_value": int(frame["age"].min()), "raise_warning": True}
    assert columns["age"]["coerce"] is True
    assert columns["city"]["isin"] == {"allowed_values": ["Lima", "Oslo", "Pune"],
                                       "raise_warning": True}
    assert columns["city"]["nullable"]
    assert "ge: {min_value: 0, raise_warning: true}" in text  # one line, easy to edit
    assert "isin" not in columns["note"]  # too many distinct values to be categories
    assert columns["income"]["nullable"] is True and columns["label"]["nullable"] is False
    assert columns["id"]["unique"] is True and columns["flag"] == {"dtype": "bool",
                                                                  "nullable": False}
    assert "coerce" not in columns["city"]  # never on text: coercion is explicit
    assert "# the target (data.target)" in text and text.startswith("# Pandera schema for")


def test_without_output_the_schema_is_printed(folder):
    odd_frame(50).to_csv(folder.path / "d.csv", index=False)
    result = folder.cli("schema", "infer", "d.csv", check=True)
    assert result.stdout.startswith("# Pandera schema for d.csv")
    assert "columns:" in result.stdout


def test_inside_a_project_the_target_comes_from_its_config(shop):
    result = shop.cli("schema", "infer", "data/customers.csv", check=True)
    assert "  churned:  # the target (data.target)" in result.stdout
    assert yaml.safe_load(result.stdout)["columns"]["customer_id"]["unique"] is True


def test_usage_errors(folder):
    odd_frame(20).to_csv(folder.path / "d.csv", index=False)
    (folder.path / "d.json").write_text("{}")
    (folder.path / "schema.yaml").write_text("# mine, edited by hand\n")
    assert_error(folder.cli("schema", "infer", "missing.csv"), 2, "data file not found")
    assert_error(folder.cli("schema", "infer", "d.json"), 2, "unsupported file type '.json'")
    assert_error(folder.cli("schema", "infer", "d.csv", "-o", "schema.yaml"), 2,
                 "already exists", "--force")
    assert (folder.path / "schema.yaml").read_text() == "# mine, edited by hand\n"
    folder.cli("schema", "infer", "d.csv", "-o", "schema.yaml", "--force", check=True)
    assert_error(folder.cli("schema"), 2, "conveyor schema infer DATA")


def beyond(frame: pd.DataFrame) -> pd.DataFrame:
    """New rows: 7 ages above the oldest seen, 4 of a city never seen, one missing label."""
    new = frame.copy()
    new.loc[[1, 5, 9, 13, 17, 21, 25], "age"] = 95
    new.loc[[2, 5, 40, 41], "city"] = "Quito"
    return new


def test_expectations_are_counted_never_refused_and_strict_writes_hard_checks(folder):
    from conveyor.testing import plugin_host
    from conveyor.validation import validate_frame

    frame = odd_frame()
    frame.to_csv(folder.path / "odd.csv", index=False)
    folder.cli("schema", "infer", "odd.csv", "-o", "soft.yaml", "--target", "label", check=True)
    result = folder.cli("schema", "infer", "odd.csv", "-o", "hard.yaml", "--target", "label",
                        "--strict", check=True)
    assert "hard checks (--strict)" in result.stdout
    hard = yaml.safe_load((folder.path / "hard.yaml").read_text())["columns"]
    assert hard["age"]["ge"] == int(frame["age"].min())
    assert hard["city"]["isin"] == ["Lima", "Oslo", "Pune"]
    new = beyond(frame)
    host = plugin_host()
    soft = validate_frame(host, new, project_dir=folder.path,
                          config={"data": {"schema": "soft.yaml", "target": "label"}})
    assert soft.ok and not soft.invalid_rows
    found = {(f.column, f.check.split("(")[0]): f.failing_rows for f in soft.expectations}
    assert found == {("age", "less_than_or_equal_to"): 7, ("city", "isin"): 4}
    assert soft.unexpected_rows == 10  # row 5 breaks both
    summary = soft.summary()
    assert summary["unexpected_rows"] == 10 and len(summary["expectations"]) == 2
    strict = validate_frame(host, new, project_dir=folder.path,
                            config={"data": {"schema": "hard.yaml", "target": "label"}})
    assert not strict.ok and len(strict.invalid_rows) == 10 and not strict.expectations
    # Serving describes only the hard rules: an expectation does not refuse a record.
    from conveyor.validation import describe_schema

    fields = {f.name: f for f in describe_schema(
        host, config={"data": {"schema": "soft.yaml"}}, project_dir=folder.path).fields}
    assert fields["age"].le is None and fields["city"].isin is None
    fields = {f.name: f for f in describe_schema(
        host, config={"data": {"schema": "hard.yaml"}}, project_dir=folder.path).fields}
    assert fields["age"].le == int(frame["age"].max())


def test_a_numeric_id_gets_no_range(folder):
    """Regression: a numeric id column got the training ids' range as an expectation, so every
    row of a later batch (new customers, new ids) counted as outside expectations in
    `conveyor monitor`, and with --strict was refused."""
    import pandas as pd

    pd.DataFrame({"policy_id": range(1000, 1100), "age": range(100)}).to_csv(
        folder.path / "ids.csv", index=False)
    for strict in ([], ["--strict"]):
        result = folder.cli("schema", "infer", "ids.csv", "--id-column", "policy_id", *strict,
                            check=True)
        columns = yaml.safe_load(result.stdout)["columns"]
        assert columns["policy_id"]["unique"] is True
        assert "ge" not in columns["policy_id"] and "le" not in columns["policy_id"]
        assert "ge" in columns["age"] and "le" in columns["age"]
