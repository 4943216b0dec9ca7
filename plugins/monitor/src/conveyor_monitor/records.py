"""Monitored batches: one row per batch a model was checked against, in `monitor_batches`.

    from conveyor.store import open_store
    from conveyor_monitor.records import Monitoring

    store = open_store(project_dir)
    log = Monitoring(store)
    for batch in log.batches(model_name="churn"):           # oldest first
        print(batch.id, batch.status, batch.drift_share, batch.performance)

The monitoring plugin (`conveyor monitor`) records them; retraining, `watch` and the UI read
them. A batch's `status` is one of:

* "ok": checked, nothing drifted beyond `monitor.drift_share` and no performance breach;
* "drift": the share of drifted features reached `monitor.drift_share`, or the predictions
  drifted, or a performance threshold was missed (`performance_breached`);
* "insufficient": too few rows (or no usable values) to test anything: no verdict, no alarm;
* "invalid": the batch could not be scored (a missing column, not a table, no rows, too many
  rows breaking the project's schema; `details["invalid"]` says why), and was not used.

conveyor-monitor keeps a batch's data-quality figures (rows set aside, values outside the
schema's expectations, per column) in `details["quality"]`.

Each record is written in one transaction, so a killed process leaves either the whole row or
none; `record_many` writes several (and back-fills the performance of recorded ones, as
`conveyor feedback` does with labels that arrive later) in one. Files named by `report_json` /
`report_html` are written before the row (temp + rename).

The table is conveyor-monitor's own (`TABLES`, declared with the `conveyor_store_tables` hook);
`Monitoring(store)` makes sure it exists, so a store opened without the plugins' tables works.
Stores made before the plugin declared it have the same table from Conveyor's core schema.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import UsageError
from conveyor.names import check_name
from conveyor.store import Store, TableSet, dumps, loads

if TYPE_CHECKING:
    from sqlalchemy import MetaData

STATUSES = ("ok", "drift", "insufficient", "invalid")


def _tables_at_head() -> MetaData:
    """monitor_batches as the branch's head revision leaves it, for a store new to the branch
    (made at once, Alembic not imported; a test checks it equals the revisions' schema)."""
    from sqlalchemy import DOUBLE_PRECISION as D
    from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, Table
    from sqlalchemy import Text as T

    metadata = MetaData()
    Table("monitor_batches", metadata,
          Column("id", T, primary_key=True), Column("model_name", T, nullable=False),
          Column("model_version", Integer), Column("source", T), Column("source_sha256", T),
          Column("rows", BigInteger), Column("created_at", D, nullable=False),
          Column("status", T, nullable=False), Column("drift_share", D),
          Column("drifted_features", Integer), Column("features", Integer),
          Column("prediction_drift", D), Column("prediction_drifted", Integer),
          Column("labelled_rows", Integer), Column("performance", T),
          Column("performance_breached", Integer), Column("feature_results", T),
          Column("report_json", T), Column("report_html", T), Column("message", T),
          Column("details", T),
          Index("monitor_batches_model", "model_name", "created_at"),
          Index("monitor_batches_source", "source_sha256"))
    return metadata


# An Alembic branch of its own (migrations/versions/); version 1 of the hand-written form
# this replaced is its baseline revision, so stores it made keep their rows.
TABLES = TableSet(owner="conveyor-monitor", migrations=Path(__file__).parent / "migrations",
                  legacy_versions={1: "monitor_0001"}, metadata=_tables_at_head)


@dataclass(frozen=True)
class BatchRecord:
    """One monitored batch.

    `source` is the batch file (relative to the project when inside it) or "log:<model>" for the
    serving prediction log, `source_sha256` its content hash (for a log: of the rows read), so a
    batch already processed can be recognised. `model_version` is the registry version checked.
    `drift_share` is drifted features / features with a verdict (None when none had one);
    `prediction_drift` the prediction drift score and `prediction_drifted` its verdict.
    `performance` maps each `evaluate.metrics` name to its value on the labelled rows
    (`labelled_rows` of them; empty without labels). `feature_results` maps each feature to
    {"kind", "method", "score", "threshold", "drifted", "insufficient", ...}.
    `details` holds the rest (validation summary, thresholds, the alerts fired).
    """

    id: str
    model_name: str
    model_version: int | None
    source: str
    source_sha256: str | None
    rows: int
    created_at: float
    status: str
    drift_share: float | None = None
    drifted_features: int = 0
    features: int = 0
    prediction_drift: float | None = None
    prediction_drifted: bool = False
    labelled_rows: int = 0
    performance: dict[str, float] = field(default_factory=dict)
    performance_breached: bool = False
    feature_results: dict[str, Any] = field(default_factory=dict)
    report_json: str | None = None
    report_html: str | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Any) -> BatchRecord:
        return cls(
            id=row["id"], model_name=row["model_name"], model_version=row["model_version"],
            source=row["source"], source_sha256=row["source_sha256"], rows=row["rows"] or 0,
            created_at=row["created_at"], status=row["status"], drift_share=row["drift_share"],
            drifted_features=row["drifted_features"] or 0, features=row["features"] or 0,
            prediction_drift=row["prediction_drift"],
            prediction_drifted=bool(row["prediction_drifted"]),
            labelled_rows=row["labelled_rows"] or 0, performance=loads(row["performance"], {}),
            performance_breached=bool(row["performance_breached"]),
            feature_results=loads(row["feature_results"], {}), report_json=row["report_json"],
            report_html=row["report_html"], message=row["message"] or "",
            details=loads(row["details"], {}))

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _build(*, model_name: str, model_version: int | None, source: str,
           source_sha256: str | None, rows: int, status: str, drift_share: float | None = None,
           drifted_features: int = 0, features: int = 0, prediction_drift: float | None = None,
           prediction_drifted: bool = False, labelled_rows: int = 0,
           performance: dict[str, float] | None = None, performance_breached: bool = False,
           feature_results: dict[str, Any] | None = None, report_json: str | None = None,
           report_html: str | None = None, message: str = "",
           details: dict[str, Any] | None = None, batch_id: str | None = None,
           created_at: float | None = None) -> BatchRecord:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    return BatchRecord(
        id=check_name(batch_id or new_batch_id(), "batch id"),
        model_name=check_name(model_name, "model name"), model_version=model_version,
        source=source, source_sha256=source_sha256, rows=int(rows),
        created_at=created_at if created_at is not None else time.time(), status=status,
        drift_share=drift_share, drifted_features=int(drifted_features),
        features=int(features), prediction_drift=prediction_drift,
        prediction_drifted=bool(prediction_drifted), labelled_rows=int(labelled_rows),
        performance=dict(performance or {}), performance_breached=bool(performance_breached),
        feature_results=dict(feature_results or {}), report_json=report_json,
        report_html=report_html, message=message, details=dict(details or {}))


def new_batch_id() -> str:
    """A sortable id: the time, then a random suffix (two batches in one second differ)."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime()) + "-" + uuid.uuid4().hex[:6]


class Monitoring:
    """Record and read monitored batches in a project store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.ensure_tables([TABLES])

    def record(self, *, model_name: str, model_version: int | None, source: str,
               source_sha256: str | None, rows: int, status: str,
               drift_share: float | None = None, drifted_features: int = 0, features: int = 0,
               prediction_drift: float | None = None, prediction_drifted: bool = False,
               labelled_rows: int = 0, performance: dict[str, float] | None = None,
               performance_breached: bool = False,
               feature_results: dict[str, Any] | None = None, report_json: str | None = None,
               report_html: str | None = None, message: str = "",
               details: dict[str, Any] | None = None, batch_id: str | None = None,
               created_at: float | None = None) -> BatchRecord:
        """Record one monitored batch (one transaction) and return it as stored."""
        fields = dict(locals())
        del fields["self"]
        return self.record_many([fields])[0]

    def record_many(self, batches: list[dict[str, Any]],
                    backfills: list[dict[str, Any]] = ()) -> list[BatchRecord]:
        """Record several batches (each a mapping of `record`'s arguments) and back-fill
        others (each {"batch_id", "performance", "labelled_rows", "details"}: the batch's
        performance set from labels that arrived later, `details` merged into its own), all in
        one transaction: all or none. Returns the recorded batches, then the back-filled ones,
        as stored."""
        records = [_build(**fields) for fields in batches]
        with self.store.write() as conn:
            for record in records:
                conn.execute(
                    "INSERT INTO monitor_batches (id, model_name, model_version, source, "
                    "source_sha256, rows, created_at, status, drift_share, drifted_features, "
                    "features, prediction_drift, prediction_drifted, labelled_rows, "
                    "performance, performance_breached, feature_results, report_json, "
                    "report_html, message, details) VALUES "
                    "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (record.id, record.model_name, record.model_version, record.source,
                     record.source_sha256, record.rows, record.created_at, record.status,
                     record.drift_share, record.drifted_features, record.features,
                     record.prediction_drift, int(record.prediction_drifted),
                     record.labelled_rows, dumps(record.performance),
                     int(record.performance_breached), dumps(record.feature_results),
                     record.report_json, record.report_html, record.message,
                     dumps(record.details)))
            for fill in backfills:
                row = conn.execute("SELECT details FROM monitor_batches WHERE id = ?",
                                   (fill["batch_id"],)).fetchone()
                if row is None:
                    raise UsageError(f"no monitored batch with id '{fill['batch_id']}'")
                merged = {**loads(row[0], {}), **fill["details"]}
                conn.execute("UPDATE monitor_batches SET performance = ?, labelled_rows = ?, "
                             "details = ? WHERE id = ?",
                             (dumps(dict(fill["performance"])), int(fill["labelled_rows"]),
                              dumps(merged), fill["batch_id"]))
        return records + [self.get(fill["batch_id"]) for fill in backfills]

    def get(self, batch_id: str) -> BatchRecord:
        """The batch whose id is `batch_id` or starts with it (UsageError if none or several)."""
        rows = self.store.query("SELECT * FROM monitor_batches WHERE "
                                "substr(id, 1, length(CAST(? AS TEXT))) = ?"
                                " ORDER BY created_at", (batch_id, batch_id))
        exact = [r for r in rows if r["id"] == batch_id]
        if not rows:
            raise UsageError(f"no monitored batch with id '{batch_id}'",
                             hint="see `conveyor monitor --list`")
        if len(rows) > 1 and not exact:
            raise UsageError(f"batch id '{batch_id}' is ambiguous: "
                             + ", ".join(r["id"] for r in rows[:5]))
        return BatchRecord.from_row((exact or rows)[0])

    def models(self) -> list[str]:
        """The names of the models with monitored batches, sorted."""
        return [row[0] for row in self.store.query(
            "SELECT DISTINCT model_name FROM monitor_batches ORDER BY model_name")]

    def batches(self, *, model_name: str | None = None, model_version: int | None = None,
                status: str | None = None, source_sha256: str | None = None,
                since: float | None = None, limit: int | None = None) -> list[BatchRecord]:
        """Recorded batches, oldest first, filtered by whichever arguments are given.

        With `limit`, the most recent `limit` batches (still oldest first)."""
        clauses, params = [], []
        for column, value in (("model_name", model_name), ("model_version", model_version),
                              ("status", status), ("source_sha256", source_sha256)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(since)
        sql = "SELECT * FROM monitor_batches"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [BatchRecord.from_row(r) for r in reversed(self.store.query(sql, tuple(params)))]
