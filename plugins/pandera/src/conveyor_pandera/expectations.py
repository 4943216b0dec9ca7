"""Expectations: the column checks a schema marks `raise_warning: true`.

A schema holds two kinds of rules. Hard checks are what a model cannot do without, or what the
user decided data must satisfy: a row that breaks one fails validation (the validate stage
fails or quarantines it; monitoring sets the row aside). Expectations are what the data was seen
to hold: the range of each number and the categories of each text column in the file a schema
was inferred from (`conveyor schema infer` writes them so, unless `--strict`). A value outside
an expectation is counted, per column and check, in `ValidationReport.expectations`, and never
makes a frame invalid. In Pandera's YAML an expectation is a check with its options:

    income:
      dtype: float64
      ge: {min_value: 812.5, raise_warning: true}
      le: {max_value: 48210.0, raise_warning: true}
"""

from __future__ import annotations

from typing import Any

import conveyor

from conveyor_pandera.report import _plain  # failing values are never missing

EXAMPLES = 5


def split(schema: Any) -> tuple[Any, tuple[tuple[str, Any], ...]]:
    """The schema without its column expectations, and those expectations as (column, check)."""
    found: list[tuple[str, Any]] = []
    updates: dict[str, dict[str, Any]] = {}
    for name, column in schema.columns.items():
        soft = [c for c in column.checks if getattr(c, "raise_warning", False)]
        if soft and not column.regex:
            found += [(str(name), check) for check in soft]
            updates[name] = {"checks": [c for c in column.checks if c not in soft]}
    if not updates:
        return schema, ()
    return schema.update_columns(updates), tuple(found)


def count(expectations: tuple[tuple[str, Any], ...], frame: Any
          ) -> tuple[tuple[conveyor.ValidationFailure, ...], int]:
    """Each expectation `frame` breaks, with its failing rows (positions) and a few examples,
    and how many rows break at least one. Missing values are not judged (as Pandera's
    `ignore_na`); a column the frame lacks is the hard checks' business."""
    import numpy as np

    if not expectations or not len(frame):
        return (), 0
    failures = []
    unexpected = np.zeros(len(frame), dtype=bool)
    for name, check in expectations:
        if name not in frame.columns:
            continue
        series = frame[name].reset_index(drop=True)
        failing = _failing(check, series)
        if failing is None or not failing.any():
            continue
        unexpected |= failing
        rows = np.flatnonzero(failing)
        failures.append(conveyor.ValidationFailure(
            column=name, check=_label(check), failing_rows=len(rows),
            examples=tuple((int(r), _plain(series.iat[r])) for r in rows[:EXAMPLES])))
    return tuple(failures), int(unexpected.sum())


def _failing(check: Any, series: Any) -> Any:
    """A boolean array: the non-missing values of `series` that break `check`."""
    import numpy as np
    import pandas as pd

    # An expectation that cannot be evaluated here (a custom check that needs the frame, a
    # value of another type) is not counted: it never decides anything, so it must not crash.
    try:
        result = check(series)
    except Exception:
        if pd.api.types.is_numeric_dtype(series.dtype):
            return None
        numbers = pd.to_numeric(series, errors="coerce")  # numbers that arrived as text
        try:
            result = check(numbers)
        except Exception:
            return None
    output = result.check_output
    if not isinstance(output, pd.Series) or output.dtype != bool:
        return None
    failing = np.zeros(len(series), dtype=bool)
    bad = output.index[~output.to_numpy()]
    failing[np.asarray(bad, dtype=np.int64)] = True
    return failing & series.notna().to_numpy()


def _label(check: Any) -> str:
    stats = check.statistics or {}
    args = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in stats.values())
    return f"{check.name}({args})"
