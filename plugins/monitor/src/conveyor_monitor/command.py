"""`conveyor monitor`: check a batch (or the serving log) against the champion."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import conveyor

HELP = "check a batch for drift and performance against the champion"
DESCRIPTION = """\
Check a batch of new data against a registered model (the champion by default): the batch is
validated with the project's schema, then each feature's distribution is compared with the
model's training data (PSI or KS for numbers, chi-square or Jensen-Shannon for categories, per
monitor.drift), the predictions too, and, with labels, the model's metrics (evaluate.metrics)
are computed. The result is recorded in the store, alerts go out on drift or a performance
breach, and a report is written (JSON and a self-contained HTML page).

  conveyor monitor --data data/week-12.csv
  conveyor monitor --data week-12.parquet --labels labels-12.csv --report reports/week-12
  conveyor monitor --from-log                  # what the service predicted since the last check
  conveyor monitor --list [--json]             # the batches checked so far

Rows that break the schema's hard checks (or hold text where a number belongs) are set aside
and counted; the batch is invalid only when it cannot be scored: a column is missing, it is not
a table or has no rows, or more than monitor.max_invalid_share (default 0.5) of its rows break
the schema. Values outside the schema's expectations (the observed ranges and categories that
`conveyor schema infer` writes) and categories the model never saw are counted per column: the
report's data quality, also usable in retrain.when (quality.invalid_share,
quality.unexpected_share). Drift is measured on the rows kept.

exit codes: 0 no drift (or too little data to tell) · 1 drift, a performance breach or an
invalid batch · 2 bad usage or config (a schema that does not parse or shares no column with
the model's data), or labels that match no row (the check is recorded)"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, metavar="BATCH",
                        help="the batch: a .csv, .tsv or .parquet file (read in chunks)")
    source.add_argument("--from-log", action="store_true",
                        help="the serving prediction log (.conveyor/predictions/MODEL/), rows "
                             "newer than the last --from-log check")
    source.add_argument("--list", action="store_true", help="list the batches checked so far")
    parser.add_argument("--since", metavar="TIME",
                        help="with --from-log: rows newer than this time (ISO 8601) instead")
    parser.add_argument("--labels", type=Path, metavar="FILE",
                        help="ground truth: a file with data.id_column and data.target, joined "
                             "to the batch on the id column")
    parser.add_argument("--model", metavar="NAME[:VERSION]",
                        help="the model to check against (default: the champion of the "
                             "project's model)")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="write report.json and report.html here (default: "
                             "monitor.reports/BATCH_ID)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace, app: Any) -> int:
    from conveyor_monitor.check import Request, check_batch

    if args.list:
        return list_batches(args, app)
    if args.data is None and not args.from_log:
        raise conveyor.UsageError("say what to check: --data BATCH or --from-log",
                                  hint="see `conveyor monitor --help`")
    if args.since and not args.from_log:
        raise conveyor.UsageError("--since only applies to --from-log")
    data = args.data if args.data is None or args.data.is_absolute() \
        else (Path.cwd() / args.data)
    labels = args.labels if args.labels is None or args.labels.is_absolute() \
        else (Path.cwd() / args.labels)
    outcome = check_batch(app, Request(data=data, from_log=args.from_log, since=args.since,
                                       labels=labels, model=args.model,
                                       report_dir=args.report, quiet=args.json))
    if args.json:
        print(json.dumps(outcome.report, indent=2, sort_keys=True, default=str))
    else:
        show(outcome)
    if outcome.problem:
        print(f"error: {outcome.problem}\n  hint: the drift results were recorded as batch "
              f"{outcome.record.id}; check the labels file's ids", file=sys.stderr)
    return outcome.exit_code


def console() -> Any:
    from rich.console import Console

    # Piped output (files, CI logs) gets wide lines rather than tables folded to 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def show(outcome: Any) -> None:
    report = outcome.report
    out = console()
    out.print(f"batch {report['batch']} · {report['source']} · {report['rows']:,} rows · "
              f"{report['model']['name']} v{report['model']['version']}")
    invalid = report.get("invalid") or {}
    for failure in (invalid.get("validation") or {}).get("failures", []):
        examples = ", ".join(f"row {row}: {value!r}" for row, value in failure["examples"][:3])
        out.print(f"  {failure['column'] or '(frame)'}: {failure['check']} fails on "
                  f"{failure['failing_rows']:,} row(s)" + (f" ({examples})" if examples else ""))
    show_quality(out, report)
    rows = list(report["feature_results"].items()) + list(report["prediction"].items())
    if rows:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for column in ("feature", "kind", "method", "score", "threshold", "verdict"):
            table.add_column(column, justify="right" if column in ("score", "threshold")
                             else "left")
        for name, e in rows:
            verdict = (f"insufficient data: {e['insufficient']}" if e["insufficient"]
                       else "DRIFT" if e["drifted"] else "ok")
            score = "-" if e["score"] is None else f"{e['score']:.4g}"
            table.add_row(name, e["kind"], e["method"], score,
                          ("< " if e["p_value"] else "≥ ") + f"{e['threshold']:g}", verdict)
        out.print(table)
    if report["performance"]:
        out.print("performance on {:,} labelled rows: ".format(report["labelled_rows"])
                  + "  ".join(f"{k}={v:.4f}" for k, v in report["performance"].items()))
        for line in report["performance_checks"]:
            out.print(f"  {line}")
    elif report.get("performance_problem"):
        out.print(f"performance: {report['performance_problem']}")
    out.print(f"{report['message']}")
    out.print(f"report: {report['report_html']} (and report.json) · recorded as batch "
              f"{report['batch']}")


def show_quality(out: Any, report: dict[str, Any]) -> None:
    """The data-quality figures: rows set aside, values outside expectations, per column."""
    quality = report.get("quality") or {}
    if report.get("invalid"):
        for reason, count in (report["invalid"].get("set_aside") or {}).get(
                "invalid_by_reason", {}).items():
            examples = ", ".join(f"row {row}: {value!r}" for row, value in
                                 quality["invalid_examples"].get(reason, [])[:3])
            out.print(f"  {reason}: {count:,} row(s)" + (f" ({examples})" if examples else ""))
        return
    if not (quality.get("invalid_rows") or quality.get("columns")):
        return
    out.print(f"data quality: {quality['invalid_rows']:,} of {quality['rows']:,} rows set aside "
              f"({quality['invalid_share']:.1%}; invalid above "
              f"{quality['max_invalid_share']:.0%}), {quality['unexpected_rows']:,} of the "
              f"{quality['checked_rows']:,} rows kept with values outside expectations "
              f"({quality['unexpected_share']:.1%})")
    for reason, count in quality["invalid_by_reason"].items():
        examples = ", ".join(f"row {row}: {value!r}" for row, value in
                             quality["invalid_examples"].get(reason, [])[:3])
        out.print(f"  set aside: {reason}: {count:,} row(s)"
                  + (f" ({examples})" if examples else ""))
    for name, column in quality["columns"].items():
        checks = ", ".join(f"{check} {count:,}" for check, count in column["checks"].items())
        unseen = ", ".join(f"{category!r} {count:,}" for category, count
                           in (column.get("unseen_categories") or {}).items())
        out.print(f"  {name}: {column['unexpected']:,} value(s) outside expectations"
                  + (f" ({checks})" if checks else "")
                  + (f"; unseen categories: {unseen}" if unseen else ""))


def list_batches(args: argparse.Namespace, app: Any) -> int:
    from conveyor.store import open_store

    from conveyor_monitor.records import Monitoring

    store = open_store(app.project_dir)
    try:
        name = (args.model or "").partition(":")[0] or None
        batches = Monitoring(store).batches(model_name=name)
    finally:
        store.close()
    if args.json:
        print(json.dumps([b.as_dict() for b in batches], indent=2, sort_keys=True, default=str))
        return 0
    if not batches:
        print("no batch checked yet: conveyor monitor --data BATCH")
        return 0
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("batch", "model", "source", "rows", "status", "drift share", "set aside",
                   "unexpected", "performance"):
        table.add_column(column)
    for b in batches:
        quality = (b.details or {}).get("quality") or {}
        table.add_row(b.id, f"{b.model_name} v{b.model_version}", b.source, f"{b.rows:,}",
                      b.status, "-" if b.drift_share is None else f"{b.drift_share:.0%}",
                      _share(quality, "invalid_rows", "invalid_share"),
                      _share(quality, "unexpected_rows", "unexpected_share"),
                      "  ".join(f"{k}={v:.3f}" for k, v in b.performance.items()))
    console().print(table)
    return 0


def _share(quality: dict[str, Any], rows: str, share: str) -> str:
    if rows not in quality:
        return "-"  # recorded before data-quality figures existed
    return f"{quality[rows]:,} ({quality[share]:.1%})" if quality[rows] else "0"


MONITOR = conveyor.CliCommand("monitor", HELP, configure, run, description=DESCRIPTION)
