"""Runs, their stages, params, metrics and data inputs: the repository behind every run listing.

    from conveyor.store import Runs, RunQuery, open_store

    runs = Runs(open_store(project_dir))
    run = runs.find("20250101-12")                     # an id, or a unique prefix of one
    for stage in runs.stages(run.id):
        print(stage.name, stage.status, stage.cached)
    for run in runs.list(RunQuery(status="completed"), limit=10):   # newest first
        print(run.id, runs.metrics(run.id))

The runner records a run (`open`, `record_stage`, `close`); `conveyor runs`, `conveyor.api`, the
cache and the UI read it back from here. Records are returned as frozen dataclasses holding the
values as stored: the JSON columns (`StoredRun.config`, `StoredStage.outputs`, ...) as their
JSON text, decoded with `StoredRun.json` / `StoredStage.json`, so a row damaged by hand or by
another tool is still listed (and flagged by whoever decodes it) rather than refused here.
A run's params are stored as JSON text too (`params`); metric values as numbers (read them
back with `conveyor.store.numeric_metrics`). Nothing here imports a heavy library.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from conveyor.errors import UsageError
from conveyor.store.db import Store, dumps, host_name

# Sortable columns of `Runs.list`; a metric sorts as "metric:NAME".
RUN_ORDERS = {"created": "r.created_at", "status": "r.status", "duration": "r.duration",
              "id": "r.id"}
METRIC_OPS = ("=", "!=", ">", "<", ">=", "<=")
NO_LIMIT = 2**62  # LIMIT for "all" (PostgreSQL has no LIMIT -1; SQLite needs one with OFFSET)
_REPLACE_STAGE = ", ".join(
    f"{column} = excluded.{column}" for column in (
        "position", "type", "type_version", "status", "fingerprint", "cached", "reason",
        "started_at", "duration", "settings", "upstream", "files", "outputs", "error"))

UNSETTLED = ("completed, but what it deferred to the run's success (see "
             "StageContext.on_run_success) did not happen: the run failed")


def _decode(text: Any, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class StoredRun:
    """A run's record as stored. `overrides`, `config` and `packages` are JSON text (decode
    them with `json`); `status` is "running", "completed", "failed", "interrupted", ...;
    `exit_code` the code `conveyor run` exited with (None while running or for runs recorded
    before it was kept); `git_dirty` None outside git. Times are Unix seconds."""

    id: str
    project: str | None
    status: str
    created_at: Any
    finished_at: Any = None
    duration: Any = None
    pid: int | None = None
    host: str | None = None
    invocation: str | None = None
    command: str | None = None
    overrides: str | None = None
    config: str | None = None
    config_hash: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    packages: str | None = None
    error: str | None = None
    exit_code: int | None = None
    plugins: str | None = None  # JSON: {name: {distribution, version, origin}}; None before 4

    def json(self, column: str, default: Any = None) -> Any:
        """A JSON column decoded; `default` when it is empty or unreadable."""
        return _decode(getattr(self, column), default)

    @classmethod
    def _from_row(cls, row: Any) -> StoredRun:
        values = {f.name: row[f.name] for f in fields(cls)}
        if values["git_dirty"] is not None:
            values["git_dirty"] = bool(values["git_dirty"])
        return cls(**values)


@dataclass(frozen=True)
class StoredStage:
    """One stage of a run as stored. `settings`, `upstream` ({stage: fingerprint}), `files`
    ({path: version}) and `outputs` ({name: artifact reference}) are JSON text (decode them with
    `json`); `cached` says the result was reused from run `reason` names."""

    run_id: str
    name: str
    position: int | None
    type: str | None
    type_version: str | None
    status: str
    fingerprint: str | None = None
    cached: bool = False
    reason: str | None = None
    started_at: Any = None
    duration: Any = None
    settings: str | None = None
    upstream: str | None = None
    files: str | None = None
    outputs: str | None = None
    error: str | None = None

    def json(self, column: str, default: Any = None) -> Any:
        """A JSON column decoded; `default` when it is empty or unreadable."""
        return _decode(getattr(self, column), default)

    @classmethod
    def _from_row(cls, row: Any) -> StoredStage:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["cached"] = bool(values["cached"])
        return cls(**values)


@dataclass(frozen=True)
class DataInput:
    """A data file a run read: `version` is its recorded digest (the core's bare sha256, or
    "ALGORITHM:HEX" from a `conveyor_file_fingerprint` plugin, e.g. "md5:..." from DVC)."""

    run_id: str
    path: str
    version: str | None
    size: int | None = None


@dataclass(frozen=True)
class MetricValue:
    """One metric a stage of a run reported (`value` as stored: normally a number)."""

    run_id: str
    stage: str
    key: str
    value: Any


@dataclass(frozen=True)
class ParamTest:
    """Runs whose param `key` (a flattened config key, e.g. "model.params.max_depth") is stored
    as one of `values` (JSON text, e.g. '3' or '"gini"'); with `equal=False`, runs where it is
    not."""

    key: str
    values: tuple[str, ...]
    equal: bool = True


@dataclass(frozen=True)
class MetricTest:
    """Runs with a metric `key` (of any stage) whose value satisfies `op` (one of `METRIC_OPS`)
    against `value`."""

    key: str
    op: str
    value: float

    def __post_init__(self) -> None:
        if self.op not in METRIC_OPS:
            raise ValueError(f"op must be one of {', '.join(METRIC_OPS)}, not {self.op!r}")


@dataclass(frozen=True)
class RunQuery:
    """Which runs `Runs.list` and `Runs.count` return; every given filter must hold.

    `status` and `command` match exactly, `since` / `until` bound `created_at` (Unix seconds,
    inclusive / exclusive), each word of `text` must occur in the run's id, command or
    overrides, `params` and `metrics` are `ParamTest`s and `MetricTest`s."""

    status: str | None = None
    command: str | None = None
    since: float | None = None
    until: float | None = None
    text: tuple[str, ...] = ()
    params: tuple[ParamTest, ...] = ()
    metrics: tuple[MetricTest, ...] = ()

    def _where(self, dialect: str = "sqlite") -> tuple[str, tuple[Any, ...]]:
        find = "strpos({}, ?)" if dialect == "postgresql" else "instr({}, ?)"
        clauses: list[str] = []
        values: list[Any] = []
        for column, value in (("r.status", self.status), ("r.command", self.command)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        if self.since is not None:
            clauses.append("r.created_at >= ?")
            values.append(self.since)
        if self.until is not None:
            clauses.append("r.created_at < ?")
            values.append(self.until)
        for word in self.text:
            clauses.append("(" + " OR ".join(
                find.format(column) + " > 0" for column in (
                    "r.id", "coalesce(r.command, '')", "coalesce(r.overrides, '')")) + ")")
            values += [word] * 3
        for param in self.params:
            test = "EXISTS" if param.equal else "NOT EXISTS"
            marks = ",".join("?" * len(param.values)) or "NULL"
            clauses.append(f"{test} (SELECT 1 FROM params p WHERE p.run_id = r.id AND p.key = ? "
                           f"AND p.value IN ({marks}))")
            values += [param.key, *param.values]
        for metric in self.metrics:
            clauses.append("EXISTS (SELECT 1 FROM metrics m WHERE m.run_id = r.id AND m.key = ? "
                           f"AND m.value {metric.op} ?)")
            values += [metric.key, metric.value]
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(values)


class Runs:
    """Record and read runs in a project store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- recording ---------------------------------------------------------------------------

    def open(self, run_id: str, *, project: str | None, command: str | None,
             invocation: str | None, overrides: Sequence[str], config: Mapping[str, Any],
             config_hash: str | None, git_commit: str | None, git_dirty: bool | None,
             packages: Mapping[str, Any], params: Mapping[str, Any],
             data: Iterable[tuple[str, str, int | None]], created_at: float | None = None,
             plugins: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """Record a new run as "running" by this process, with its params (values stored as
        JSON text), the data files it reads ((path, version, size)) and the plugins it runs
        with ({name: {"distribution", "version", "origin"}}), in one transaction."""
        with self.store.write() as conn:
            conn.execute(
                "INSERT INTO runs (id, project, status, created_at, pid, host, invocation, command,"
                " overrides, config, config_hash, git_commit, git_dirty, packages, plugins, "
                "heartbeat_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, project, "running", time.time() if created_at is None else created_at,
                 os.getpid(), host_name(), invocation, command, dumps(list(overrides)),
                 dumps(dict(config)), config_hash, git_commit,
                 None if git_dirty is None else int(git_dirty), dumps(dict(packages)),
                 None if plugins is None else dumps({k: dict(v) for k, v in plugins.items()}),
                 time.time()))
            self.store.heartbeat(run_id, conn=conn)  # the lease, by the database's clock
            conn.executemany("INSERT INTO params VALUES (?,?,?)",
                             [(run_id, k, dumps(v)) for k, v in params.items()])
            conn.executemany("INSERT INTO data_inputs VALUES (?,?,?,?)",
                             [(run_id, path, version, size) for path, version, size in data])

    def record_stage(self, run_id: str, *, name: str, position: int | None, type: str | None,
                     type_version: str | None, status: str, fingerprint: str | None,
                     cached: bool, reason: str | None, started_at: float | None,
                     duration: float | None, settings: Any, upstream: Mapping[str, str],
                     files: Mapping[str, str], outputs: Mapping[str, Any], error: str | None,
                     metrics: Mapping[str, float] | None = None) -> None:
        """Record (or replace) a stage of a run, its metrics and its stored artifacts, in one
        transaction."""
        with self.store.write() as conn:
            conn.execute(
                "INSERT INTO stages VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (run_id, name) DO UPDATE SET " + _REPLACE_STAGE,
                (run_id, name, position, type, type_version, status, fingerprint, int(cached),
                 reason, started_at, duration, dumps(settings), dumps(dict(upstream)),
                 dumps(dict(files)), dumps(dict(outputs)), error))
            conn.executemany("INSERT INTO metrics VALUES (?,?,?,?) ON CONFLICT "
                             "(run_id, stage, key) DO UPDATE SET value = excluded.value",
                             [(run_id, name, k, v) for k, v in (metrics or {}).items()])
            conn.executemany(
                "INSERT INTO run_artifacts VALUES (?,?,?,?) ON CONFLICT (run_id, stage, name) "
                "DO UPDATE SET sha256 = excluded.sha256",
                [(run_id, name, n, r["sha256"]) for n, r in outputs.items()
                 if isinstance(r, Mapping) and "sha256" in r])

    def close(self, run_id: str, *, status: str, error: str | None, exit_code: int | None
              ) -> None:
        """Record a run's final status, error and exit code; its duration from `created_at`."""
        with self.store.write() as conn:
            row = conn.execute("SELECT created_at FROM runs WHERE id=?", (run_id,)).fetchone()
            now = time.time()
            created = row["created_at"] if row else None
            conn.execute("UPDATE runs SET status=?, finished_at=?, duration=?, error=?, "
                         "exit_code=? WHERE id=?",
                         (status, now, now - created if isinstance(created, int | float)
                          else None, error, exit_code, run_id))

    def unsettle(self, run_id: str, stages: Iterable[str], error: str = UNSETTLED) -> int:
        """Mark completed stages of a run "unsettled" (what they deferred to the run's success
        did not happen), so the cache does not reuse them; stages that did not complete keep
        their status. Returns how many were marked."""
        with self.store.write() as conn:
            cursor = conn.executemany(
                "UPDATE stages SET status='unsettled', error=? "
                "WHERE run_id=? AND name=? AND status='completed'",
                [(error, run_id, name) for name in dict.fromkeys(stages)])
            return cursor.rowcount

    # --- one run -----------------------------------------------------------------------------

    def resolve(self, prefix: str) -> str:
        """The id of the run whose id is `prefix` or starts with it. UsageError when there is
        no such run or the prefix is ambiguous. Compared as text, not with LIKE: '%' or '_'
        typed are not wildcards."""
        rows = self.store.query("SELECT id FROM runs WHERE substr(id, 1, length(CAST(? AS TEXT)))"
                                " = ? "
                                "ORDER BY created_at DESC", (prefix, prefix)) if prefix else []
        if not rows:
            raise UsageError(f"no run with id '{prefix}' in this project",
                             hint="see `conveyor runs list`")
        ids = [row["id"] for row in rows]
        if prefix in ids:
            return prefix
        if len(ids) > 1:
            raise UsageError(f"run id '{prefix}' is ambiguous: " + ", ".join(ids[:5]))
        return ids[0]

    def find(self, prefix: str) -> StoredRun:
        """The run whose id is `prefix` or starts with it (UsageError if none or several)."""
        return self.get(self.resolve(prefix))

    def get(self, run_id: str) -> StoredRun:
        """The run with exactly this id (UsageError if there is none)."""
        rows = self.store.query("SELECT * FROM runs WHERE id=?", (run_id,))
        if not rows:
            raise UsageError(f"no run with id '{run_id}' in this project",
                             hint="see `conveyor runs list`")
        return StoredRun._from_row(rows[0])

    def latest(self) -> StoredRun | None:
        """The most recently started run, or None in a project that has none."""
        rows = self.store.query("SELECT * FROM runs ORDER BY created_at DESC LIMIT 1")
        return StoredRun._from_row(rows[0]) if rows else None

    def stages(self, run_id: str, *, status: str | None = None) -> list[StoredStage]:
        """A run's stages in pipeline order (only those with `status` when given)."""
        sql, values = "SELECT * FROM stages WHERE run_id=?", [run_id]
        if status is not None:
            sql, values = sql + " AND status=?", [*values, status]
        return [StoredStage._from_row(r) for r in self.store.query(
            sql + " ORDER BY position, started_at", tuple(values))]

    def params(self, run_id: str) -> dict[str, str]:
        """A run's params: {flattened config key: value as JSON text}."""
        return self.params_of([run_id]).get(run_id, {})

    def metrics(self, run_id: str, *, stage: str | None = None) -> dict[str, Any]:
        """A run's metrics by name (of one `stage` when given); values as stored."""
        if stage is not None:
            return {r["key"]: r["value"] for r in self.store.query(
                "SELECT key, value FROM metrics WHERE run_id=? AND stage=?", (run_id, stage))}
        return {m.key: m.value for m in self.metric_values(run_id)}

    def metric_values(self, run_id: str) -> list[MetricValue]:
        """A run's metrics with the stage that reported each, ordered by stage and name."""
        return [MetricValue(run_id, r["stage"], r["key"], r["value"]) for r in self.store.query(
            "SELECT stage, key, value FROM metrics WHERE run_id=? ORDER BY stage, key",
            (run_id,))]

    def data_inputs(self, run_id: str) -> list[DataInput]:
        """The data files a run read, by path."""
        return [DataInput(run_id, r["path"], r["sha256"], r["size"]) for r in self.store.query(
            "SELECT path, sha256, size FROM data_inputs WHERE run_id=? ORDER BY path", (run_id,))]

    def data(self, run_id: str) -> dict[str, str | None]:
        """{path: version} of the data files a run read."""
        return {d.path: d.version for d in self.data_inputs(run_id)}

    # --- many runs ---------------------------------------------------------------------------

    def list(self, query: RunQuery | None = None, *, order: str = "created",
             descending: bool = True, limit: int | None = None, offset: int = 0
             ) -> list[StoredRun]:
        """Runs matching `query`, newest first by default. `order` is one of `RUN_ORDERS` or
        "metric:NAME" (runs without that metric last); ties go newest first."""
        where, values = (query or RunQuery())._where(self.store.dialect)
        if order.startswith("metric:"):
            key = "(SELECT MAX(m.value) FROM metrics m WHERE m.run_id = r.id AND m.key = ?)"
            key_values: tuple[Any, ...] = (order[len("metric:"):],)
        elif order in RUN_ORDERS:
            key, key_values = RUN_ORDERS[order], ()
        else:
            raise ValueError(f"order must be one of {', '.join(RUN_ORDERS)} or metric:NAME, "
                             f"not {order!r}")
        direction = "DESC" if descending else "ASC"
        sql = (f"SELECT r.* FROM runs r {where} ORDER BY {key} IS NULL, {key} {direction}, "
               f"r.created_at DESC LIMIT ? OFFSET ?")
        rows = self.store.query(sql, (*values, *key_values, *key_values,
                                      NO_LIMIT if limit is None else int(limit), int(offset)))
        return [StoredRun._from_row(r) for r in rows]

    def count(self, query: RunQuery | None = None) -> int:
        """How many runs match `query`."""
        where, values = (query or RunQuery())._where(self.store.dialect)
        return self.store.query(f"SELECT COUNT(*) FROM runs r {where}", values)[0][0]

    def statuses(self) -> list[str]:
        """Every status some run has, sorted."""
        return [r[0] for r in self.store.query("SELECT DISTINCT status FROM runs ORDER BY status")]

    def get_many(self, run_ids: Sequence[str]) -> list[StoredRun]:
        """The runs with these ids, in the order given (unknown ids left out)."""
        found = {r["id"]: StoredRun._from_row(r)
                 for r in self._in("SELECT * FROM runs WHERE id IN ({})", run_ids)}
        return [found[i] for i in dict.fromkeys(run_ids) if i in found]

    def params_of(self, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """{run id: its params} for several runs."""
        return self._by_run("SELECT run_id, key, value FROM params WHERE run_id IN ({})", run_ids)

    def metrics_of(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{run id: its metrics by name} for several runs."""
        return self._by_run("SELECT run_id, key, value FROM metrics WHERE run_id IN ({})",
                            run_ids)

    def data_of(self, run_ids: Sequence[str]) -> dict[str, dict[str, str | None]]:
        """{run id: {path: version}} for several runs."""
        return self._by_run("SELECT run_id, path AS key, sha256 AS value FROM data_inputs "
                            "WHERE run_id IN ({})", run_ids)

    def stage_counts(self, run_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """{run id: (stages reused from the cache, stages)} for several runs."""
        return {r["run_id"]: (r["cached"] or 0, r["total"]) for r in self._in(
            "SELECT run_id, SUM(cached) AS cached, COUNT(*) AS total FROM stages "
            "WHERE run_id IN ({}) GROUP BY run_id", run_ids)}

    def data_inputs_versioned(self, prefix: str) -> list[DataInput]:
        """Every data input of every run whose version starts with `prefix` (e.g. "md5:"),
        oldest run first."""
        return [DataInput(r["run_id"], r["path"], r["sha256"], r["size"]) for r in self.store.query(
            "SELECT d.run_id, d.path, d.sha256, d.size FROM data_inputs d "
            "JOIN runs r ON r.id = d.run_id WHERE substr(d.sha256, 1, length(CAST(? AS TEXT)))"
            " = ? "
            "ORDER BY r.created_at", (prefix, prefix))]

    # --- stages across runs --------------------------------------------------------------------

    def completed_stages(self, fingerprint: str, *, limit: int = 5) -> list[StoredStage]:
        """Completed stages with this fingerprint, computed ones before reused ones, newest
        first: what the cache may reuse."""
        return [StoredStage._from_row(r) for r in self.store.query(
            "SELECT * FROM stages WHERE fingerprint=? AND status='completed' "
            "ORDER BY cached, started_at DESC LIMIT ?", (fingerprint, int(limit)))]

    def last_completed_stage(self, name: str) -> StoredStage | None:
        """The most recently started completed stage called `name`, of any run."""
        rows = self.store.query("SELECT * FROM stages WHERE name=? AND status='completed' "
                                "ORDER BY started_at DESC LIMIT 1", (name,))
        return StoredStage._from_row(rows[0]) if rows else None

    def latest_stage(self, name: str) -> StoredStage | None:
        """The stage called `name` in the latest run that has one (whatever its status)."""
        rows = self.store.query(
            "SELECT s.* FROM stages s JOIN runs r ON r.id = s.run_id WHERE s.name = ? "
            "ORDER BY r.created_at DESC LIMIT 1", (name,))
        return StoredStage._from_row(rows[0]) if rows else None

    # --- helpers -------------------------------------------------------------------------------

    def _in(self, sql: str, ids: Sequence[str]) -> list[Any]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return []
        return self.store.query(sql.format(",".join("?" * len(ids))), tuple(ids))

    def _by_run(self, sql: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        for row in self._in(sql, ids):
            result.setdefault(row["run_id"], {})[row["key"]] = row["value"]
        return result
