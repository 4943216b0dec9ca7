"""Monitoring tells drift from breakage (issue 13, item 2), through the real console script.

A schema inferred by `conveyor schema infer` holds the observed ranges and categories as
expectations: a new batch whose values go beyond them is drift with data-quality figures, not an
invalid batch. Rows that break hard checks are set aside and counted; a batch is invalid only
when it cannot be scored. Bad input is recorded as invalid with its reason, and `conveyor watch`
goes on and never processes a batch twice. A broken schema is exit 2, naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conveyor.testing import Project, each_store, store_rows
from monitor_support import configure, customers

ROWS = 1500
ABOVE = 15  # monthly charges above the training file's highest
LONG = 5  # tenures beyond the training file's longest
NEW = 40  # customers of a region the training file never had
WORDS = 10  # text where a number belongs


def fresh_batch(training: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A new week, drawn by a seeded generator of its own: customers whose behaviour changed
    (short tenures, month-to-month), a few values beyond anything in the training file, a new
    region, and a few words in the number column. Each oddity on rows of its own."""
    rng = np.random.default_rng(seed)
    frame = customers(ROWS, seed)
    frame["customer_id"] = [f"N{seed}-{i:05d}" for i in range(ROWS)]
    frame["tenure_months"] = rng.integers(1, 12, ROWS)
    frame["contract"] = rng.choice(["month-to-month", "one-year"], ROWS, p=[0.9, 0.1])
    rows = rng.permutation(ROWS)
    above, long, new, words = np.split(rows[:ABOVE + LONG + NEW + WORDS],
                                       np.cumsum([ABOVE, LONG, NEW]))
    top = float(training["monthly_charges"].max())
    frame.loc[above, "monthly_charges"] = np.round(top + rng.uniform(0.5, 20, ABOVE), 2)
    frame.loc[long, "tenure_months"] = int(training["tenure_months"].max()) + 10
    frame.loc[new, "region"] = "arctic"
    frame["monthly_charges"] = frame["monthly_charges"].astype(object)
    frame.loc[words, "monthly_charges"] = "unknown"
    frame.attrs.update(above=sorted(above.tolist()), words=sorted(words.tolist()), top=top)
    return frame


def monitor(project: Project, *args: str) -> tuple[Any, dict[str, Any] | None]:
    result = project.cli("monitor", *args, "--json")
    try:
        return result, json.loads(result.stdout)
    except ValueError:
        return result, None


def records(project: Project) -> list[dict[str, Any]]:
    return store_rows(project.path, "SELECT * FROM monitor_batches ORDER BY created_at")


def use_schema(project: Project, name: str) -> None:
    path = project.path / "conveyor.yaml"
    config = yaml.safe_load(path.read_text())
    config["data"]["schema"] = name
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture
def training(shop: Project) -> pd.DataFrame:
    return pd.read_csv(shop.path / "data" / "customers.csv")


@each_store  # SQLite, then a fresh PostgreSQL database
def test_an_inferred_schema_turns_values_beyond_its_ranges_into_quality_figures_not_invalid(
        shop, batch, training):
    shop.cli("schema", "infer", "data/customers.csv", "-o", "inferred.yaml", check=True)
    use_schema(shop, "inferred.yaml")
    shop.run(check=True)  # a changed data.schema applies to the models trained after it
    frame = fresh_batch(training, seed=131)
    batch(shop, "week-09.csv", frame)
    result, report = monitor(shop, "--data", "week-09.csv")
    assert report is not None, result.stderr
    # Drift is computed: the behaviour changed. The batch is not invalid.
    assert report["status"] == "drift" and report["invalid"] is None, report["message"]
    assert result.returncode == 1
    assert report["feature_results"]["tenure_months"]["drifted"]
    quality = report["quality"]
    # The words in a number column: set aside and counted, with their rows.
    assert quality["rows"] == ROWS and quality["invalid_rows"] == WORDS
    assert quality["invalid_by_reason"] == {"monthly_charges: not a number": WORDS}
    assert [row for row, _ in quality["invalid_examples"]["monthly_charges: not a number"]] \
        == frame.attrs["words"][:5]
    assert quality["invalid_share"] == pytest.approx(WORDS / ROWS, abs=1e-6)
    # Values outside the expectations: counted per column, the rows stay in.
    assert quality["checked_rows"] == ROWS - WORDS
    columns = quality["columns"]
    charges = columns["monthly_charges"]
    assert charges["unexpected"] == ABOVE
    assert list(charges["checks"].values()) == [ABOVE]
    assert next(iter(charges["checks"])).startswith("less_than_or_equal_to(")
    assert all(value > frame.attrs["top"] for _, value in charges["examples"])
    assert columns["tenure_months"]["unexpected"] == LONG
    assert columns["region"]["unexpected"] == NEW
    assert columns["region"]["unseen_categories"] == {"arctic": NEW}
    assert quality["unexpected_rows"] == ABOVE + LONG + NEW
    assert quality["unexpected_share"] == pytest.approx((ABOVE + LONG + NEW) / (ROWS - WORDS),
                                                        abs=1e-6)
    # Drift is measured on the rows kept.
    assert report["feature_results"]["monthly_charges"]["rows"] + \
        report["feature_results"]["monthly_charges"]["missing"] == ROWS - WORDS
    assert "data quality" in report["message"] and "set aside" in report["message"]
    # The figures are stored with the batch, shown to people, and in the HTML report.
    [row] = records(shop)
    assert row["status"] == "drift"
    assert json.loads(row["details"])["quality"]["unexpected_rows"] == ABOVE + LONG + NEW
    text = shop.cli("monitor", "--data", "week-09.csv")
    assert "data quality" in text.stdout and "monthly_charges" in text.stdout
    assert "outside expectations" in text.stdout
    listing = shop.cli("monitor", "--list").stdout
    assert "set aside" in listing and f"{WORDS} (0.7%)" in listing and "60 (4.0%)" in listing
    html = (shop.path / report["report_html"]).read_text()
    assert "Data quality" in html and "arctic" in html


def test_a_strict_schema_sets_the_breaking_rows_aside_and_too_many_make_the_batch_invalid(
        shop, batch, training):
    done = shop.cli("schema", "infer", "data/customers.csv", "-o", "hard.yaml", "--strict",
                    check=True)
    assert "hard checks" in done.stdout
    hard = yaml.safe_load((shop.path / "hard.yaml").read_text())["columns"]
    assert hard["monthly_charges"]["le"] == float(training["monthly_charges"].max())
    assert hard["region"]["isin"] == sorted(training["region"].unique())
    use_schema(shop, "hard.yaml")
    frame = fresh_batch(training, seed=132)
    batch(shop, "week-10.csv", frame)
    result, report = monitor(shop, "--data", "week-10.csv")
    assert report["status"] == "drift" and report["invalid"] is None, report["message"]
    quality = report["quality"]
    broken = ABOVE + LONG + NEW + WORDS
    assert quality["invalid_rows"] == broken and quality["unexpected_rows"] == 0
    reasons = quality["invalid_by_reason"]
    assert reasons["monthly_charges: not a number"] == WORDS
    assert reasons["region: isin(['east', 'north', 'south', 'west'])"] == NEW
    assert quality["checked_rows"] == ROWS - broken
    # More broken rows than monitor.max_invalid_share allows: invalid, with the reason.
    configure(shop, {"max_invalid_share": 0.02})
    result, report = monitor(shop, "--data", "week-10.csv")
    assert result.returncode == 1 and report["status"] == "invalid"
    assert f"{broken} of {ROWS:,} rows" in report["message"]
    assert "monitor.max_invalid_share=0.02" in report["message"]
    assert report["drift_share"] is None and report["feature_results"] == {}
    configure(shop, {"max_invalid_share": 1.5})
    assert monitor(shop, "--data", "week-10.csv")[0].returncode == 2


def test_training_keeps_the_strictness_the_user_wrote(shop, training):
    shop.cli("schema", "infer", "data/customers.csv", "-o", "inferred.yaml", check=True)
    shop.cli("schema", "infer", "data/customers.csv", "-o", "hard.yaml", "--strict", check=True)
    grown = training.copy()
    grown.loc[:4, "monthly_charges"] = float(training["monthly_charges"].max()) + 50
    grown.to_csv(shop.path / "data" / "customers.csv", index=False)
    use_schema(shop, "inferred.yaml")
    soft = shop.cli("run")
    assert soft.returncode == 0, soft.stderr
    assert "5 of 3,000 rows have values outside 1 expectation" in soft.stdout + soft.stderr
    use_schema(shop, "hard.yaml")
    hard = shop.cli("run")
    assert hard.returncode == 1
    assert "validation failed" in hard.stdout + hard.stderr


BAD_INPUT = {
    "a-missing-column.csv": "cannot be scored: tenure_months: column is missing",
    "b-not-a-table.csv": "",
    "c-empty.csv": "c-empty.csv is empty",
    "d-header-only.csv": "has no rows",
    "e-text-in-numbers.csv": "monitor.max_invalid_share=0.5: monthly_charges: not a number",
    "f-damaged.parquet": "cannot be read as a table",
}


def write_bad_input(inbox: Path) -> None:
    good = customers(600, 141)
    good.drop(columns=["tenure_months"]).to_csv(inbox / "a-missing-column.csv", index=False)
    (inbox / "b-not-a-table.csv").write_bytes(bytes(np.random.default_rng(5).integers(
        0, 256, 4000, dtype=np.uint8)))
    (inbox / "c-empty.csv").write_text("")
    (inbox / "d-header-only.csv").write_text(",".join(good.columns) + "\n")
    text = good.copy()
    text["monthly_charges"] = text["monthly_charges"].astype(object)
    text.loc[: int(len(text) * 0.8), "monthly_charges"] = "see notes"
    text.to_csv(inbox / "e-text-in-numbers.csv", index=False)
    (inbox / "f-damaged.parquet").write_bytes(b"PAR1" + b"\x00garbage" * 50)


@each_store  # SQLite, then a fresh PostgreSQL database
def test_watch_records_bad_batches_as_invalid_with_their_reason_goes_on_and_never_redoes_them(
        shop, batch):
    inbox = shop.path / "inbox"
    inbox.mkdir()
    write_bad_input(inbox)
    batch(shop, "inbox/g-good.csv", customers(800, 142))
    done = shop.cli("watch", "--inbox", "inbox", "--once", "--json")
    assert done.returncode == 0, done.stderr
    handled = {Path(h["file"]).name: h for h in json.loads(done.stdout)}
    assert set(handled) == set(BAD_INPUT) | {"g-good.csv"}
    assert handled["g-good.csv"]["status"] == "ok"
    stored = {Path(r["source"]).name: r for r in records(shop)}
    for name, reason in BAD_INPUT.items():
        assert handled[name]["status"] == "invalid", (name, handled[name])
        record = stored[name]
        assert record["status"] == "invalid"
        assert reason in record["message"], (name, record["message"])
        assert json.loads(record["details"])["invalid"]["reason"]
        assert record["labelled_rows"] == 0 and json.loads(record["performance"]) == {}
    # Again: nothing is processed twice.
    again = shop.cli("watch", "--inbox", "inbox", "--once", "--json")
    assert again.returncode == 0 and json.loads(again.stdout) == []
    assert len(records(shop)) == len(BAD_INPUT) + 1


def test_a_schema_that_does_not_parse_or_shares_no_column_is_exit_2_naming_the_file(
        shop, batch):
    batch(shop, "week.csv", customers(600, 151))
    (shop.path / "other.yaml").write_text(yaml.safe_dump({
        "schema_type": "dataframe", "columns": {"sku": {"dtype": "str"},
                                                "price": {"dtype": "float64"}}}))
    (shop.path / "broken.yaml").write_text("columns:\n  region: [dtype: str\n")
    inbox = shop.path / "inbox"
    inbox.mkdir()
    batch(shop, "inbox/week.csv", customers(600, 152))
    for name, words in (("other.yaml", "shares no column"), ("broken.yaml", "invalid YAML")):
        use_schema(shop, name)
        # the project's schema is for the models trained from now on: training stops, naming it
        run = shop.cli("run")
        assert run.returncode == 2 and name in run.stderr and words in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
        # v1 is monitored with the schema recorded with it (its contract), not this file
        result = shop.cli("monitor", "--data", "week.csv")
        assert result.returncode == 0, result.stderr
    use_schema(shop, "schema.yaml")
    watched = shop.cli("watch", "--inbox", "inbox", "--once", "--json")
    assert [h["status"] for h in json.loads(watched.stdout)] == ["ok"]


def test_watch_retrains_on_a_shift_beyond_the_inferred_ranges(shop, batch, training):
    """The failure the issue reports: infer a schema, then watch shifted weekly batches whose
    values go beyond the training file's. They are drift, and the policy retrains."""
    shop.cli("schema", "infer", "data/customers.csv", "-o", "inferred.yaml", check=True)
    use_schema(shop, "inferred.yaml")
    path = shop.path / "conveyor.yaml"
    config = yaml.safe_load(path.read_text())
    config["retrain"] = {"when": {"drift.share": "> 0.3",
                                  "quality": {"invalid_share": "> 0.5"}}}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    inbox = shop.path / "inbox"
    inbox.mkdir()
    stable = customers(ROWS, 161)
    stable["customer_id"] = [f"S-{i:05d}" for i in range(ROWS)]
    batch(shop, "inbox/week-01.csv", stable)
    batch(shop, "inbox/week-02.csv", fresh_batch(training, seed=162))
    done = shop.cli("watch", "--inbox", "inbox", "--once", "--json")
    assert done.returncode == 0, done.stderr
    first, second = json.loads(done.stdout)
    assert first["status"] == "ok" and first["outcome"] == "no_action"
    assert second["status"] == "drift"
    assert second["outcome"] in ("promoted", "kept"), done.stderr
    listing = json.loads(shop.cli("retrain", "--list", "--json").stdout)
    retrained = listing[-1]
    assert "drift.share" in " ".join(retrained["reasons"])
    # The words in the number column, set aside by monitoring, stay out of the window.
    assert any(f"{WORDS} rows set aside" in note for note in retrained["details"]["notes"])
