"""The fast path: decide whether a frame passes a Pandera schema, without Pandera's overhead.

Most data is valid, and proving that needs far less than Pandera's `validate(lazy=True)` does:
it copies the frame, runs each check as a boolean mask over every row, and builds failure
cases. Here each rule becomes one vectorised reduction over the column's own buffer (no copy):
ranges are a min and a max, nullability a null count, `isin` a set of distinct values. Whatever
is not translated below (custom checks, regex columns, parsers, groupby checks, object columns)
is left to Pandera itself, on those columns only.

`passes` answers True only when Pandera would accept the frame unchanged (no coercion needed);
any doubt answers False, and the caller then runs Pandera's own lazy validation for the
verdict and the detailed report. Tests compare the verdicts with Pandera's.
"""

from __future__ import annotations

import math
from typing import Any

# Pandera checks translated here, by their registered name.
RANGE_CHECKS = {"greater_than", "greater_than_or_equal_to", "less_than", "less_than_or_equal_to",
                "in_range", "equal_to"}
SET_CHECKS = {"isin", "notin"}
SCHEMA_OPTIONS_LEFT_TO_PANDERA = ("dtype", "unique", "add_missing_columns", "drop_invalid_rows",
                                  "parsers")


class _Doubt(Exception):
    """Not decidable here: leave the verdict to Pandera."""


def passes(schema: Any, frame: Any) -> bool:
    """True only if Pandera would validate `frame` against `schema` and return it unchanged."""
    try:
        return _passes(schema, frame)
    except _Doubt:
        return False
    except (TypeError, ValueError, OverflowError):
        return False  # an unexpected type of value or bound: Pandera will say what is wrong


def _passes(schema: Any, frame: Any) -> bool:
    import pandas as pd

    if not isinstance(frame, pd.DataFrame) or frame.columns.has_duplicates:
        return False
    if any(getattr(schema, option, None) for option in SCHEMA_OPTIONS_LEFT_TO_PANDERA):
        return False
    if schema.strict == "filter" or schema.ordered or schema.unique_column_names:
        return False
    if schema.index is not None and not _index_passes(schema.index, frame.index):
        return False
    columns = schema.columns
    present = set(frame.columns)
    if schema.strict and present - set(columns):
        return False
    work = []
    for name, column in columns.items():
        if column.regex:
            return False
        if name not in present:
            if column.required:
                return False
            continue
        work.append((name, column, frame[name]))
    left_to_pandera = []
    for name, verdict in _each_column(work, schema.coerce):
        if verdict is None:
            left_to_pandera.append(name)
        elif not verdict:
            return False
    frame_checks = []
    for check in schema.checks:
        if check.raise_warning:
            continue
        if check.name == "min_rows" and check.statistics.get("min_value") is not None:
            if len(frame) < check.statistics["min_value"]:
                return False
        else:
            frame_checks.append(check)
    if left_to_pandera or frame_checks:
        return _pandera_passes(schema, frame, left_to_pandera, frame_checks)
    return True


def _each_column(work: list[tuple[str, Any, Any]],
                 coerce_all: bool) -> list[tuple[str, bool | None]]:
    """Each column's verdict, stopping at the first column that fails."""
    verdicts: list[tuple[str, bool | None]] = []
    for name, column, series in work:
        verdicts.append((name, _column_passes(column, series, coerce_all)))
        if verdicts[-1][1] is False:
            break
    return verdicts


def _pandera_passes(schema: Any, frame: Any, names: list[str], checks: list[Any]) -> bool:
    """Pandera itself, on the columns and frame-wide checks not translated here."""
    from conveyor_pandera.schemas import pandera

    pa = pandera()
    partial = schema.__class__(columns={n: schema.columns[n] for n in names}, checks=checks,
                               coerce=schema.coerce)
    subset = frame[names] if not checks else frame
    try:
        validated = partial.validate(subset, lazy=False)
    except (pa.errors.SchemaError, pa.errors.SchemaErrors):
        return False
    # Coercion changed something: let the full validation produce the converted frame.
    return all(validated[n].dtype == frame[n].dtype for n in names)


def _index_passes(index_schema: Any, index: Any) -> bool:
    from pandera.engines import pandas_engine

    if getattr(index_schema, "indexes", None) is not None:  # a MultiIndex
        raise _Doubt
    if index_schema.checks or index_schema.unique or index_schema.coerce or index_schema.name:
        raise _Doubt
    if not index_schema.nullable and index.hasnans:
        return False
    return index_schema.dtype is None or _dtype_matches(index_schema.dtype, index.dtype,
                                                        pandas_engine)


def _dtype_matches(expected: Any, actual: Any, engine: Any) -> bool:
    result = expected.check(engine.Engine.dtype(actual))
    if not isinstance(result, bool):
        raise _Doubt
    return result


def _column_passes(column: Any, series: Any, coerce_all: bool) -> bool | None:
    """True/False when decided here; None to leave the column to Pandera."""
    import numpy as np
    import pandas as pd
    from pandera.engines import pandas_engine

    dtype = series.dtype
    kind = dtype.kind if isinstance(dtype, np.dtype) else None
    is_text = isinstance(dtype, pd.StringDtype)
    if (kind is None or kind not in "biufM") and not is_text:
        return None  # object, categorical, extension types: Pandera looks at the values
    if column.parsers or column.default is not None or column.drop_invalid_rows:
        return None
    if column.dtype is not None and not _dtype_matches(column.dtype, dtype, pandas_engine):
        return None if (column.coerce or coerce_all) else False
    values = series.array if is_text else series.to_numpy(copy=False)
    low = None
    if kind == "f" and len(values):
        low = values.min()  # NaN when a value is NaN: the null check and the minimum in one pass
        nulls = math.isnan(low)
    else:
        nulls = _has_nulls(values, kind, is_text)
    if nulls and not column.nullable:
        return False
    if column.unique and not series.is_unique:
        return False
    bounds: tuple[Any, Any] | None = None
    for check in column.checks:
        if check.raise_warning:
            continue
        if check.groupby is not None or check.element_wise or not check.ignore_na:
            return None
        name, stats = check.name, check.statistics or {}
        if name in RANGE_CHECKS and kind is not None and kind in "iuf":
            if bounds is None:
                bounds = _min_max(values, kind, nulls, low)
            if bounds is not None and not _in_bounds(name, stats, *bounds):
                return False
        elif name in SET_CHECKS:
            if not _set_check(name, stats, series, values, is_text, nulls):
                return False
        elif name == "not_equal_to" and kind is not None and kind in "iuf":
            if bool((values == stats["value"]).any()):
                return False
        else:
            return None
    return True


def _has_nulls(values: Any, kind: str | None, is_text: bool) -> bool:
    import numpy as np

    if is_text:
        return bool(values.isna().any())
    if kind == "f":
        return bool(np.isnan(values.min())) if len(values) else False
    if kind == "M":
        return bool(np.isnat(values).any())
    return False


def _min_max(values: Any, kind: str, nulls: bool, low: Any = None) -> tuple[Any, Any] | None:
    """The smallest and largest non-null values; None when there are none."""
    import numpy as np

    if len(values) == 0:
        return None
    if kind == "f" and nulls:
        low, high = np.fmin.reduce(values), np.fmax.reduce(values)  # NaN-ignoring
        return None if math.isnan(low) else (low, high)
    return (values.min() if low is None else low), values.max()


def _in_bounds(name: str, stats: dict[str, Any], low: Any, high: Any) -> bool:
    if name == "greater_than":
        return bool(low > stats["min_value"])
    if name == "greater_than_or_equal_to":
        return bool(low >= stats["min_value"])
    if name == "less_than":
        return bool(high < stats["max_value"])
    if name == "less_than_or_equal_to":
        return bool(high <= stats["max_value"])
    if name == "equal_to":
        return bool(low == stats["value"] and high == stats["value"])
    # in_range
    above = low >= stats["min_value"] if stats.get("include_min", True) else low > stats["min_value"]
    below = high <= stats["max_value"] if stats.get("include_max", True) else high < stats["max_value"]
    return bool(above and below)


def _set_check(name: str, stats: dict[str, Any], series: Any, values: Any, is_text: bool,
               nulls: bool) -> bool:
    import pandas as pd

    allowed = stats.get("allowed_values" if name == "isin" else "forbidden_values")
    if allowed is None:
        raise _Doubt
    arrow = getattr(values, "_pa_array", None) if is_text else None
    if arrow is not None:
        return _arrow_set_check(name, list(allowed), arrow)
    if is_text:
        distinct = [v for v in pd.unique(values) if isinstance(v, str)]
    else:
        distinct = pd.unique(values)
        if len(distinct) > 4096:  # a wide column: one pass of Series.isin costs less
            found = series.isin(list(allowed))
            hit = bool(found.all()) if name == "isin" else not bool(found.any())
            if name == "isin" and not hit and nulls:
                hit = bool((found | series.isna()).all())
            return hit
        distinct = [v for v in distinct.tolist() if not (isinstance(v, float) and math.isnan(v))]
    wanted = set(allowed)
    if name == "isin":
        return all(v in wanted for v in distinct)
    return not any(v in wanted for v in distinct)


def _arrow_set_check(name: str, allowed: list[Any], arrow: Any) -> bool:
    """Arrow's hash lookup over the string buffer, with the value set in the column's own
    string type (a mismatch would cast the whole column first); counted, not materialised."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not all(isinstance(v, str) for v in allowed):
        raise _Doubt
    found = pc.is_in(arrow, value_set=pa.array(allowed, type=arrow.type))  # nulls: False
    hits = pc.sum(found).as_py() or 0
    if name == "isin":
        return hits + arrow.null_count == len(arrow)  # nulls are not judged (ignore_na)
    return hits == 0
