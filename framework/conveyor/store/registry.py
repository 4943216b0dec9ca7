"""The model registry: numbered versions per model name, aliases, and the history of every move.

Promotion happens only through the evaluation gate (a stage) or an explicit command; each alias
change is one transaction that also appends to `alias_history`, so `rollback` can always find
the previous champion and nothing is ever half-promoted.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from typing import Any

from conveyor.compiled import CompiledStatus
from conveyor.contract import ModelContract
from conveyor.errors import GateRejected, StoreError, UsageError
from conveyor.names import check_name
from conveyor.store.artifacts import ArtifactRef
from conveyor.store.db import Store, as_number, dumps, loads, numeric_metrics

CHAMPION = "champion"
ANY = object()


class AliasMoved(Exception):
    """An alias changed between reading it and moving it (another run promoted meanwhile)."""

    def __init__(self, name: str, alias: str, expected: object, actual: int | None) -> None:
        super().__init__(f"{name}'s {alias} moved from {expected} to {actual}")
        self.expected, self.actual = expected, actual


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    run_id: str
    stage: str
    artifact: dict[str, Any]
    metrics: dict[str, float]
    gate: dict[str, Any]
    decision: str
    config_hash: str
    data: dict[str, Any]
    created_at: float
    # What could not be read back from this version's row (bad JSON, a metric that is not a
    # number): listings show the version flagged; `Registry.get` refuses to use it.
    problems: tuple[str, ...] = ()

    def comparison(self, action: str = "gate") -> dict[str, Any] | None:
        """The comparison with the champion its promotion rests on ({champion_version, rows,
        champion, challenger, intervals: {metric: {diff, low, high, level, rows}},
        unavailable}): a retrain's hold-out comparison for a `retrain` move, else its gate's."""
        if action == "retrain" and self.gate.get("retrain_comparison"):
            return self.gate["retrain_comparison"]
        return self.gate.get("comparison")

    @classmethod
    def from_row(cls, row: Any) -> ModelVersion:
        problems: list[str] = []

        def column(key: str) -> dict[str, Any]:
            try:
                value = loads(row[key], {})
            except ValueError as exc:
                problems.append(f"{key} is unreadable ({exc})")
                return {}
            if not isinstance(value, dict):
                problems.append(f"{key} is unreadable (not a mapping)")
                return {}
            return value

        artifact, gate, data = column("artifact"), column("gate"), column("data")
        metrics = numeric_metrics(column("metrics"), problems)
        created_at = as_number(row["created_at"])
        if created_at is None:
            problems.append(f"created_at is not a time: {row['created_at']!r}")
        return cls(row["name"], row["version"], row["run_id"], row["stage"], artifact, metrics,
                   gate, row["decision"], row["config_hash"], data, created_at or 0.0,
                   tuple(problems))


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store

    def register(self, *, name: str, run_id: str, stage: str, artifact: dict[str, Any],
                 metrics: dict[str, float], gate: dict[str, Any], decision: str,
                 config_hash: str, data: dict[str, Any],
                 contract: ModelContract | None = None) -> int:
        """Record a new version (numbered after the last one) with its contract, if given."""
        check_name(name, "model name")  # it becomes a folder (profiles, the prediction log)
        with self.store.write(lock=f"registry:{name}") as conn:
            row = conn.execute("SELECT MAX(version) FROM model_versions WHERE name=?",
                               (name,)).fetchone()
            version = (row[0] or 0) + 1
            conn.execute(
                "INSERT INTO model_versions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (name, version, run_id, stage, dumps(artifact), dumps(metrics), dumps(gate),
                 decision, config_hash, dumps(data), time.time()))
            if contract is not None:
                conn.execute("INSERT INTO model_contracts VALUES (?,?,?) ON CONFLICT "
                             "(name, version) DO UPDATE SET contract = excluded.contract",
                             (name, version, dumps(contract.to_dict())))
        return version

    def contract(self, name: str, version: int) -> ModelContract | None:
        """The contract recorded with a version; None for versions registered before Conveyor
        recorded contracts (their run's config describes them)."""
        rows = self.store.query("SELECT contract FROM model_contracts WHERE name=? AND version=?",
                                (name, int(version)))
        return ModelContract.from_dict(loads(rows[0]["contract"], {})) if rows else None

    def compiled(self, name: str, version: int) -> CompiledStatus | None:
        """How a version is scored as recorded (`conveyor.compiled`), None before it is."""
        rows = self.store.query("SELECT * FROM compiled_models WHERE name=? AND version=?",
                                (name, int(version)))
        return _compiled_status(rows[0]) if rows else None

    def compiled_artifact(self, sha256: str) -> ArtifactRef | None:
        """The stored artifact (codec, suffix, size) a compiled status's `sha256` names."""
        rows = self.store.query("SELECT sha256, size, codec, suffix FROM artifacts "
                                "WHERE sha256=?", (sha256,))
        return ArtifactRef(rows[0]["sha256"], rows[0]["codec"], rows[0]["suffix"],
                           int(rows[0]["size"])) if rows else None

    def compiled_all(self) -> dict[tuple[str, int], CompiledStatus]:
        """Every recorded `CompiledStatus`, by (name, version)."""
        return {(row["name"], row["version"]): _compiled_status(row)
                for row in self.store.query("SELECT * FROM compiled_models")}

    def record_compiled(self, name: str, version: int, status: CompiledStatus, *,
                        replace: bool = False) -> CompiledStatus:
        """Record how a version is scored, unless a record is there already (another process
        built it at the same time: its record stands), or with `replace`. Returns the record
        that stands."""
        with self.store.write(lock=f"registry:{name}") as conn:
            row = conn.execute("SELECT * FROM compiled_models WHERE name=? AND version=?",
                               (name, int(version))).fetchone()
            if row is not None and not replace:
                return _compiled_status(row)
            values = (name, int(version), status.served_by, status.reason, status.sha256,
                      dumps(dict(status.parity)), dumps(dict(status.converters)),
                      status.created_at or time.time())
            conn.execute("DELETE FROM compiled_models WHERE name=? AND version=?",
                         (name, int(version)))
            conn.execute("INSERT INTO compiled_models VALUES (?,?,?,?,?,?,?,?)", values)
        return self.compiled(name, version) or status

    def note(self, name: str, version: int, reason: str) -> None:
        """Append a reason to a version's recorded gate decision."""
        with self.store.write(lock=f"registry:{name}") as conn:
            row = conn.execute("SELECT gate FROM model_versions WHERE name=? AND version=?",
                               (name, version)).fetchone()
            gate = loads(row["gate"], {}) if row else {}
            gate["reasons"] = [*gate.get("reasons", []), reason]
            conn.execute("UPDATE model_versions SET gate=? WHERE name=? AND version=?",
                         (dumps(gate), name, version))

    def annotate(self, name: str, version: int, **fields: Any) -> None:
        """Set keys of a version's recorded gate decision (a retrain's comparison, say)."""
        with self.store.write(lock=f"registry:{name}") as conn:
            row = conn.execute("SELECT gate FROM model_versions WHERE name=? AND version=?",
                               (name, version)).fetchone()
            gate = loads(row["gate"], {}) if row else {}
            gate.update(fields)
            conn.execute("UPDATE model_versions SET gate=? WHERE name=? AND version=?",
                         (dumps(gate), name, version))

    def get(self, name: str, version: int) -> ModelVersion:
        rows = self.store.query("SELECT * FROM model_versions WHERE name=? AND version=?",
                                (name, int(version)))
        if not rows:
            known = self.versions(name)
            hint = (f"versions of '{name}': " + ", ".join(str(v.version) for v in known)
                    if known else f"no model named '{name}'; see `conveyor models list`")
            raise UsageError(f"model '{name}' has no version {version}", hint=hint)
        record = ModelVersion.from_row(rows[0])
        if record.problems:
            raise StoreError(f"model '{name}' version {version}: its record in the store is "
                             f"damaged: {'; '.join(record.problems)}",
                             hint="`conveyor models list` shows every version; promote "
                                  "another one")
        return record

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of `name`), damaged rows included with their `problems`."""
        sql, params = "SELECT * FROM model_versions", ()
        if name is not None:
            sql, params = sql + " WHERE name=?", (name,)
        return [ModelVersion.from_row(r) for r in self.store.query(sql + " ORDER BY name, version",
                                                                    params)]

    def aliases(self, name: str) -> dict[str, int]:
        rows = self.store.query("SELECT alias, version FROM aliases WHERE name=?", (name,))
        return {row["alias"]: row["version"] for row in rows}

    def alias(self, name: str, alias: str = CHAMPION) -> ModelVersion | None:
        version = self.aliases(name).get(alias)
        return self.get(name, version) if version is not None else None

    def set_alias(self, name: str, alias: str, version: int, *, action: str, reason: str,
                  forced: bool = False, actor: str | None = None,
                  expect: int | object | None = ANY) -> int | None:
        """Point `alias` at `version`, recording who/why; returns the version it pointed at.

        With `expect`, the move happens only if the alias still points where the caller last
        saw it (compare-and-set); otherwise AliasMoved is raised and nothing changes."""
        actor = actor or _user()
        # The model's registry lock: on PostgreSQL two machines promoting at once take turns,
        # so the compare-and-set sees the other's move (one champion, both moves in history).
        with self.store.write(lock=f"registry:{name}") as conn:
            row = conn.execute("SELECT version FROM aliases WHERE name=? AND alias=?",
                               (name, alias)).fetchone()
            previous = row["version"] if row else None
            if expect is not ANY and previous != expect:
                raise AliasMoved(name, alias, expect, previous)
            conn.execute("INSERT INTO aliases VALUES (?,?,?,?) ON CONFLICT (name, alias) "
                         "DO UPDATE SET version = excluded.version, "
                         "updated_at = excluded.updated_at",
                         (name, alias, version, time.time()))
            conn.execute(
                "INSERT INTO alias_history (name, alias, version, previous, action, actor, reason,"
                " forced, at) VALUES (?,?,?,?,?,?,?,?,?)",
                (name, alias, version, previous, action, actor, reason, int(forced), time.time()))
        return previous

    def promote(self, name: str, version: int, *, force: bool = False, reason: str = "",
                actor: str | None = None, alias: str = CHAMPION) -> int | None:
        """Make `version` the model's `alias` by hand, as `conveyor models promote` does.

        The version's recorded gate decision is checked again: a version that did not pass
        raises GateRejected (with the gate's reasons) unless `force`, and a forced promotion
        is recorded as forced. `actor` defaults to the current user. Returns the version the
        alias pointed at before (None if it had none); UsageError for an unknown version."""
        record = self.get(name, version)
        if record.decision != "passed" and not force:
            raise GateRejected(
                f"{name} version {version} did not pass the evaluation gate: "
                + "; ".join(record.gate.get("reasons", [])),
                hint="use --force to promote it anyway (recorded as forced)")
        return self.set_alias(name, alias, record.version, action="promote",
                              reason=reason or "promoted by hand", actor=actor,
                              forced=force and record.decision != "passed")

    def history(self, name: str) -> list[dict[str, Any]]:
        rows = self.store.query("SELECT * FROM alias_history WHERE name=? ORDER BY id", (name,))
        return [dict(row) for row in rows]

    def rollback(self, name: str, alias: str = CHAMPION, *, reason: str = "",
                 actor: str | None = None) -> tuple[int, int]:
        """Point the alias back at the version it had before its last change; returns
        (the version it pointed at, the version it points at now). `actor` defaults to the
        current user."""
        moves = [h for h in self.history(name) if h["alias"] == alias]
        if not moves:
            raise UsageError(f"model '{name}' has never had a {alias}; nothing to roll back")
        # Promotions push, rollbacks pop: repeated rollbacks keep walking back in time.
        stack: list[int] = []
        for move in moves:
            if move["action"] == "rollback" and stack:
                stack.pop()
            elif not stack or stack[-1] != move["version"]:
                # Promoting the champion again is no change: rolling back passes over it.
                stack.append(move["version"])
        current = moves[-1]["version"]
        if len(stack) < 2:
            raise UsageError(f"model '{name}' has no earlier {alias} than version {current}")
        target = stack[-2]
        self.set_alias(name, alias, target, action="rollback", actor=actor,
                       reason=reason or f"rollback from version {current}")
        return current, target


def _compiled_status(row: Any) -> CompiledStatus:
    def mapping(key: str) -> dict[str, Any]:
        try:
            value = loads(row[key], {})
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    return CompiledStatus(row["served_by"], row["reason"], row["sha256"], mapping("parity"),
                          mapping("converters"), as_number(row["created_at"]))


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
