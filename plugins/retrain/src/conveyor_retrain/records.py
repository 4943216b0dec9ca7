"""Retraining decisions: one row per time a retraining policy was applied, in `retrain_decisions`.

    from conveyor.store import open_store
    from conveyor_retrain.records import RetrainDecisions

    for decision in RetrainDecisions(open_store(project_dir)).list(model_name="retail"):
        print(decision.id, decision.outcome, decision.reasons)

The retraining plugin (`conveyor retrain`, `conveyor watch`) records them; the UI and reports
read them. `outcome` is one of:

* "no_action": the policy's conditions did not hold (or the cooldown was running);
* "skipped": they held, but there was too little usable data to train on;
* "blocked": the challenger could not be trained (its training data failed validation, say);
* "kept": a challenger was trained and registered, but stayed challenger (its gate failed, or it
  did not beat the champion by `retrain.promote_if`);
* "promoted": the challenger became champion;
* "running": being applied now; a row left "running" by a killed process is read as
  "interrupted" (the alias moves themselves are atomic: nothing is ever half-promoted). A
  decision is made under the model's store lock (`conveyor_retrain.locks.decision_lock`), which
  dies with its process: a "running" row whose lock nobody holds was interrupted, on whatever
  machine it ran (on this one, a dead process id tells it without asking the lock).

The table is conveyor-retrain's own (`TABLES`, declared with the `conveyor_store_tables` hook);
`RetrainDecisions(store)` makes sure it exists. Stores made before the plugin declared it have
the same table from Conveyor's core schema.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import UsageError
from conveyor.store import Store, TableSet, dumps, host_name, loads, process_alive

from conveyor_retrain.locks import decision_lock_name

if TYPE_CHECKING:
    from sqlalchemy import MetaData


def _tables_at_head() -> MetaData:
    """retrain_decisions as the branch's head revision leaves it, for a store new to the
    branch (made at once, Alembic not imported; a test checks it equals the revisions')."""
    from sqlalchemy import DOUBLE_PRECISION as D
    from sqlalchemy import Column, Index, Integer, MetaData, Table
    from sqlalchemy import Text as T

    metadata = MetaData()
    Table("retrain_decisions", metadata,
          Column("id", T, primary_key=True), Column("model_name", T, nullable=False),
          Column("created_at", D, nullable=False), Column("outcome", T, nullable=False),
          Column("reasons", T), Column("trigger_batch", T), Column("batches", T),
          Column("forced", Integer), Column("run_id", T), Column("challenger_version", Integer),
          Column("champion_version", Integer), Column("metrics", T), Column("details", T),
          Column("finished_at", D), Column("pid", Integer), Column("host", T),
          Index("retrain_decisions_model", "model_name", "created_at"))
    return metadata


# An Alembic branch of its own (migrations/versions/); version 1 of the hand-written form
# this replaced is its baseline revision, so stores it made keep their rows.
TABLES = TableSet(owner="conveyor-retrain", migrations=Path(__file__).parent / "migrations",
                  legacy_versions={1: "retrain_0001"}, metadata=_tables_at_head)

OUTCOMES = ("no_action", "skipped", "blocked", "kept", "promoted", "running", "interrupted")


@dataclass(frozen=True)
class RetrainDecision:
    """One application of a retraining policy.

    `batches` are the ids of the monitored batches the decision looked at (newest last),
    `trigger` the batch that prompted it (None when run by hand), `reasons` one line each, in
    order. `run_id` is the challenger's training run, `challenger_version` the version it
    registered, `champion_version` the champion it was compared with; `metrics` holds
    {"challenger": {...}, "champion": {...}} on the shared hold-out, `details` the rest
    (window files and rows, hold-out rows, the policy as applied)."""

    id: str
    model_name: str
    created_at: float
    outcome: str
    reasons: list[str] = field(default_factory=list)
    trigger: str | None = None
    batches: list[str] = field(default_factory=list)
    forced: bool = False
    run_id: str | None = None
    challenger_version: int | None = None
    champion_version: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    finished_at: float | None = None

    @property
    def acted(self) -> bool:
        """A challenger was trained (whether or not it was promoted)."""
        return self.outcome in ("kept", "promoted")

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class RetrainDecisions:
    """Record and read retraining decisions in a project store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.ensure_tables([TABLES])

    def start(self, *, model_name: str, trigger: str | None, batches: list[str],
              forced: bool = False, details: dict[str, Any] | None = None) -> str:
        """Open a decision as "running" and return its id (finish it with `finish`)."""
        decision_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        with self.store.write() as conn:
            conn.execute(
                "INSERT INTO retrain_decisions (id, model_name, created_at, outcome, reasons, "
                "trigger_batch, batches, forced, metrics, details, pid, host) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (decision_id, model_name, time.time(), "running", "[]", trigger, dumps(batches),
                 int(forced), "{}", dumps(details or {}), os.getpid(), host_name()))
        return decision_id

    def finish(self, decision_id: str, *, outcome: str, reasons: list[str],
               run_id: str | None = None, challenger_version: int | None = None,
               champion_version: int | None = None, metrics: dict[str, Any] | None = None,
               details: dict[str, Any] | None = None) -> RetrainDecision:
        if outcome not in OUTCOMES or outcome in ("running", "interrupted"):
            raise ValueError(f"not a final outcome: {outcome!r}")
        with self.store.write() as conn:
            row = conn.execute("SELECT details FROM retrain_decisions WHERE id=?",
                               (decision_id,)).fetchone()
            merged = {**loads(row["details"] if row else None, {}), **(details or {})}
            conn.execute(
                "UPDATE retrain_decisions SET outcome=?, reasons=?, run_id=?, "
                "challenger_version=?, champion_version=?, metrics=?, details=?, finished_at=? "
                "WHERE id=?",
                (outcome, dumps(reasons), run_id, challenger_version, champion_version,
                 dumps(metrics or {}), dumps(merged), time.time(), decision_id))
        return self.get(decision_id)

    def get(self, decision_id: str) -> RetrainDecision:
        rows = self.store.query("SELECT * FROM retrain_decisions WHERE "
                                "substr(id, 1, length(CAST(? AS TEXT)))"
                                " = ? ORDER BY created_at", (decision_id, decision_id))
        exact = [r for r in rows if r["id"] == decision_id]
        if not rows:
            raise UsageError(f"no retraining decision with id '{decision_id}'")
        if len(rows) > 1 and not exact:
            raise UsageError(f"decision id '{decision_id}' is ambiguous")
        return self._read([(exact or rows)[0]])[0]

    def list(self, *, model_name: str | None = None, limit: int | None = None
             ) -> list[RetrainDecision]:
        """Decisions, oldest first (with `limit`, the most recent ones)."""
        sql, params = "SELECT * FROM retrain_decisions", []
        if model_name is not None:
            sql, params = sql + " WHERE model_name = ?", [model_name]
        sql += " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._read(list(reversed(self.store.query(sql, tuple(params)))))

    def _read(self, rows: list[Any]) -> list[RetrainDecision]:
        """`rows` as decisions, those left "running" by a process that is gone read as
        "interrupted" (see the module docstring)."""
        here, me = host_name(), os.getpid()
        gone: set[str] = set()
        unsure: dict[str, list[str]] = {}  # model: ids of rows another process may still write
        for row in rows:
            if row["outcome"] != "running":
                continue
            if row["host"] == here and not process_alive(row["pid"]):
                gone.add(row["id"])
            elif not (row["host"] == here and row["pid"] == me):
                unsure.setdefault(row["model_name"], []).append(row["id"])
        for model_name, ids in unsure.items():
            if self.store.lock_held(decision_lock_name(model_name)):
                continue
            # Nobody holds the lock: their process is gone, unless it finished between the
            # read and the lock check; read the rows again to tell.
            marks = ",".join("?" * len(ids))
            gone.update(r["id"] for r in self.store.query(
                f"SELECT id FROM retrain_decisions WHERE outcome='running' AND id IN ({marks})",
                tuple(ids)))
        return [_from_row(row, interrupted=row["id"] in gone) for row in rows]


def _from_row(row: Any, *, interrupted: bool = False) -> RetrainDecision:
    outcome = "interrupted" if interrupted else row["outcome"]
    return RetrainDecision(
        id=row["id"], model_name=row["model_name"], created_at=row["created_at"],
        outcome=outcome, reasons=loads(row["reasons"], []), trigger=row["trigger_batch"],
        batches=loads(row["batches"], []), forced=bool(row["forced"]), run_id=row["run_id"],
        challenger_version=row["challenger_version"], champion_version=row["champion_version"],
        metrics=loads(row["metrics"], {}), details=loads(row["details"], {}),
        finished_at=row["finished_at"])
    return True
