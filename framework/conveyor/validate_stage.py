"""The core stage type `conveyor.validate`: check the `data` input against `data.schema` before
anything learns from it, and apply the policy `validate.on_failure`.

- `fail` (default): print a table of the failures, store them, fail the run (exit 1).
- `quarantine`: move the invalid rows (with their reasons) to the `quarantine` artifact and go
  on with the valid rows, when their share is at most `validate.max_invalid_fraction` and the
  rest then passes; otherwise fail as above.
- `warn`: print and store the failures, and go on with every row.

Values outside the schema's expectations (checks it marks as such, e.g. the observed ranges
`conveyor schema infer` writes) are printed as a warning and counted
(`validation.unexpected_rows`) whatever the policy; they never fail the stage.

Outputs: `data` (in memory only: the rows to go on with), `validation` (a JSON summary),
`failures` (every failing cell, a DataFrame) when something failed, `quarantine` when rows were
dropped, and `contract`: the schema's content (a `conveyor.SchemaSnapshot`), the data source,
target and id column, which the register stage records with the model version. Failure counts
are recorded as metrics. The schema itself is a validation plugin's business
(`conveyor.validation`).

With `data.schema` unset, the validation plugin infers a schema from the data (its columns and
types: what a model cannot score without), the stage says so in one line, and the inferred
schema becomes the model's contract; `data` passes through untouched.

A schema that records the data file it was written for (`SchemaSnapshot.describes`: a schema
inferred from a file does) is not applied to another `data.source` that lacks most of its
columns: the run stops (exit 2) naming both files and the fix. A template's schema of its own
sample data (`written_by` "conveyor init") is instead replaced by a schema inferred from the new
source, with a line saying so, and so is the template's id column when the new data lacks it.
With at least half of its columns (a new batch of the same data, a broken one too), the schema
applies, and the log says whose it is.
A `data.id_column` the data lacks stops the run here, not when the model is used.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.contributions import CheckContext, StageType
from conveyor.errors import ConfigError, StageFailed
from conveyor.stage_context import StageContext
from conveyor.validation import ValidationReport, schema_files

POLICIES = ("fail", "quarantine", "warn")
TABLE_ROWS = 40
EXAMPLES = 3


@dataclass
class ValidateSettings:
    schema: str | None = None
    on_failure: str = "fail"
    max_invalid_fraction: float = 0.05
    source: str | None = None     # data.source (default: the run's)
    target: str | None = None     # data.target (default: the run's)
    id_column: str | None = None  # data.id_column (default: the run's)


def _check(settings: Mapping[str, Any], ctx: CheckContext) -> None:
    if settings["on_failure"] not in POLICIES:
        raise ConfigError(f"invalid value '{settings['on_failure']}' for validate.on_failure: "
                          f"it must be one of {', '.join(POLICIES)}")
    if not 0 <= settings["max_invalid_fraction"] <= 1:
        raise ConfigError(f"validate.max_invalid_fraction={settings['max_invalid_fraction']}: "
                          "the share of rows that may be dropped must be between 0 and 1")
    if settings["schema"] and ctx.check_schema is not None:
        ctx.check_schema(settings["schema"])


def _input_files(settings: Mapping[str, Any]) -> Iterable[str]:
    return schema_files(settings.get("schema"))


def _validate(ctx: StageContext) -> Mapping[str, Any]:
    frame = ctx.inputs["data"]
    schema = ctx.settings["schema"]
    data = ctx.config.get("data") or {}
    source, target, id_column = (ctx.settings.get(key) or data.get(key)
                                 for key in ("source", "target", "id_column"))
    snapshot = ctx.schema_snapshot(schema) if schema else None
    replaced = ""
    if snapshot is not None and not _fits(ctx, snapshot, source, frame):
        if snapshot.written_by != "conveyor init":
            missing = [c for c in snapshot.columns if c not in frame.columns]
            raise ConfigError(
                f"data.schema {schema} was written for {snapshot.describes}, not for "
                f"data.source {source}: {source} lacks its column(s) "
                + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""),
                hint=f"write a schema for {source} with `conveyor schema infer {source} -o "
                     f"{Path(str(source)).stem}.schema.yaml` and point data.schema at it, or set "
                     "data.schema=null to have the run infer one")
        replaced = f"{schema} describes the template's sample data {snapshot.describes}"
        if id_column and id_column not in frame.columns and id_column in snapshot.columns:
            ctx.log(f"data.id_column {id_column} is the sample's id column, not a column of "
                    f"{source}: rows are identified by position (set data.id_column to name one)")
            id_column = None
        schema, snapshot = None, None
    if id_column and id_column not in frame.columns:
        import difflib

        close = difflib.get_close_matches(str(id_column), [str(c) for c in frame.columns], n=1)
        raise StageFailed(
            f"data.id_column '{id_column}' is not a column of {source}"
            + (f"; did you mean '{close[0]}'?" if close else ""),
            hint="set data.id_column to the column that identifies rows, or data.id_column=null "
                 "(predictions are then identified by row position); columns: "
                 + ", ".join(map(str, frame.columns[:30])))
    contract = {"source": source, "target": target, "id_column": id_column,
                "schema": None if snapshot is None else snapshot.to_dict(),
                "schema_ref": schema if schema and snapshot is None else None}
    if not schema:
        inferred = ctx.infer_schema(frame, source=source, target=target, id_column=id_column)
        if inferred is not None:
            contract["schema"] = inferred.to_dict()
            ctx.log(f"{replaced + ', not ' + str(source) if replaced else 'no data.schema'}: "
                    f"inferred one from {source or 'the data'} ({len(inferred.columns)} columns, "
                    "their types) as this model's contract; `conveyor schema infer "
                    f"{source or 'DATA'} -o FILE` writes one to edit (then set data.schema)")
        return {"data": frame, "validation": {"ok": True, "schema": None, "rows": len(frame),
                                              "inferred": inferred is not None},
                "contract": contract}
    clock = time.perf_counter()
    report = ctx.validate(frame, "train", schema=schema)
    took = time.perf_counter() - clock
    summary = {**report.summary(), "seconds": round(took, 4)}
    if report.expectations:
        _warn_expectations(ctx, report, schema)
    if report.ok:
        ctx.log(f"{report.rows:,} rows valid against {schema} ({report.validator}, {took:.2f}s)")
        return {"data": frame if report.data is None else report.data, "validation": summary,
                "contract": contract}

    ctx.log_metrics({"validation.failed_checks": len(report.failures),
                     "validation.invalid_rows": len(report.invalid_rows)})
    ctx.log(f"{_count(report)} against {schema}:\n" + failure_table(report))
    evidence = {"failures": report.cases} if report.cases is not None else {}
    policy = ctx.settings["on_failure"]
    if policy == "warn":
        ctx.log("warning: going on with every row, the invalid ones too (validate.on_failure=warn)")
        return {"data": frame, "validation": summary, "contract": contract, **evidence}
    if policy == "quarantine":
        outputs, problem = _quarantine(ctx, frame, report, summary, evidence)
        if outputs is not None:
            return {**outputs, "contract": contract}
        raise StageFailed(f"validation failed, and quarantine cannot save the run: {problem}",
                          hint="fix the data or the schema; every failing cell is stored as "
                               "artifact 'failures' of this run",
                          outputs={"validation": summary, **evidence})
    raise StageFailed(
        f"validation failed: {_count(report)} against {schema}; no model is trained on "
        "invalid data",
        hint="fix the data or the schema (every failing cell is stored as artifact 'failures' "
             "of this run), or set validate.on_failure=quarantine to drop the invalid rows",
        outputs={"validation": summary, **evidence})


def _quarantine(ctx: StageContext, frame: Any, report: ValidationReport, summary: dict,
                evidence: dict) -> tuple[dict[str, Any] | None, str]:
    blameless = report.not_about_rows
    if blameless:
        return None, ("these failures are not about particular rows, so dropping rows cannot "
                      "fix them: " + "; ".join(_name(f) for f in blameless))
    limit = ctx.settings["max_invalid_fraction"]
    if report.invalid_fraction > limit:
        return None, (f"{report.invalid_fraction:.1%} of the rows are invalid, more than "
                      f"validate.max_invalid_fraction={limit}")
    valid = report.valid_part(frame)
    again = ctx.validate(valid, "train", schema=ctx.settings["schema"])
    if not again.ok:
        return None, (f"after dropping the {len(report.invalid_rows):,} invalid rows, the rest "
                      "still fails: " + "; ".join(_name(f) for f in again.failures)
                      + " (a column's type changes only where the schema says coerce: true)")
    dropped = len(report.invalid_rows)
    ctx.log_metrics({"validation.dropped_rows": dropped})
    ctx.log(f"quarantined {dropped:,} of {report.rows:,} rows ({report.invalid_fraction:.2%}, "
            f"at most {limit:.0%} allowed): " + "; ".join(
                f"{_name(f)} {f.failing_rows:,}" for f in report.failures)
            + f"; going on with the {again.rows:,} valid rows")
    summary = {**summary, "dropped_rows": dropped, "kept_rows": again.rows,
               "dropped_by_check": {_name(f): f.failing_rows for f in report.failures}}
    data = valid if again.data is None else again.data
    return {"data": data, "validation": summary, "quarantine": report.invalid_part(frame),
            **evidence}, ""


def _fits(ctx: StageContext, snapshot: Any, source: str | None, frame: Any) -> bool:
    """May the schema be applied to this data? Yes unless it says it was written for another
    file and this data lacks most of its columns (it is then another kind of file, not the same
    data with problems, which validation reports); otherwise the log says whose it is."""
    if not snapshot.describes or not source:
        return True
    here = Path(ctx.project_dir)
    if (here / snapshot.describes).resolve() == (here / source).resolve():
        return True
    shared = [c for c in snapshot.columns if c in frame.columns]
    if not snapshot.columns or len(shared) * 2 >= len(snapshot.columns):
        ctx.log(f"{snapshot.origin} was written for {snapshot.describes}; {source} has "
                + ("its columns" if len(shared) == len(snapshot.columns) else
                   f"{len(shared)} of its {len(snapshot.columns)} columns")
                + ", so it applies")
        return True
    return False


def _warn_expectations(ctx: StageContext, report: ValidationReport, schema: str) -> None:
    """Values outside the schema's expectations: reported and counted, never a failure."""
    ctx.log_metrics({"validation.unexpected_rows": report.unexpected_rows})
    checks = len(report.expectations)
    ctx.log(f"warning: {report.unexpected_rows:,} of {report.rows:,} rows have values outside "
            f"{checks} expectation{'s' if checks != 1 else ''} of {schema} (counted, not "
            "refused; a hard check would refuse them):\n"
            + failure_table(ValidationReport(ok=False, rows=report.rows,
                                             failures=report.expectations)))


def _count(report: ValidationReport) -> str:
    checks = len(report.failures)
    text = f"{checks} check{'s' if checks != 1 else ''} failed"
    return text + (f" on {len(report.invalid_rows):,} of {report.rows:,} rows"
                   if report.invalid_rows else "")


def _name(failure: Any) -> str:
    return f"{failure.column}: {failure.check}" if failure.column is not None else failure.check


def failure_table(report: ValidationReport, *, width: int = 160) -> str:
    """The failures as a text table: column, check, failing rows, a few examples with rows."""
    import io

    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for title, justify in (("column", "left"), ("check", "left"), ("failing rows", "right"),
                           ("examples (row: value)", "left")):
        table.add_column(title, justify=justify, overflow="fold")
    for failure in report.failures[:TABLE_ROWS]:
        examples = ", ".join(
            (f"row {row}: {_show(value)}" if row is not None else _show(value))
            for row, value in failure.examples[:EXAMPLES])
        table.add_row("(frame)" if failure.column is None else str(failure.column),
                      failure.check, f"{failure.failing_rows:,}" if failure.about_rows else "-",
                      examples)
    if len(report.failures) > TABLE_ROWS:
        table.add_row("...", f"{len(report.failures) - TABLE_ROWS} more", "", "")
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, highlight=False,
            force_terminal=False).print(table)
    return buffer.getvalue().rstrip()


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


VALIDATE = StageType(
    name="conveyor.validate", run=_validate, settings_schema=ValidateSettings, check=_check,
    input_files=_input_files, ephemeral_outputs=frozenset({"data"}),
    description="validate the data against data.schema; fail, quarantine or warn on bad rows",
    outputs={"data": "the rows to train on: validated, without the quarantined ones",
             "validation": "the validation summary: checks, failures, rows, seconds",
             "contract": "the data's part of the model contract (its schema snapshot)",
             "quarantine": "the invalid rows dropped (validate.on_failure=quarantine)",
             "failures": "every failing cell (when validation failed and the run went on)"})
