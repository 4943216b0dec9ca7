"""`conveyor feedback --data FILE`: delayed feedback joined to what was served, recorded as
monitored batches.

The documented API (used by conveyor-retrain's `watch --feedback`)::

    from conveyor_monitor.feedback import record_feedback
    outcome = record_feedback(session, Path("events/week-09.csv"), model=None)
    outcome.batches        # the BatchRecords, one per period (new, reused or back-filled)
    outcome.reused         # True when this content was recorded before (nothing new written)

A plugin joins the file (`conveyor_join_feedback`: conveyor-recsys for recommenders,
conveyor-monitor's `delayed` for classifiers and regressors); each period becomes one batch
(`conveyor_monitor.records`): `source` the file's path relative to the project,
`source_sha256` its content hash, `performance` the online metrics, `labelled_rows` the rows
matched, `details["feedback"]` the period, join and counts. A period whose predictions a
`conveyor monitor --from-log` batch already covers updates that batch's performance instead
(back-fill). A second labels file that back-fills the same batch replaces the first's figures:
the newest file wins (performance and labelled_rows are its own; each earlier file's summary is
kept in `details["feedback"]["earlier"]`). The same content is never recorded twice: a second
run shows the batches of the first.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import conveyor
from conveyor import api
from conveyor.feedback import FeedbackResult, FeedbackSettings
from conveyor.names import path_part
from conveyor.store import sha256_file

from conveyor_monitor.records import BatchRecord, Monitoring, new_batch_id

HELP = "join delayed feedback (purchases, clicks, labels) to what was served; record it"
DESCRIPTION = """\
Join a file of feedback that arrived after the model answered to what it served (the
prediction log that `conveyor serve` writes), compute the online metrics per period of the
serving time, and record each period as a monitored batch that `conveyor retrain`'s policy
reads (e.g. retrain.when: {metrics.hit_rate@10: "< champion - 0.05"}).

  conveyor feedback --data events/week-09.csv          # a recommender's purchases and clicks
  conveyor feedback --data labels-0312.csv --json      # a classifier's delayed labels
  conveyor feedback --data week-09.csv feedback.period=D feedback.window=2d

Recommenders: events (user, item, timestamp, event; optional request_id) are joined to the
slates by request id when the file carries one, else by user and time: an event counts for the
user's latest slate served at most feedback.window (7d) before it. Every event is feedback,
as in the offline evaluation, unless feedback.events names some (e.g. [purchase]). Per period
(feedback.period, W = weeks): slates, slates with feedback, hit_rate@k, ndcg@k, recall@k,
map@k, mrr, and drift (popularity shift, new items and users share, feature drift with
recsys.user_features / item_features).
Classifiers and regressors: a labels file with data.id_column (or request_id) and data.target
is joined to the logged predictions; the project's metrics are computed per period, and a
batch that `conveyor monitor --from-log` recorded for those predictions gets them (back-fill;
a later labels file for the same predictions replaces them: the newest file wins).

Duplicate events are dropped and counted, out-of-order ones sorted and counted, feedback that
matches nothing counted and reported; a period with fewer than feedback.min_rows (20) matched
rows is "insufficient" (recorded, never a retrain trigger). The same file is recorded once: a
second run shows the first run's batches.

exit codes: 0 recorded (or recorded before) · 1 a period drifted · 2 bad usage, config or
file (a missing column, no prediction log, no model)"""


@dataclass
class FeedbackOutcome:
    """What `record_feedback` did with a file: `batches` the monitored batches of its periods
    (new, back-filled, or found from an earlier run), `result` the join's summary
    (`conveyor.feedback.FeedbackResult.as_dict()` plus `source`, `sha256` and `seconds`),
    `reused` True when this content was recorded before and nothing new was written."""

    batches: list[BatchRecord]
    result: dict[str, Any]
    reused: bool = False


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--data", type=Path, metavar="FILE", required=True,
                        help="the feedback: a .csv, .tsv or .parquet file of events or labels")
    parser.add_argument("--model", metavar="NAME",
                        help="the registered model that served, by name: every version that "
                             "served is joined (default: the project's only model)")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="write report.json and report.html here (default: "
                             "monitor.reports/feedback-FIRST_BATCH_ID)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("overrides", nargs="*",
                        help="config overrides, e.g. feedback.period=D feedback.window=2d")


def run(args: argparse.Namespace, app: Any) -> int:
    if args.overrides:
        app.set_overrides(list(args.overrides))
    path = args.data if args.data.is_absolute() else Path.cwd() / args.data
    outcome = record_feedback(app, path, model=args.model, report_dir=args.report,
                              quiet=args.json)
    if args.json:
        print(json.dumps({**outcome.result, "reused": outcome.reused,
                          "batches": [b.as_dict() for b in outcome.batches]},
                         indent=2, sort_keys=True, default=str))
    else:
        show(outcome)
    return 1 if any(b.status == "drift" for b in outcome.batches) else 0


def record_feedback(session: conveyor.Session, path: Path, *, model: str | None = None,
                    report_dir: Path | None = None, quiet: bool = True) -> FeedbackOutcome:
    """Join `path` to what `model` served and record one batch per period (see the module)."""
    from conveyor_monitor.settings import feedback_settings_from

    project_dir = Path(session.project_dir)
    if not path.is_file():
        raise conveyor.UsageError(f"--data {path}: no such file")
    config = api.load_config(session).data
    settings = feedback_settings_from(config)
    source = _relative(path, project_dir)
    digest = sha256_file(path)
    name = model_name(model) or api.resolve_model(session).name
    store = session.store()
    try:
        earlier = [b for b in Monitoring(store).batches(model_name=name)
                   if digest in ((b.details or {}).get("feedback") or {}).get("files", [])]
    finally:
        store.close()
    if earlier:
        return FeedbackOutcome(earlier, _first_result(earlier, digest), reused=True)
    started = time.perf_counter()
    if not quiet:
        print(f"joining {source} to what {name} served ...", flush=True)
    joined = session.host.hook.conveyor_join_feedback(
        session=session, model_name=name, events=path, source=source, settings=settings)
    if joined is None:
        raise conveyor.UsageError("no installed plugin joins feedback for this project's model "
                                  "(conveyor_join_feedback)",
                                  hint="install conveyor-recsys for recommenders")
    result = joined.as_dict()
    result["source"], result["sha256"] = source, digest
    result["seconds"] = round(time.perf_counter() - started, 3)
    batches = _record(session, joined, result, source, digest, settings, report_dir)
    return FeedbackOutcome(batches, result)


def _first_result(batches: list[BatchRecord], digest: str) -> dict[str, Any]:
    """What the run that recorded the content `digest` returned (kept on its first batch; a
    back-filled batch keeps it among its `earlier` summaries when a later file replaced it)."""
    for batch in batches:
        feedback = (batch.details or {}).get("feedback") or {}
        for summary in (feedback, *feedback.get("earlier", [])):
            if summary.get("result") and summary.get("sha256", digest) == digest:
                return dict(summary["result"])
    return {}


def model_name(spec: str | None) -> str | None:
    """`--model NAME` (`conveyor.api.parse_model_spec`): a name only, since feedback joins to
    every version that served; a version or alias is a usage error (exit 2), not dropped."""
    name, version, alias = api.parse_model_spec(spec)
    if version is not None or alias != "champion" or (spec or "").endswith(":champion"):
        raise conveyor.UsageError(
            f"--model {spec}: feedback takes a model NAME: every version that served is joined",
            hint=f"--model {name}")
    return name


def _record(session: conveyor.Session, joined: FeedbackResult, result: dict[str, Any],
            source: str, digest: str, settings: FeedbackSettings,
            report_dir: Path | None) -> list[BatchRecord]:
    """The reports first (temp file + rename each), then every period's batch or back-fill in
    one transaction: a killed run records all periods of the file or none."""
    from conveyor_monitor.report import write_reports

    project_dir = Path(session.project_dir)
    store = session.store()
    try:
        log = Monitoring(store)
        history = log.batches(model_name=joined.model_name)
        new: list[dict[str, Any]] = []
        backfills: list[dict[str, Any]] = []
        now = time.time()
        for index, period in enumerate(joined.periods):
            feedback = {"start": period.start, "end": period.end, "join": joined.join,
                        "kind": joined.kind, "k": joined.k, "served": period.served,
                        "matched": period.matched, "events_matched": period.events_matched,
                        "events": joined.counts(), "notes": list(period.notes),
                        "file_notes": list(joined.notes), "settings": settings.as_dict(),
                        "files": [digest], "sha256": digest, "source": source}
            if index == 0:
                feedback["result"] = result  # what a second run shows
            drift = {k: v for k, v in period.drift.items() if k != "features"}
            if period.backfill:
                backfills.append(_backfill(log.get(period.backfill), feedback, period))
                continue
            batch_id = new_batch_id()
            features = period.drift.get("features") or {}
            entry = {"batch_id": batch_id, "model_name": joined.model_name,
                     "model_version": period.model_version, "source": source,
                     "source_sha256": digest, "rows": period.served, "status": period.status,
                     "drift_share": _share(period.drift),
                     "drifted_features": sum(bool(e.get("drifted")) for e in features.values()),
                     "features": len(features), "labelled_rows": period.matched,
                     "performance": period.performance, "feature_results": features,
                     "message": _message(joined, period),
                     "details": {"feedback": feedback, "drift": drift},
                     "created_at": now + index * 1e-3}
            report = {"batch": batch_id, "model": {"name": joined.model_name,
                                                   "version": period.model_version},
                      "source": source, "source_sha256": digest, "rows": period.served,
                      "status": period.status, "message": entry["message"],
                      "feedback": feedback, "recommender_drift": drift,
                      "drift_share": entry["drift_share"], "feature_results": features,
                      "prediction": {}, "performance": period.performance,
                      "labelled_rows": period.matched, "performance_checks": [],
                      "quality": {}, "created_at": entry["created_at"],
                      "reference": {"rows": drift.get("reference_interactions") or 0,
                                    "source": "training interactions"},
                      "champion_metrics": {}, "drift_share_threshold": 1.0,
                      "labels": f"feedback joined by {joined.join}"}
            folder = (report_dir / f"{index + 1:02d}" if report_dir and len(joined.periods) > 1
                      else report_dir) or path_part(project_dir / _reports(session), batch_id,
                                                    "batch id")
            shown = [_shown(e) for e in new]
            paths = write_reports(report, history + shown, folder, project_dir)
            entry.update(report_json=paths["json"], report_html=paths["html"])
            new.append(entry)
        return log.record_many(new, backfills)
    finally:
        store.close()


def _backfill(batch: BatchRecord, feedback: dict[str, Any], period: Any) -> dict[str, Any]:
    """A back-fill of `batch` by one labels file: the newest file wins. Its performance and
    labelled_rows are this file's (a second labels file for the same predictions replaces the
    first's figures, it does not add to them); `details["feedback"]` is this file's summary,
    with each earlier file's summary kept under `earlier` (oldest first) and `files` the
    content hashes of all of them (what a second run of any of them finds)."""
    old = dict((batch.details or {}).get("feedback") or {})
    earlier = list(old.pop("earlier", []))
    if old:
        earlier.append(old)
    feedback = {**feedback, "files": sorted({*old.get("files", []), *feedback["files"]}),
                "earlier": earlier}
    return {"batch_id": batch.id, "performance": dict(period.performance),
            "labelled_rows": period.matched, "details": {"feedback": feedback}}


def _shown(entry: dict[str, Any]) -> Any:
    """A batch about to be recorded, as the report's history reads it."""
    from types import SimpleNamespace

    return SimpleNamespace(id=entry["batch_id"], model_version=entry["model_version"],
                           status=entry["status"], drift_share=entry["drift_share"],
                           performance=entry["performance"], rows=entry["rows"])


def _share(drift: dict[str, Any]) -> float | None:
    judged = [e for e in (drift.get("features") or {}).values() if not e.get("insufficient")]
    return sum(bool(e["drifted"]) for e in judged) / len(judged) if judged else None


def _reports(session: Any) -> str:
    from conveyor_monitor.settings import settings_from

    return settings_from(api.load_config(session).data).reports


def _message(joined: Any, period: Any) -> str:
    what = "slates" if joined.kind == "recommender" else "predictions"
    head = f"{period.status}: {period.matched:,} of {period.served:,} {what} with feedback"
    metrics = "  ".join(f"{k}={v:.4f}" for k, v in period.performance.items())
    drift = "; ".join(period.drift.get("reasons") or [])
    notes = "; ".join(period.notes)
    return "; ".join(part for part in (head, metrics, drift, notes) if part)


def _relative(path: Path, project_dir: Path) -> str:
    try:
        return path.resolve().relative_to(project_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def show(outcome: FeedbackOutcome) -> None:
    """Print an outcome for people: the file, the join and its counts, one table row per
    period's batch, each batch's recommender drift, the notes and the report's path."""
    from rich.table import Table

    from conveyor_monitor.command import console

    out = console()
    result = outcome.result
    if outcome.reused:
        out.print(f"{result.get('source', 'this file')} was recorded before (same content): "
                  "its batches, nothing new recorded")
    counts = result.get("events") or {}
    k = result.get("k")
    what = "events" if result.get("kind") == "recommender" else "labels"
    out.print(f"{result.get('source')} · {result.get('model_name')} · {result.get('kind')} · "
              f"joined by {result.get('join')} · {counts.get('events', 0):,} {what} read, "
              f"{counts.get('matched', 0):,} matched, {counts.get('unmatched', 0):,} unmatched")
    table = Table(box=None, pad_edge=False)
    served = "slates" if result.get("kind") == "recommender" else "predictions"
    shown = [f"hit_rate@{k}", f"ndcg@{k}"] if k else list(result.get("metric_names") or [])
    for column in ("period", "batch", "status", served, "matched", *shown, "events matched"):
        table.add_column(column)
    for batch in outcome.batches:
        feedback = batch.details.get("feedback") or {}
        table.add_row(f"{feedback.get('start', '')[:10]} to {feedback.get('end', '')[:10]}",
                      batch.id, batch.status, f"{feedback.get('served', batch.rows):,}",
                      f"{feedback.get('matched', batch.labelled_rows):,}",
                      *[f"{batch.performance[m]:.4f}" if m in batch.performance else "-"
                        for m in shown], f"{feedback.get('events_matched', 0):,}")
    out.print(table)
    for batch in outcome.batches:
        drift = batch.details.get("drift") or {}
        if drift.get("popularity") is not None:
            out.print(f"  {batch.id}: popularity shift {drift['popularity']:.3f}, new items "
                      f"{drift['new_items']:.1%}, new users {drift['new_users']:.1%}"
                      + (f" · {'; '.join(drift['reasons'])}" if drift.get("reasons") else ""))
    for note in result.get("notes") or []:
        out.print(f"note: {note}")
    if outcome.batches and outcome.batches[0].report_html:
        out.print(f"report: {outcome.batches[0].report_html} (one per period)")


FEEDBACK = conveyor.CliCommand("feedback", HELP, configure, run, description=DESCRIPTION)
