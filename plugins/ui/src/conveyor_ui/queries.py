"""What the pages show, read from the project store through the core's public API: runs through
`conveyor.store.Runs`, models through `conveyor.store.Registry`.

Every function takes an open `Store` and returns plain dicts and lists for the templates. A run
that does not exist raises `NotFound`; nothing here writes to the store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import UsageError
from conveyor.secrets import Redactor
from conveyor.store import (
    ArtifactRef,
    MetricTest,
    ParamTest,
    Registry,
    RunQuery,
    Runs,
    Store,
    StoredRun,
    as_number,
    numeric_metrics,
)
from conveyor.uncertainty import comparison_lines

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
# The runs table's sortable columns (`conveyor.store.Runs.list`); metrics sort as "metric:NAME".
SORTS = ("created", "status", "duration", "id")
KEY_PARAM_COLUMNS = 5
METRIC_COLUMNS = 6
INLINE_JSON_BYTES = 64 * 1024
# Settings every run of a project shares or that say nothing about the model: never a "key param".
QUIET_PARAMS = ("project", "plugins.", "security.", "env.", "dvc.", "evaluate.gate", "serve.",
                "monitor.")
FILTER_TERM = re.compile(r"^(?P<key>[\w.\-/]+)\s*(?P<op>>=|<=|!=|=|>|<)\s*(?P<value>.+)$")


class NotFound(Exception):
    """A run, model or page that the store does not have."""


@dataclass
class RunsQuery:
    """The runs page's state, as its URL carries it."""

    page: int = 1
    per_page: int = DEFAULT_PAGE_SIZE
    sort: str = "created"
    descending: bool = True
    status: str = ""
    q: str = ""
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_params(cls, params: Any) -> RunsQuery:
        query = cls()
        query.page = max(1, _int(params.get("page"), 1))
        per_page = _int(params.get("per"), DEFAULT_PAGE_SIZE)
        query.per_page = per_page if per_page in PAGE_SIZES else DEFAULT_PAGE_SIZE
        sort = params.get("sort") or "created"
        query.sort = sort if sort in SORTS or sort.startswith("metric:") else "created"
        query.descending = params.get("dir", "desc") != "asc"
        query.status = (params.get("status") or "").strip()
        query.q = (params.get("q") or "").strip()[:500]
        return query

    def url(self, **changes: Any) -> str:
        """The runs page's URL with some of its state changed (a sort link, the next page)."""
        from urllib.parse import urlencode

        state = {"page": self.page, "per": self.per_page, "sort": self.sort,
                 "dir": "desc" if self.descending else "asc", "status": self.status, "q": self.q}
        state.update(changes)
        return "/runs?" + urlencode({k: v for k, v in state.items() if v not in ("", None)})

    def sort_url(self, column: str) -> str:
        """Sort by `column`; a second click on the sorted column flips the direction."""
        if column == self.sort:
            return self.url(sort=column, dir="asc" if self.descending else "desc", page=1)
        return self.url(sort=column, dir="desc", page=1)


def change_token(store: Store) -> str:
    """Changes whenever another connection commits to the store (a run, a promotion): SQLite's
    data_version costs nothing to read, so pages can poll it every few seconds."""
    return str(store.data_version())


# --- runs ----------------------------------------------------------------------------------


def runs_page(store: Store, query: RunsQuery) -> dict[str, Any]:
    """One page of the runs table, sorted and filtered in the store: a store with thousands of
    runs costs what one page costs."""
    repo = Runs(store)
    run_query = _filters(query)
    total = repo.count(run_query)
    pages = max(1, -(-total // query.per_page))
    query.page = min(query.page, pages)
    rows = repo.list(run_query, order=query.sort, descending=query.descending,
                     limit=query.per_page, offset=(query.page - 1) * query.per_page)
    runs = [{"id": r.id, "created_at": r.created_at, "status": r.status, "duration": r.duration,
             "command": r.command, "overrides": r.overrides, "error": r.error, "config": r.config}
            for r in rows]
    ids = [run["id"] for run in runs]
    metrics = repo.metrics_of(ids)
    data = repo.data_of(ids)
    params_by_run = repo.params_of(ids)
    for run in runs:  # secrets redacted, also in runs recorded before Conveyor redacted them
        redactor = Redactor.for_record(_json(run.pop("config"), {}))
        params_by_run[run["id"]] = _redact_params(redactor, params_by_run.get(run["id"], {}))
        run["command"], run["error"] = redactor.text(run["command"]), redactor.text(run["error"])
        run["_overrides"] = redactor.overrides(_json(run["overrides"], []))
    stages = repo.stage_counts(ids)
    key_params = _differing(params_by_run, ids)[:KEY_PARAM_COLUMNS]
    metric_names = sorted({k for values in metrics.values() for k in values})
    if query.sort.startswith("metric:") and query.sort[7:] not in metric_names:
        metric_names.insert(0, query.sort[7:])
    for run in runs:
        run["overrides"] = run.pop("_overrides")
        run["problems"] = []  # a damaged row is shown flagged, never a 500
        run["metrics"] = numeric_metrics(metrics.get(run["id"], {}), run["problems"])
        run["data"] = {path: _short_version(v) for path, v in data.get(run["id"], {}).items()}
        run["params"] = {k: _display(params_by_run.get(run["id"], {}).get(k)) for k in key_params}
        run["cached"], run["stages"] = stages.get(run["id"], (0, 0))
    return {"runs": runs, "total": total, "pages": pages, "query": query,
            "metric_names": metric_names[:METRIC_COLUMNS], "key_params": key_params,
            "statuses": repo.statuses(), "page_sizes": PAGE_SIZES}


def _filters(query: RunsQuery) -> RunQuery:
    """The runs to show, from the status and the search box: words match the run id, command
    or overrides; `key=value` (or `!=`) matches a param, a flattened config key such as
    `model.params.max_depth=3`; `accuracy>0.8` (`<`, `>=`, `<=`) matches a metric."""
    text: list[str] = []
    params: list[ParamTest] = []
    metrics: list[MetricTest] = []
    for term in query.q.split():
        match = FILTER_TERM.match(term)
        if match is None:
            text.append(term)
            continue
        key, op, value = match["key"], match["op"], match["value"]
        if op in ("=", "!="):
            # params are stored as JSON text
            params.append(ParamTest(key, (value, json.dumps(value)), equal=op == "="))
        elif (number := _float(value)) is not None:
            metrics.append(MetricTest(key, op, number))
        else:
            query.problems.append(f"'{term}': compare a metric with a number, e.g. accuracy>0.8")
    return RunQuery(status=query.status or None, text=tuple(text), params=tuple(params),
                    metrics=tuple(metrics))


def resolve_run(store: Store, run_id: str) -> str:
    """The id of the run named by `run_id` or a unique prefix of it; NotFound otherwise."""
    try:
        return Runs(store).resolve(run_id)
    except UsageError as exc:
        raise NotFound(f"no run '{run_id}' in this project") from exc


def run_detail(store: Store, run_id: str) -> dict[str, Any]:
    """One run: lineage, stages (cached or why it ran), metrics, artifacts, registered model
    versions, and the validation report of a failed validation."""
    repo = Runs(store)
    run_id = resolve_run(store, run_id)
    row = repo.get(run_id)
    run: dict[str, Any] = {key: getattr(row, key) for key in (
        "id", "project", "status", "created_at", "finished_at", "duration", "command",
        "config_hash", "git_commit", "error", "exit_code", "host", "invocation", "git_dirty")}
    config = row.json("config", {})
    redactor = Redactor.for_record(config)
    run["overrides"] = redactor.overrides(row.json("overrides", []))
    run["config"] = redactor.config(config) if isinstance(config, dict) else config
    run["command"], run["error"] = redactor.text(run["command"]), redactor.text(run["error"])
    run["packages"] = row.json("packages", {})
    run["data"] = [{"path": d.path, "version": d.version, "size": d.size}
                   for d in repo.data_inputs(run_id)]
    run["problems"] = []
    run["metrics"] = [{"stage": m.stage, "key": m.key, "value": m.value}
                      for m in repo.metric_values(run_id)]
    for metric in run["metrics"]:
        if as_number(metric["value"]) is None:
            numeric_metrics({metric["key"]: metric["value"]}, run["problems"])
            metric["value"] = None
    run["stages"] = []
    run["artifacts"] = []
    run["validation"] = []
    for stage in repo.stages(run_id):
        outputs = stage.json("outputs", {})
        run["stages"].append({
            "name": stage.name, "type": stage.type, "status": stage.status,
            "cached": stage.cached, "reason": stage.reason,
            "duration": stage.duration, "started_at": stage.started_at,
            "error": redactor.text(stage.error), "needs": sorted(stage.json("upstream", {}) or {})})
        for name, ref in sorted(outputs.items()):
            if not isinstance(ref, dict) or "sha256" not in ref:
                continue
            artifact = {"stage": stage.name, "name": name, **ref, "content": None}
            if ref.get("codec") == "json" and _int(ref.get("size"), 0) <= INLINE_JSON_BYTES:
                artifact["content"] = read_json_artifact(store, ref)
            run["artifacts"].append(artifact)
            report = artifact["content"]
            if name == "validation" and isinstance(report, dict) and report.get("ok") is False:
                run["validation"].append({"stage": stage.name, **report})
    run["models"] = sorted(({"name": v.name, "version": v.version, "decision": v.decision}
                            for v in Registry(store).versions() if v.run_id == run_id),
                           key=lambda v: (v["name"], v["version"]))
    return run


def read_json_artifact(store: Store, ref: dict[str, Any]) -> Any:
    """A JSON artifact's content, its sha256 checked first; a problem is shown, not raised."""
    try:
        path = store.artifacts.verify(ArtifactRef.from_dict(ref))
        return json.loads(path.read_text())
    except Exception as exc:  # a missing or damaged artifact must not break the page
        return {"unreadable": str(getattr(exc, "message", exc))}


def compare(store: Store, run_ids: Sequence[str]) -> dict[str, Any]:
    """Runs side by side: every param with the ones that differ marked, metrics, data versions."""
    ids: list[str] = []
    for run_id in run_ids:
        resolved = resolve_run(store, run_id)
        if resolved not in ids:
            ids.append(resolved)
    repo = Runs(store)
    found: list[StoredRun] = repo.get_many(ids)
    runs = [{"id": r.id, "status": r.status, "created_at": r.created_at, "duration": r.duration}
            for r in found]
    params = repo.params_of(ids)
    for row in found:
        params[row.id] = _redact_params(Redactor.for_record(row.json("config", {})),
                                        params.get(row.id, {}))
    metrics = repo.metrics_of(ids)
    problems: list[str] = []
    for run_id in ids:
        flagged: list[str] = []
        metrics[run_id] = numeric_metrics(metrics.get(run_id, {}), flagged)
        problems += [f"run {run_id}: {problem}" for problem in flagged]
    data = repo.data_of(ids)

    def table(values: dict[str, dict[str, Any]], show: Any) -> list[dict[str, Any]]:
        keys = sorted({k for run in values.values() for k in run})
        rows = []
        for key in keys:
            cells = [values.get(run_id, {}).get(key) for run_id in ids]
            rows.append({"key": key, "values": [show(c) for c in cells],
                         "differs": len({json.dumps(c, sort_keys=True) for c in cells}) > 1})
        return rows

    metric_rows = table(metrics, lambda v: v)
    chart = {
        "data": [{"type": "bar", "name": run_id, "x": [row["key"] for row in metric_rows],
                  "y": [row["values"][i] for row in metric_rows]}
                 for i, run_id in enumerate(ids)],
        "layout": {"barmode": "group", "title": {"text": "metrics"},
                   "margin": {"t": 40, "r": 10, "b": 80, "l": 50}, "height": 360,
                   "legend": {"orientation": "h"}},
    }
    # The params that differ come first: those are what a comparison is for.
    param_rows = sorted(table(params, _display), key=lambda row: not row["differs"])
    return {"runs": runs, "ids": ids, "params": param_rows, "problems": problems,
            "metrics": metric_rows, "data": table(data, lambda v: v), "chart": chart}


# --- pipeline ------------------------------------------------------------------------------


def last_stage_status(store: Store, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each stage's outcome in the latest run that has it."""
    result: dict[str, dict[str, Any]] = {}
    repo = Runs(store)
    for name in names:
        stage = repo.latest_stage(name)
        if stage is not None:
            result[name] = {"status": stage.status, "cached": int(stage.cached),
                            "duration": stage.duration, "run_id": stage.run_id,
                            "reason": stage.reason, "type": stage.type}
    return result


def recorded_pipeline(store: Store) -> dict[str, dict[str, Any]]:
    """The stage graph the latest run recorded (when the project's config cannot be composed)."""
    repo = Runs(store)
    latest = repo.latest()
    if latest is None:
        return {}
    return {s.name: {"uses": s.type, "needs": sorted(s.json("upstream", {}))}
            for s in repo.stages(latest.id)}


# --- models --------------------------------------------------------------------------------


def models(store: Store) -> list[dict[str, Any]]:
    """Every model: versions with metrics, gate decision and lineage, aliases, alias history."""
    registry = Registry(store)
    versions = registry.versions()
    result = []
    for name in sorted({v.name for v in versions}):
        aliases = registry.aliases(name)
        mine = [v for v in versions if v.name == name]
        rows = []
        for v in mine:
            rows.append({
                "version": v.version, "run_id": v.run_id, "created_at": v.created_at,
                "metrics": v.metrics, "decision": v.decision,
                "reasons": _list(v.gate.get("reasons", [])), "rules": v.gate.get("rules", {}),
                "champion_version": v.gate.get("champion_version"),
                "comparison": comparison_lines(v.comparison()),
                "config_hash": v.config_hash, "data": v.data, "problems": list(v.problems),
                "aliases": sorted(a for a, n in aliases.items() if n == v.version)})
        metric_names = sorted({k for v in mine for k in v.metrics})
        history = registry.history(name)
        by_version = {v.version: v for v in mine}
        for move in history:
            record = by_version.get(move["version"])
            move["comparison"] = comparison_lines(record.comparison(move["action"])) \
                if record and move["alias"] == "champion" else []
        chart = {
            "data": [{"type": "scatter", "mode": "lines+markers", "name": metric,
                      "x": [v.version for v in mine], "y": [v.metrics.get(metric) for v in mine]}
                     for metric in metric_names],
            "layout": {"title": {"text": f"{name}: metrics per version"}, "height": 320,
                       "xaxis": {"title": {"text": "version"}, "dtick": 1},
                       "margin": {"t": 40, "r": 10, "b": 40, "l": 50},
                       "shapes": [_vline(h["version"], h["action"]) for h in history
                                  if h["alias"] == "champion"][-20:]},
        }
        result.append({"name": name, "aliases": aliases, "versions": rows[::-1],
                       "metric_names": metric_names, "history": history[::-1],
                       "chart": chart, "champion": aliases.get("champion"),
                       "can_rollback": _can_rollback(history)})
    return result


def _can_rollback(history: list[dict[str, Any]]) -> bool:
    # Mirrors Registry.rollback's stack walk, only to decide whether to offer the button; the
    # registry decides for real when it is pressed.
    stack: list[int] = []
    for move in history:
        if move["alias"] != "champion":
            continue
        if move["action"] == "rollback" and stack:
            stack.pop()
        else:
            stack.append(move["version"])
    return len(stack) >= 2


def _vline(version: int, action: str) -> dict[str, Any]:
    return {"type": "line", "x0": version, "x1": version, "yref": "paper", "y0": 0, "y1": 1,
            "line": {"dash": "dot", "width": 1,
                     "color": "#c0392b" if action == "rollback" else "#27ae60"}}


# --- helpers -------------------------------------------------------------------------------


def _differing(params: dict[str, dict[str, Any]], ids: Sequence[str]) -> list[str]:
    """Param keys whose values differ between the given runs: the ones worth a column."""
    keys = sorted({k for values in params.values() for k in values})
    return [key for key in keys
            if not key.startswith(QUIET_PARAMS)
            and len({params.get(run_id, {}).get(key) for run_id in ids}) > 1]


def _redact_params(redactor: Redactor, params: dict[str, Any]) -> dict[str, Any]:
    """Params as stored (JSON text) with secrets redacted, by the run's recorded settings."""
    result = {}
    for key, text in params.items():
        if redactor.is_secret(key) or "@" in str(text):
            decoded = _json(text, text) if isinstance(text, str) else text
            text = json.dumps(redactor.value(key, decoded), sort_keys=True)
        result[key] = text
    return result


def _display(value: Any) -> Any:
    """A param as stored (JSON text) shown plainly: strings without their quotes."""
    if not isinstance(value, str):
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value


def _short_version(version: str | None) -> str:
    if not version:
        return ""
    algorithm, _, digest = version.rpartition(":")
    return f"{algorithm}:{digest[:8]}" if algorithm else digest[:8]


def _json(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _int(text: Any, default: int) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
