"""Validating data against the project's schema (`data.schema`), whichever plugin validates it.

The core defines what a validation says (`ValidationReport`, `ValidationFailure`) and asks the
installed plugins through the first-result hooks `conveyor_check_schema` and
`conveyor_validate_frame` (see `conveyor.hookspecs`); `describe_schema` asks
`conveyor_describe_schema` for the schema's fields, so a server can check each request's
fields before it builds a frame. Training data (the `conveyor.validate`
stage, or any stage through `StageContext.validate`), monitoring batches and serving requests
all validate through `validate_frame`, so one schema guards all three and the validation plugin
(conveyor-pandera) can be replaced by another without touching its callers.

Rows are positions in the validated frame, counted from 0 (row 0 of a CSV is its second line).

A schema separates what a model cannot do without (columns, types, the rules the user wrote as
hard checks) from *expectations*: what the data was seen to hold (observed ranges, known
categories; `conveyor schema infer` writes them so). Values outside an expectation never make a
report not ok; they are counted in `ValidationReport.expectations`, so training can warn about
them and monitoring can count them as a data-quality figure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigError, PluginError

PURPOSES = ("train", "batch", "request")
NO_VALIDATOR_HINT = "install a validation plugin: pip install conveyor-pandera"


@dataclass(frozen=True)
class ValidationFailure:
    """One failing check: on a column (`column`), or on the frame as a whole (`column` None).

    `failing_rows` counts the rows that fail it; 0 when no row is to blame (a missing column, a
    column of the wrong type, too few rows), which no dropping of rows can fix.
    `examples` are a few `(row, value)` pairs; row is None when the value is not a cell's (the
    name of a missing column, a column's type).
    """

    column: str | None
    check: str
    failing_rows: int
    examples: tuple[tuple[int | None, Any], ...] = ()

    @property
    def about_rows(self) -> bool:
        return self.failing_rows > 0


@dataclass(frozen=True, eq=False)
class ValidationReport:
    """What a validation found.

    `invalid_rows` maps each invalid row's position to its reasons ("column: check").
    `data` is the validated frame when `ok` (converted where the schema says `coerce: true`,
    otherwise the frame given). `cases` is every failing cell when not ok, as a DataFrame with
    columns row, column, check, value (value as text), for storing as an artifact.
    `expectations` are the failing checks the schema marks as expectations (Pandera:
    `raise_warning: true`), each with its failing rows; they do not affect `ok`.
    `unexpected_rows` counts the rows with at least one value outside an expectation.
    """

    ok: bool
    rows: int
    failures: tuple[ValidationFailure, ...] = ()
    invalid_rows: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    schema: str | None = None
    validator: str = ""
    data: Any = field(default=None, repr=False)
    cases: Any = field(default=None, repr=False)
    expectations: tuple[ValidationFailure, ...] = ()
    unexpected_rows: int = 0

    @property
    def checked(self) -> bool:
        """False when there was nothing to validate against (`data.schema` unset)."""
        return self.schema is not None

    @property
    def invalid_fraction(self) -> float:
        return len(self.invalid_rows) / self.rows if self.rows else 0.0

    @property
    def not_about_rows(self) -> tuple[ValidationFailure, ...]:
        """Failures no row is to blame for: dropping invalid rows cannot fix them."""
        return tuple(f for f in self.failures if not f.about_rows)

    def valid_part(self, frame: Any) -> Any:
        """The rows of `frame` (the frame that was validated) that passed every check."""
        if not self.invalid_rows:
            return frame
        import numpy as np

        keep = np.ones(len(frame), dtype=bool)
        keep[np.fromiter(self.invalid_rows, dtype=np.int64, count=len(self.invalid_rows))] = False
        return frame.iloc[keep]

    def invalid_part(self, frame: Any, *, reasons_column: str = "_reasons") -> Any:
        """The invalid rows of `frame`, with their position (`_row`) and why they failed."""
        rows = sorted(self.invalid_rows)
        part = frame.iloc[rows]
        return part.assign(**{"_row": rows, reasons_column: ["; ".join(self.invalid_rows[r])
                                                            for r in rows]})

    def summary(self) -> dict[str, Any]:
        """A JSON-able account: counts, and each failure with its examples (and, when values
        fell outside the schema's expectations, those too)."""
        summary = {
            "ok": self.ok, "schema": self.schema, "validator": self.validator,
            "rows": self.rows, "invalid_rows": len(self.invalid_rows),
            "invalid_fraction": round(self.invalid_fraction, 6),
            "failures": [_failure_summary(f) for f in self.failures],
        }
        if self.expectations:
            summary["unexpected_rows"] = self.unexpected_rows
            summary["expectations"] = [_failure_summary(f) for f in self.expectations]
        return summary


def _failure_summary(failure: ValidationFailure) -> dict[str, Any]:
    return {"column": failure.column, "check": failure.check,
            "failing_rows": failure.failing_rows,
            "examples": [[row, _jsonable(value)] for row, value in failure.examples]}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    return str(value)


def check_schema(host: Any, schema: str, *, project_dir: Path,
                 import_target: Callable[[str], Any] | None = None) -> str:
    """Ask the installed plugins whether `data.schema` is usable; returns its description.

    Raises ConfigError when no plugin handles it, or when the one that does finds it broken."""
    answer, _ = host.call_first("conveyor_check_schema", schema=schema,
                                project_dir=Path(project_dir),
                                import_target=import_target or _importer(host, project_dir, {}))
    if answer is None:
        raise _no_validator(schema)
    return str(answer)


def validate_frame(host: Any, frame: Any, *, config: Mapping[str, Any], project_dir: Path,
                   purpose: str = "train",
                   import_target: Callable[[str], Any] | None = None) -> ValidationReport:
    """Validate `frame` against the schema of a project's resolved `config` (`data.schema`).

    `host` is the plugin host a command or stage runs with (a CLI command's `app.host`).
    `purpose` is "train", "batch" (a monitoring batch) or "request" (a serving request); see
    `conveyor_validate_frame`. With `data.schema` unset the report is ok and `checked` is False.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}")
    data = config.get("data") or {}
    schema = data.get("schema")
    if not schema:
        return ValidationReport(ok=True, rows=len(frame), data=frame)
    report, plugin = host.call_first(
        "conveyor_validate_frame", frame=frame, schema=schema, purpose=purpose,
        project_dir=Path(project_dir), target=data.get("target"),
        import_target=import_target or _importer(host, project_dir, config))
    if report is None:
        raise _no_validator(schema)
    if not isinstance(report, ValidationReport):
        raise PluginError(f"plugin {host.describe(plugin)} answered conveyor_validate_frame with "
                          f"{type(report).__name__}, not a conveyor.ValidationReport")
    return report


@dataclass(frozen=True)
class FieldDescription:
    """One column of a schema, as a request's field.

    `dtype` is "int", "float", "str", "bool", "datetime" or "other" (any JSON value).
    `required`: a record must carry it (False for the target, and for optional columns).
    `ge`/`gt`/`le`/`lt` bound numbers, `isin` lists the allowed values, `unique` asks that
    no two records of one request share a value. `checks` names the schema's rules as the
    validation plugin calls them (for messages: "greater_than_or_equal_to(1)").
    """

    name: str
    dtype: str
    nullable: bool = False
    required: bool = True
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    isin: tuple[Any, ...] | None = None
    unique: bool = False
    checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class SchemaDescription:
    """A schema described field by field (`conveyor_describe_schema`).

    `strict`: columns not listed are refused by the schema itself. `unchecked` names every
    rule the fields do not express (custom checks, regex columns, frame-wide checks); whoever
    validates with the description alone must still call `validate_frame` for those.
    """

    schema: str
    fields: tuple[FieldDescription, ...]
    strict: bool = False
    unchecked: tuple[str, ...] = ()
    validator: str = ""

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        data = asdict(self)
        for item in data["fields"]:
            if item["isin"] is not None:
                item["isin"] = list(item["isin"])
        data["fields"] = list(data["fields"])
        data["unchecked"] = list(self.unchecked)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SchemaDescription:
        fields = tuple(FieldDescription(**{**f, "isin": None if f.get("isin") is None
                                           else tuple(f["isin"]),
                                           "checks": tuple(f.get("checks") or ())})
                       for f in data.get("fields") or ())
        return cls(schema=data["schema"], fields=fields, strict=bool(data.get("strict")),
                   unchecked=tuple(data.get("unchecked") or ()),
                   validator=str(data.get("validator") or ""))


def describe_schema(host: Any, *, config: Mapping[str, Any], project_dir: Path,
                    import_target: Callable[[str], Any] | None = None
                    ) -> SchemaDescription | None:
    """The fields of a project's `data.schema` (None when `data.schema` is unset).

    Raises ConfigError when no installed plugin describes the schema, PluginError when the one
    that does answers with something other than a SchemaDescription."""
    data = config.get("data") or {}
    schema = data.get("schema")
    if not schema:
        return None
    answer, plugin = host.call_first(
        "conveyor_describe_schema", schema=schema, project_dir=Path(project_dir),
        target=data.get("target"),
        import_target=import_target or _importer(host, project_dir, config))
    if answer is None:
        raise ConfigError(f"data.schema is set ({schema}), but no installed plugin describes "
                          "its fields", hint=NO_VALIDATOR_HINT)
    if not isinstance(answer, SchemaDescription):
        raise PluginError(f"plugin {host.describe(plugin)} answered conveyor_describe_schema "
                          f"with {type(answer).__name__}, not a SchemaDescription")
    return answer


def _importer(host: Any, project_dir: Path, config: Mapping[str, Any]) -> Callable[[str], Any]:
    from conveyor.targets import project_importer

    allowed = (config.get("security") or {}).get("allowed_targets") or []
    return project_importer(Path(project_dir), host.contributions.target_prefixes, allowed)


def _no_validator(schema: str) -> ConfigError:
    return ConfigError(f"data.schema is set ({schema}), but no installed plugin validates it",
                       hint=NO_VALIDATOR_HINT + ", or unset data.schema")


def schema_files(schema: str | None) -> list[str]:
    """Files whose content a schema depends on, for fingerprints: the schema file, or the
    project module of an import path (`schemas.Customers` -> schemas.py)."""
    if not schema:
        return []
    if schema.endswith((".yaml", ".yml", ".json")) or os.sep in schema or "/" in schema:
        return [schema]
    parts = schema.replace(":", ".").split(".")
    files = [schema]
    for cut in range(1, len(parts)):
        module = "/".join(parts[:cut])
        files += [f"{module}.py", f"{module}/__init__.py"]
    return files


def schema_snapshot(host: Any, schema: str, *, project_dir: Path,
                    import_target: Callable[[str], Any] | None = None) -> Any:
    """The content of `data.schema` as a `conveyor.SchemaSnapshot` (`conveyor_schema_snapshot`),
    its `origin` set to `schema`; None when no installed plugin can write it out."""
    from dataclasses import replace

    from conveyor.contract import SchemaSnapshot

    answer, plugin = host.call_first(
        "conveyor_schema_snapshot", schema=schema, project_dir=Path(project_dir),
        import_target=import_target or _importer(host, project_dir, {}))
    if answer is None:
        return None
    if not isinstance(answer, SchemaSnapshot):
        raise PluginError(f"plugin {host.describe(plugin)} answered conveyor_schema_snapshot "
                          f"with {type(answer).__name__}, not a conveyor.SchemaSnapshot")
    return replace(answer, origin=schema)


def infer_schema(host: Any, frame: Any, *, source: str | None, target: str | None,
                 id_column: str | None, project_dir: Path) -> Any:
    """A schema inferred from training data (`conveyor_infer_schema`), as a
    `conveyor.SchemaSnapshot` with no `origin`; None when no installed plugin infers one."""
    from dataclasses import replace

    from conveyor.contract import SchemaSnapshot

    answer, plugin = host.call_first("conveyor_infer_schema", frame=frame, source=source,
                                     target=target, id_column=id_column,
                                     project_dir=Path(project_dir))
    if answer is None:
        return None
    if not isinstance(answer, SchemaSnapshot):
        raise PluginError(f"plugin {host.describe(plugin)} answered conveyor_infer_schema "
                          f"with {type(answer).__name__}, not a conveyor.SchemaSnapshot")
    return replace(answer, origin=None, written_by=answer.written_by or "inferred by the run")
