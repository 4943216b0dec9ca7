"""The fast path gives Pandera's verdict: on generated frames with every kind of defect, against
schemas using every translated rule (and some that are not translated), `fast.passes` is True
exactly when Pandera's own `validate(lazy=True)` accepts the frame unchanged, and the plugin's
report says ok exactly when Pandera does."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from conveyor_pandera import fast, report, schemas

DEFECTS = ["none", "nan_in_required", "nan_in_nullable", "below_min", "above_max", "at_open_bound",
           "inf", "unknown_category", "null_category", "duplicate_id", "missing_column",
           "extra_column", "float_ints", "text_in_numeric", "empty", "all_nan", "int32",
           "object_text", "categorical", "forbidden", "not_equal", "short_text"]


def frame(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.uniform(0, 100, rows),
        "maybe": np.where(rng.random(rows) < 0.1, np.nan, rng.uniform(-1, 1, rows)),
        "n": rng.integers(1, 50, rows),
        "kind": pd.array(rng.choice(["a", "b", "c"], rows), dtype="str"),
        "flag": rng.random(rows) < 0.5,
        "id": pd.array([f"id{i}" for i in range(rows)], dtype="str"),
        "one": np.full(rows, 7),
    })


def schema(*, strict: bool = True, coerce: bool = False, extra_checks: bool = False
           ) -> pa.DataFrameSchema:
    text_checks = [pa.Check.isin(["a", "b", "c"])]
    if extra_checks:
        text_checks.append(pa.Check.str_length(1, 3))  # not translated: Pandera decides
    return pa.DataFrameSchema({
        "x": pa.Column(float, pa.Check.in_range(0, 100), coerce=coerce),
        "maybe": pa.Column(float, [pa.Check.gt(-1.5), pa.Check.lt(1.5)], nullable=True),
        "n": pa.Column("int64", [pa.Check.ge(1), pa.Check.le(49), pa.Check.notin([99]),
                                 pa.Check.ne(-5)], coerce=coerce),
        "kind": pa.Column(str, text_checks),
        "flag": pa.Column(bool, pa.Check.isin([True, False])),
        "id": pa.Column(str, unique=True),
        "one": pa.Column("int64", pa.Check.eq(7)),
    }, strict=strict, checks=[pa.Check(lambda d: len(d) < 10_000)] if extra_checks else None)


def damaged(defect: str, seed: int) -> pd.DataFrame:
    df = frame(seed=seed)
    row = seed % len(df)
    if defect == "nan_in_required":
        df.loc[row, "x"] = np.nan
    elif defect == "nan_in_nullable":
        df.loc[row, "maybe"] = np.nan
    elif defect == "below_min":
        df.loc[row, "n"] = 0
    elif defect == "above_max":
        df.loc[row, "x"] = 100.5
    elif defect == "at_open_bound":
        df.loc[row, "maybe"] = 1.5
    elif defect == "inf":
        df.loc[row, "x"] = -np.inf
    elif defect == "unknown_category":
        df.loc[row, "kind"] = "zz"
    elif defect == "null_category":
        df.loc[row, "kind"] = None
    elif defect == "duplicate_id":
        df.loc[row, "id"] = df.loc[(row + 1) % len(df), "id"]
    elif defect == "missing_column":
        df = df.drop(columns=["flag"])
    elif defect == "extra_column":
        df["surprise"] = 1
    elif defect == "float_ints":
        df["n"] = df["n"].astype(float)
    elif defect == "text_in_numeric":
        df["n"] = df["n"].astype(str)
        df.loc[row, "n"] = "many"
    elif defect == "empty":
        df = df.iloc[:0]
    elif defect == "all_nan":
        df["maybe"] = np.nan
    elif defect == "int32":
        df["n"] = df["n"].astype("int32")
    elif defect == "object_text":
        df["kind"] = df["kind"].astype(object)
    elif defect == "categorical":
        df["kind"] = df["kind"].astype("category")
    elif defect == "forbidden":
        df.loc[row, "n"] = 99
    elif defect == "not_equal":
        df.loc[row, "n"] = -5
    elif defect == "short_text":
        df.loc[row, "kind"] = "abcd"
    return df


def pandera_verdict(s: pa.DataFrameSchema, df: pd.DataFrame) -> tuple[bool, bool]:
    """(Pandera accepts it, and returns it with the same dtypes)."""
    try:
        out = s.validate(df, lazy=True)
    except pa.errors.SchemaErrors:
        return False, False
    return True, out.dtypes.to_dict() == df.dtypes.to_dict()


CASES = list(itertools.product(DEFECTS, [False, True], [False, True], [True, False]))


@pytest.mark.parametrize(("defect", "coerce", "extra_checks", "strict"), CASES)
def test_fast_path_and_report_give_panderas_verdict(defect, coerce, extra_checks, strict):
    s = schema(strict=strict, coerce=coerce, extra_checks=extra_checks)
    for seed in (0, 1, 2):
        df = damaged(defect, seed)
        accepted, unchanged = pandera_verdict(s, df)
        assert fast.passes(s, df) == (accepted and unchanged), (defect, seed)
        detail = report.detailed(s, df, "test", "pandera") if not fast.passes(s, df) else None
        if detail is not None:
            assert detail.ok == accepted, (defect, seed, detail.failures)


def test_min_rows_is_a_frame_check_with_a_yaml_form(tmp_path):
    (tmp_path / "s.yaml").write_text("columns:\n  a: {dtype: int64}\nchecks: {min_rows: 3}\n")
    loaded = schemas.load("s.yaml", tmp_path, import_target=None)
    assert fast.passes(loaded.schema, pd.DataFrame({"a": [1, 2, 3]}))
    assert not fast.passes(loaded.schema, pd.DataFrame({"a": [1, 2]}))
    found = report.detailed(loaded.schema, pd.DataFrame({"a": [1, 2]}), "s.yaml", "pandera")
    assert not found.ok and found.failures[0].column is None
    assert found.failures[0].check.startswith("min_rows")
    # a serving request is a few rows: the row count does not apply to it
    assert fast.passes(schemas.for_purpose(loaded, "request", None), pd.DataFrame({"a": [1]}))


def test_a_frame_with_a_non_default_index_reports_positions():
    s = schema()
    df = frame().set_index(pd.Index(range(1000, 1200)))
    df.iloc[5, df.columns.get_loc("x")] = -1.0
    found = report.detailed(s, df, "test", "pandera")
    assert list(found.invalid_rows) == [5]
    assert found.failures[0].examples == ((5, -1.0),)
