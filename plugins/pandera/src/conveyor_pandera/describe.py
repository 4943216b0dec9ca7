"""`data.schema` described field by field (`conveyor_describe_schema`), for servers that check
each request's fields before building a frame (conveyor-bentoml builds its request model from
this). What a field cannot say is listed in `unchecked`, never silently dropped. Expectations
(checks marked `raise_warning: true`) are not rules a record must follow, so they are left out."""

from __future__ import annotations

from typing import Any

from conveyor.validation import FieldDescription, SchemaDescription

RANGES = {"greater_than_or_equal_to": ("ge", "min_value"), "greater_than": ("gt", "min_value"),
          "less_than_or_equal_to": ("le", "max_value"), "less_than": ("lt", "max_value")}


def describe(schema: Any, name: str, target: str | None, validator: str) -> SchemaDescription:
    fields, unchecked = [], []
    for column_name, column in schema.columns.items():
        if column.regex:
            unchecked.append(f"{column_name}: columns matching a pattern")
            continue
        limits: dict[str, Any] = {}
        isin = None
        checks = []
        for check in column.checks:
            if getattr(check, "raise_warning", False):
                continue  # an expectation: counted by validation, never refuses a record
            stats = check.statistics or {}
            checks.append(_label(check.name, stats))
            if check.name in RANGES:
                key, stat = RANGES[check.name]
                limits[key] = _bound(stats.get(stat))
            elif check.name == "in_range":
                lower, upper = _bound(stats.get("min_value")), _bound(stats.get("max_value"))
                limits["ge" if stats.get("include_min", True) else "gt"] = lower
                limits["le" if stats.get("include_max", True) else "lt"] = upper
            elif check.name == "equal_to":
                limits["ge"] = limits["le"] = _bound(stats.get("value"))
            elif check.name == "isin":
                isin = tuple(stats.get("allowed_values") or ())
            else:
                unchecked.append(f"{column_name}: {checks[-1]}")
        if None in limits.values():
            unchecked.append(f"{column_name}: a bound that is not a number")
            limits = {k: v for k, v in limits.items() if v is not None}
        if column.unique:
            checks.append("unique")
        fields.append(FieldDescription(
            name=str(column_name), dtype=_kind(column.dtype), nullable=bool(column.nullable),
            required=bool(column.required) and column_name != target, isin=isin,
            unique=bool(column.unique), checks=tuple(checks), **limits))
    for check in schema.checks:
        if check.name != "min_rows":  # a request is a few rows: not held to the row count
            unchecked.append(f"the frame: {_label(check.name, check.statistics or {})}")
    if schema.unique:
        unchecked.append(f"the frame: unique {schema.unique}")
    return SchemaDescription(schema=name, fields=tuple(fields), strict=bool(schema.strict),
                             unchecked=tuple(unchecked), validator=validator)


def _kind(dtype: Any) -> str:
    text = str(dtype).lower()
    if text.startswith(("int", "uint")):
        return "int"
    if text.startswith("float"):
        return "float"
    if text.startswith("bool"):
        return "bool"
    if text.startswith(("str", "string", "object", "category")):
        return "str"
    if text.startswith(("datetime", "timestamp", "date")):
        return "datetime"
    return "other"


def _bound(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _label(name: str | None, stats: dict[str, Any]) -> str:
    args = ", ".join(f"{v!r}" if isinstance(v, str) else str(v) for v in stats.values())
    return f"{name}({args})"
