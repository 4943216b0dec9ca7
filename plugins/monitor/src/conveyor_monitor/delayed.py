"""Delayed labels for classifiers and regressors: conveyor-monitor's `conveyor_join_feedback`.

The prediction log (`conveyor.predictions`) holds what the service predicted, with the records
(the `data.id_column` among them when requests carry it) and a request id. A labels file that
arrives later has `data.id_column` (or `feedback.request_id_column`) and `data.target`:

* join: by `data.id_column` when the file has it (`feedback.join: auto` or `id`), else by
  request id (`request_id`); rows missing the key or the label are dropped and counted, exact
  repeats dropped and counted, and for a key labelled twice differently the last row wins
  (counted as a duplicate); labels matching no logged prediction are counted and reported;
* metrics: the project's `evaluate.metrics`, scored on what the service answered: each row's
  logged `prediction` (and `proba__<class>` columns for probability metrics) against its label
  (`conveyor_monitor.answers`), so a period that two versions served (a hot swap) gets the
  figures of the answers each gave, and no model is re-run; a period that misses a
  `monitor.performance` condition is "drift", as a monitored batch is;
* periods: matched predictions that a `conveyor monitor --from-log` batch covers (served after
  the previous log check and up to its `log_until`) back-fill that batch's performance; the
  rest are grouped by `feedback.period` of their serving time, one new batch each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import conveyor
from conveyor import api
from conveyor.feedback import FeedbackPeriod, FeedbackResult, FeedbackSettings, period_starts
from conveyor.predictions import read_prediction_log
from conveyor.store import open_store
from conveyor.tables import read_table

from conveyor_monitor.answers import score_answers
from conveyor_monitor.check import is_classifier, judge_performance, performance_conditions
from conveyor_monitor.records import Monitoring
from conveyor_monitor.settings import settings_from


def join_labels(session: conveyor.Session, model_name: str | None, events: Path, source: str,
                settings: FeedbackSettings) -> FeedbackResult:
    import pandas as pd

    loaded = api.load_model(session, model_name)
    config = api.load_config(session).data
    data = {**(loaded.config.get("data") or {}), **(config.get("data") or {})}
    target, id_column = data.get("target"), data.get("id_column")
    if loaded.contract is not None:
        target, id_column = loaded.contract.target, loaded.contract.id_column
    metrics = list((config.get("evaluate") or {}).get("metrics") or [])
    labels = read_table(events)
    key = choose_key(settings, labels, id_column, source)
    join = "id" if key == id_column else "request_id"
    if not target or target not in labels.columns:
        raise conveyor.UsageError(f"--data {source} has no label column '{target}' "
                                  "(data.target)",
                                  hint="its columns: " + ", ".join(map(str, labels.columns)))
    rows = len(labels)
    incomplete = labels[key].isna() | labels[target].isna()
    labels = labels[~incomplete]
    exact = labels.duplicated(subset=[key, target])
    labels = labels[~exact]
    keys = labels[key].astype(str)
    relabelled = keys.duplicated(keep="last")
    truth = pd.Series(labels[target].to_numpy(), index=keys)[~relabelled.to_numpy()]
    log = _log(session.project_dir, loaded.name)
    log_key = "request_id" if join == "request_id" else id_column
    if log_key not in log.columns:
        raise conveyor.UsageError(
            f"the prediction log of '{loaded.name}' has no '{log_key}' column to join on",
            hint="send data.id_column with each record, or join by request id "
                 "(feedback.join=request_id with a request_id column in the labels)")
    log["key"] = log[log_key].astype(str)
    hit = log["key"].isin(truth.index)
    matched_keys = set(log.loc[hit, "key"])
    counts = {"events": rows, "incomplete": int(incomplete.sum()),
              "duplicates": int(exact.sum() + relabelled.sum()), "out_of_order": 0,
              "irrelevant": 0, "matched": int(truth.index.isin(matched_keys).sum()),
              "unmatched": int((~truth.index.isin(matched_keys)).sum())}
    if not counts["matched"]:
        raise conveyor.UsageError(
            f"--data {source}: none of its {len(truth):,} labels matches a logged prediction "
            f"of '{loaded.name}' (joined on '{key}'; {len(log):,} predictions logged)",
            hint="check the file's ids, or the join: feedback.join=id|request_id")
    log["label"] = log["key"].map(truth)
    served = log[hit].reset_index(drop=True)
    periods = _periods(session, loaded, log, served, settings, metrics,
                       performance_conditions(settings_from(config)))
    notes = []
    if counts["unmatched"]:
        notes.append(f"{counts['unmatched']:,} of {len(truth):,} label(s) matched no logged "
                     "prediction")
    if counts["duplicates"]:
        notes.append(f"{counts['duplicates']:,} duplicate label row(s) dropped (a key "
                     "labelled twice: the last row wins)")
    if counts["incomplete"]:
        notes.append(f"{counts['incomplete']:,} row(s) without a key or label dropped")
    return FeedbackResult(model_name=loaded.name, kind="predictions", join=join,
                          periods=tuple(periods), notes=tuple(notes),
                          metric_names=tuple(periods[0].performance) if periods else (),
                          **counts)


def choose_key(settings: FeedbackSettings, labels: Any, id_column: str | None,
               source: str) -> str:
    has_id = bool(id_column) and id_column in labels.columns
    has_request = settings.request_id_column in labels.columns
    join = settings.join
    if join == "user_window":
        raise conveyor.ConfigError("feedback.join is user_window, which joins a recommender's "
                                   "events; labels join by id or request_id",
                                   hint="set feedback.join=auto")
    if join in ("auto", "id") and has_id:
        return str(id_column)
    if join in ("auto", "request_id") and has_request:
        return settings.request_id_column
    raise conveyor.UsageError(
        f"--data {source} has no column to join on: neither '{id_column}' (data.id_column) nor "
        f"'{settings.request_id_column}' (feedback.request_id_column)"
        + (f" as feedback.join={join} asks" if join != "auto" else ""),
        hint="its columns: " + ", ".join(map(str, labels.columns)))


def _log(project_dir: Path, name: str) -> Any:
    import pandas as pd

    parts = list(read_prediction_log(project_dir, name))
    if not parts:
        raise conveyor.UsageError(f"no prediction log for model '{name}' "
                                  f"(.conveyor/predictions/{name}/)",
                                  hint="`conveyor serve` writes it: labels join to what was "
                                       "predicted")
    log = pd.concat(parts, ignore_index=True)
    log["timestamp"] = pd.to_datetime(log["timestamp"], utc=True).dt.tz_localize(None)
    return log


def _covering_batches(project_dir: Path, name: str) -> list[tuple[Any, Any, str]]:
    """(after, until, batch id) of each `--from-log` batch: the serving times it covers."""
    import pandas as pd

    store = open_store(project_dir)
    try:
        batches = [b for b in Monitoring(store).batches(model_name=name)
                   if b.source == f"log:{name}" and b.details.get("log_until")]
    finally:
        store.close()
    out, after = [], None
    for batch in batches:
        until = pd.Timestamp(batch.details["log_until"])
        until = until.tz_convert(None) if until.tzinfo else until
        out.append((after, until, batch.id))
        after = until
    return out


def _periods(session: Any, loaded: Any, log: Any, served: Any, settings: FeedbackSettings,
             metrics: list[str], conditions: dict[str, Any]) -> list[FeedbackPeriod]:
    import pandas as pd

    covering = _covering_batches(session.project_dir, loaded.name)
    owner = pd.Series([None] * len(served), dtype=object)
    for after, until, batch in covering:
        inside = (served["timestamp"] <= until) & owner.isna()
        if after is not None:
            inside &= served["timestamp"] > after
        owner[inside] = batch
    periods = []
    for batch in dict.fromkeys(owner.dropna()):
        rows = served[owner == batch]
        after, until = next((a, u) for a, u, b in covering if b == batch)
        start = after if after is not None else log["timestamp"].min()
        covered = log["timestamp"] <= until
        if after is not None:
            covered &= log["timestamp"] > after
        total = int(covered.sum())
        periods.append(_period(loaded, rows, total, start, until, settings, metrics,
                               conditions, backfill=batch))
    rest = served[owner.isna()]
    if len(rest):
        starts = period_starts(rest["timestamp"], settings.period)
        for start in sorted(starts.unique()):
            rows = rest[starts == start]
            end = (pd.Timestamp(start).to_period(settings.period) + 1).start_time
            total = int(((log["timestamp"] >= start) & (log["timestamp"] < end)).sum())
            periods.append(_period(loaded, rows, total, start, end, settings, metrics,
                                   conditions))
    return periods


def _period(loaded: Any, rows: Any, total: int, start: Any, end: Any,
            settings: FeedbackSettings, metrics: list[str], conditions: dict[str, Any],
            backfill: str | None = None) -> FeedbackPeriod:
    """One period: `rows` the labelled predictions, `total` all predictions logged in it.
    Scored on what was answered (`conveyor_monitor.answers`): each row's logged prediction and
    probabilities, whichever version served it."""
    perf, notes = score_answers(rows, rows["label"].to_numpy(), metrics,
                                is_classifier(loaded.model))
    versions = rows["model_version"].dropna()
    breached, checks = judge_performance(conditions, perf, loaded)
    notes += [check.message for check in checks if not check.met]
    status = ("drift" if breached else "ok") if perf and len(rows) >= settings.min_rows \
        else "insufficient"
    if len(rows) < settings.min_rows:
        notes.append(f"{len(rows):,} labelled prediction(s), fewer than "
                     f"feedback.min_rows={settings.min_rows}")
    return FeedbackPeriod(
        start=_iso(start), end=_iso(end), served=total, matched=len(rows), status=status,
        model_version=int(versions.mode().iloc[0]) if len(versions) else loaded.number,
        performance=perf, events_matched=len(rows), notes=tuple(notes), backfill=backfill)


def _iso(moment: Any) -> str:
    import pandas as pd

    return pd.Timestamp(moment).isoformat() + "Z"
