"""The detailed path: Pandera's lazy validation, turned into a `conveyor.ValidationReport`.

Runs only when the fast path could not prove the frame valid. Every failing check is collected
(`lazy=True`), each with its failing rows and a few examples. One addition to Pandera's report:
when a numeric column arrived as text (a stray word in a CSV column of numbers), Pandera can only
say the column has the wrong type and cannot run the column's other checks; here the column's
numbers are checked too, on a converted copy used for the report only, so a negative age in that
column is named with its row as well.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import conveyor

EXAMPLES = 5
FRIENDLY = {"column_in_dataframe": "column is missing",
            "column_in_schema": "column not in the schema (strict)",
            "not_nullable": "not_nullable (missing value)"}


def detailed(schema: Any, frame: Any, name: str, validator: str) -> conveyor.ValidationReport:
    import pandas as pd

    from conveyor_pandera.schemas import pandera

    pa = pandera()
    if not _positional(frame.index):
        frame = frame.reset_index(drop=True)  # rows are reported by position
    try:
        validated = schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    except pa.errors.SchemaError as exc:  # raised eagerly by some schema-level problems
        cases = pd.DataFrame({"column": [getattr(exc, "column_name", None)],
                              "check": [str(exc.check)], "failure_case": [str(exc)],
                              "index": [None]})
    except (pa.errors.SchemaDefinitionError, pa.errors.BackendNotFoundError) as exc:
        raise conveyor.ConfigError(f"data.schema: {name} cannot validate this data: {exc}") from exc
    else:
        return conveyor.ValidationReport(ok=True, rows=len(frame), schema=name,
                                         validator=validator, data=validated)
    cases = _with_numbers_of_text_columns(schema, frame, cases, pa)
    return _report(cases, frame, schema, name, validator)


def _positional(index: Any) -> bool:
    import pandas as pd

    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def _with_numbers_of_text_columns(schema: Any, frame: Any, cases: Any, pa: Any) -> Any:
    import pandas as pd

    extra, diagnosed = [], []
    for name, column in schema.columns.items():
        if name not in frame.columns or column.dtype is None or not column.checks:
            continue
        expected, actual = column.dtype.type, frame[name].dtype
        if not (_numeric(expected) and not pd.api.types.is_numeric_dtype(actual)
                and not pd.api.types.is_bool_dtype(actual)):
            continue
        numbers = pd.to_numeric(frame[name], errors="coerce").to_frame()
        probe = pa.DataFrameSchema({name: pa.Column(None, checks=column.checks, nullable=True)})
        diagnosed.append(name)
        try:
            probe.validate(numbers, lazy=True)
        except pa.errors.SchemaErrors as exc:
            found = exc.failure_cases
            extra.append(found[found["index"].notna()])
    if not diagnosed:
        return cases
    # Pandera's "TypeError: invalid comparison" on those columns is replaced by the above.
    errors = cases["column"].isin(diagnosed) & cases["index"].isna() & \
        ~cases["check"].astype(str).str.startswith("dtype(")
    return pd.concat([cases[~errors], *extra], ignore_index=True)


def _numeric(dtype: Any) -> bool:
    import numpy as np
    import pandas as pd

    try:
        return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    except TypeError:
        return isinstance(dtype, np.dtype) and dtype.kind in "iuf"


def _report(cases: Any, frame: Any, schema: Any, name: str,
            validator: str) -> conveyor.ValidationReport:
    import pandas as pd

    columns = cases["column"].astype(object).where(cases["column"].notna(), None)
    checks = cases["check"].astype(str)
    values = cases["failure_case"].astype(object)
    rows = pd.to_numeric(cases["index"], errors="coerce")
    # Pandera names a missing or extra column in the value; the report names it as the column.
    by_name = checks.isin(["column_in_dataframe", "column_in_schema"])
    columns = columns.where(~by_name, values)
    checks = checks.map(lambda c: FRIENDLY.get(c, c))
    skip = _null_cells_already_reported(columns, checks, values, rows, schema)
    order: dict[tuple[Any, str], list[int]] = {}
    for i, key in enumerate(zip(columns, checks, strict=True)):
        if not skip[i]:
            order.setdefault(key, []).append(i)
    failures, invalid = [], {}
    for (column, check), members in order.items():
        member_rows = [int(rows.iat[i]) for i in members if not pd.isna(rows.iat[i])]
        label = _label(check, column, frame)
        examples = [(int(rows.iat[i]) if not pd.isna(rows.iat[i]) else None, _plain(values.iat[i]))
                    for i in members[:EXAMPLES]]
        if column is not None and check.startswith("column"):
            examples = []  # the column's name is the whole story
        failures.append(conveyor.ValidationFailure(
            column=None if column is None else str(column), check=label,
            failing_rows=len(set(member_rows)), examples=tuple(examples)))
        reason = f"{column}: {label}" if column is not None else label
        for row in member_rows:
            reasons = invalid.setdefault(row, [])
            if reason not in reasons:
                reasons.append(reason)
    kept = ~pd.Series(skip)
    stored = pd.DataFrame({
        "row": pd.array(rows[kept.to_numpy()], dtype="Int64"),
        "column": columns[kept.to_numpy()].map(lambda c: None if c is None else str(c)),
        "check": checks[kept.to_numpy()],
        "value": values[kept.to_numpy()].map(lambda v: None if _null(v) else str(v)),
    }).astype({"column": "string", "check": "string", "value": "string"})
    return conveyor.ValidationReport(
        ok=False, rows=len(frame), failures=tuple(failures),
        invalid_rows={row: tuple(reasons) for row, reasons in sorted(invalid.items())},
        schema=name, validator=validator, cases=stored.reset_index(drop=True))


def _null_cells_already_reported(columns: Iterable, checks: Any, values: Any, rows: Any,
                                 schema: Any) -> list[bool]:
    """One bad cell, one reason: Pandera reports a missing value in a non-nullable integer
    column up to three times (missing, not convertible, wrong type), and a word in a numeric
    column with `coerce: true` twice. Keep the first of not_nullable, coerce_dtype, dtype."""
    missing, unconvertible = set(), set()
    for c, k, r in zip(columns, checks, rows, strict=True):
        if k.startswith("not_nullable"):
            missing.add((c, r))
        elif k.startswith("coerce_dtype("):
            unconvertible.add((c, r))
    skip = []
    for c, k, v, r in zip(columns, checks, values, rows, strict=True):
        if k.startswith("coerce_dtype("):
            skip.append((c, r) in missing and _null(v))
        elif k.startswith("dtype("):
            skip.append(r == r and ((c, r) in unconvertible or ((c, r) in missing and _null(v))))
        else:
            skip.append(False)
    return skip


def _label(check: str, column: Any, frame: Any) -> str:
    if check.startswith("dtype(") and column is not None and column in frame.columns:
        return f"{check}, got {frame[column].dtype}"
    return check


def _null(value: Any) -> bool:
    try:
        return value is None or bool(value != value)
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    if _null(value):
        return None
    if hasattr(value, "item") and not isinstance(value, str):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return str(value)
    return value
