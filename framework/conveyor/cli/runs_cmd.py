"""`conveyor runs list | show | compare`: what the store recorded."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from conveyor.cli.app import console, print_json
from conveyor.errors import UsageError
from conveyor.secrets import Redactor
from conveyor.session import Session
from conveyor.store.artifacts import ArtifactRef
from conveyor.store.db import numeric_metrics
from conveyor.store.runs import RunQuery, Runs, StoredRun, StoredStage


def configure(commands: Any) -> None:
    runs = commands.add_parser("runs", help="list, show and compare recorded runs",
                               description="Inspect the runs recorded in .conveyor/store.db.")
    sub = runs.add_subparsers(dest="runs_command", metavar="ACTION")
    listing = sub.add_parser("list", help="the most recent runs, newest first")
    listing.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    listing.add_argument("--status", help="only runs with this status (completed, failed, ...)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=list_runs)
    show = sub.add_parser("show", help="one run: config, lineage, stages, metrics, artifacts")
    show.add_argument("run", help="run id (a unique prefix is enough)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=show_run)
    compare = sub.add_parser("compare", help="runs side by side: params that differ, metrics")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="two or more run ids")
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    compare.set_defaults(handler=compare_runs)


def _resolve(store: Any, prefix: str) -> str:
    return Runs(store).resolve(prefix)


def summary(store: Any, row: StoredRun) -> dict[str, Any]:
    """One run as a dict; problems with the row or its artifacts are flagged, never raised."""
    problems: list[str] = []
    data: dict[str, Any] = {"id": row.id, "status": row.status, "project": row.project,
                            "command": Redactor().text(row.command)}
    try:
        data["created_at"] = _when(row.created_at)
        data["duration"] = round(row.duration, 3) if row.duration is not None else None
        config = json.loads(row.config) if row.config else {}
        target = (config.get("model") or {}).get("_target_") if isinstance(config, dict) else None
        data["model"] = str(target or "").rsplit(".", 1)[-1]
    except Exception as exc:
        problems.append(f"unreadable row: {exc}")
    try:
        runs = Runs(store)
        data["metrics"] = _metrics(store, row.id, problems)
        data["data"] = {path: str(version or "?")[:12]
                        for path, version in runs.data(row.id).items()}
        stages = runs.stages(row.id)
        data["stages"] = len(stages)
        data["cached"] = sum(1 for s in stages if s.cached)
        for stage in stages:
            for name, ref in _outputs(stage, problems).items():
                if "sha256" in ref and not store.artifacts.exists(ArtifactRef.from_dict(ref)):
                    problems.append(f"artifact {stage.name}.{name} missing or truncated")
    except Exception as exc:
        problems.append(f"unreadable records: {type(exc).__name__}: {exc}")
    if problems:
        data["problems"] = problems
    return data


def _params(store: Any, run_id: str) -> dict[str, str]:
    """A run's params as stored (JSON text), secrets redacted (for runs recorded before
    Conveyor redacted them: by key name, by the run's own `security` settings)."""
    runs = Runs(store)
    redactor = Redactor.for_record(runs.get(run_id).json("config", {}))
    params = runs.params(run_id)
    return {key: json.dumps(redactor.value(key, _value(text)), sort_keys=True)
            if redactor.is_secret(key) or "@" in str(text) else text
            for key, text in params.items()}


def _metrics(store: Any, run_id: str, problems: list[str]) -> dict[str, float]:
    """A run's metrics; a value that is not a number is left out and named in `problems`."""
    return numeric_metrics(Runs(store).metrics(run_id), problems)


def _outputs(stage: StoredStage, problems: list[str]) -> dict[str, dict[str, Any]]:
    """A stage's recorded outputs; unreadable ones are named in `problems`."""
    try:
        outputs = json.loads(stage.outputs or "{}")
    except ValueError:
        outputs = None
    if not isinstance(outputs, dict):
        problems.append(f"stage {stage.name}: outputs are unreadable")
        return {}
    return {name: ref for name, ref in outputs.items() if isinstance(ref, dict)}


def _when(timestamp: float | None) -> str | None:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else None
    except (TypeError, ValueError, OverflowError, OSError):
        return f"? ({timestamp!r})"


def list_runs(args: argparse.Namespace, app: Session) -> int:
    store = app.store()
    store.mark_interrupted()
    rows = Runs(store).list(RunQuery(status=args.status or None), limit=args.limit)
    runs = [summary(store, row) for row in rows]
    if args.json:
        print_json(runs)
        return 0
    if not runs:
        print("no runs yet: start one with `conveyor run`")
        return 0
    from rich.table import Table

    metric_names = sorted({k for r in runs for k in r.get("metrics", {})})[:6]
    table = Table(title=f"runs · {runs[0]['project']}", title_justify="left")
    for column in ("run", "created", "status", "duration", "model", "cached", *metric_names,
                   "data"):
        table.add_column(column, overflow="fold")
    for run in runs:
        status = run["status"]
        colour = {"completed": "green", "failed": "red", "running": "yellow"}.get(status, "magenta")
        if run.get("problems"):
            status, colour = f"{status} ⚠ {'; '.join(run['problems'])}", "red"
        table.add_row(
            run["id"], run.get("created_at") or "?", f"[{colour}]{status}[/]",
            f"{run['duration']:.2f}s" if run.get("duration") is not None else "",
            run.get("model", ""), f"{run.get('cached', 0)}/{run.get('stages', 0)}",
            *[f"{run.get('metrics', {}).get(m):.4g}" if m in run.get("metrics", {}) else ""
              for m in metric_names],
            ", ".join(v for v in run.get("data", {}).values()))
    console().print(table)
    return 0


def _detail(store: Any, run_id: str) -> dict[str, Any]:
    runs = Runs(store)
    row = runs.get(run_id)
    data = summary(store, row)
    for key in ("git_commit", "config_hash", "error", "command", "exit_code"):
        data[key] = getattr(row, key)
    data["git_dirty"] = None if row.git_dirty is None else int(row.git_dirty)  # as stored: 0/1
    for key in ("config", "overrides", "packages"):
        try:
            data[key] = json.loads(getattr(row, key)) if getattr(row, key) else None
        except ValueError:
            data.setdefault("problems", []).append(f"{key} is unreadable")
    # Recorded redacted; redacted again for runs recorded before that (conveyor.secrets).
    redactor = Redactor.for_record(data.get("config"))
    if isinstance(data.get("config"), dict):
        data["config"] = redactor.config(data["config"])
    if isinstance(data.get("overrides"), list):
        data["overrides"] = redactor.overrides(data["overrides"])
    data["error"], data["command"] = redactor.text(data["error"]), redactor.text(data["command"])
    problems: list[str] = []  # summary() flagged these stages' outputs already
    data["stages"] = [
        {"name": s.name, "type": s.type, "status": s.status, "cached": s.cached,
         "duration": s.duration, "reason": s.reason, "error": redactor.text(s.error),
         "fingerprint": s.fingerprint, "outputs": _outputs(s, problems)}
        for s in runs.stages(run_id)]
    data["data"] = {path: str(version or "?") for path, version in runs.data(run_id).items()}
    return data


def show_run(args: argparse.Namespace, app: Session) -> int:
    store = app.store()
    run = _detail(store, _resolve(store, args.run))
    if args.json:
        print_json(run)
        return 0
    out = console()
    out.print(f"[bold]run {run['id']}[/] · {run['project']} · {run['status']}"
              f" · {run.get('created_at')} · {_secs(run.get('duration'))}")
    if run.get("error"):
        out.print(f"[red]error:[/] {run['error']}")
    for problem in run.get("problems", []):
        out.print(f"[red]⚠ {problem}[/]")
    dirty = " (uncommitted changes)" if run.get("git_dirty") else ""
    out.print(f"code: {run.get('git_commit') or 'not in git'}{dirty}")
    out.print(f"config hash: {run.get('config_hash')}  overrides: "
              f"{' '.join(run.get('overrides') or []) or 'none'}")
    for path, digest in run["data"].items():
        out.print(f"data: {path}  version {data_version(digest)}", soft_wrap=True)
    from rich.table import Table

    table = Table(title="stages", title_justify="left")
    for column in ("stage", "type", "status", "duration", "why / outputs"):
        table.add_column(column, overflow="fold")
    for stage in run["stages"]:
        status = "cached" if stage["cached"] else stage["status"]
        outputs = ", ".join(f"{n}:{str(v['sha256'])[:8]}" for n, v in stage["outputs"].items()
                            if "sha256" in v)
        why = stage["error"] or stage["reason"] or ""
        table.add_row(stage["name"], stage["type"], status, _secs(stage["duration"]),
                      f"{why}\n[dim]{outputs}[/]" if outputs else why)
    out.print(table)
    if run.get("metrics"):
        out.print("metrics: " + "  ".join(f"{k}={v:.4g}" for k, v in sorted(run["metrics"].items())))
    return 0


def compare_runs(args: argparse.Namespace, app: Session) -> int:
    if len(args.runs) < 2:
        raise UsageError("compare needs at least two runs")
    store = app.store()
    ids = [_resolve(store, r) for r in args.runs]
    params = {i: _params(store, i) for i in ids}
    flagged: dict[str, list[str]] = {i: [] for i in ids}
    metrics = {i: _metrics(store, i, flagged[i]) for i in ids}
    problems = [f"run {i}: {p}" for i in ids for p in flagged[i]]
    data = {i: Runs(store).data(i) for i in ids}
    keys = sorted(set().union(*params.values()))
    differing = {k: {i: _value(params[i].get(k)) for i in ids} for k in keys
                 if len({params[i].get(k) for i in ids}) > 1}
    metric_keys = sorted(set().union(*metrics.values()))
    result = {"runs": ids, "params": differing,
              "metrics": {k: {i: metrics[i].get(k) for i in ids} for k in metric_keys},
              "same_data": len({json.dumps(data[i], sort_keys=True) for i in ids}) == 1,
              "data": data}
    if problems:
        result["problems"] = problems
    if args.json:
        print_json(result)
        return 0
    from rich.table import Table

    table = Table(title="compare", title_justify="left")
    table.add_column("")
    for i in ids:
        table.add_column(i)
    for key, values in differing.items():
        table.add_row(f"[yellow]{key}[/]", *[str(values[i]) for i in ids])
    for key, values in result["metrics"].items():
        table.add_row(f"[bold]{key}[/]", *[f"{values[i]:.4g}" if values[i] is not None else "—"
                                           for i in ids])
    console().print(table)
    for problem in problems:
        console().print(f"[red]⚠ {problem}[/]", soft_wrap=True)
    if not differing:
        print("params: identical")
    if result["same_data"]:
        print("data: same versions" if any(data.values()) else "data: no data files")
        return 0
    print("data: DIFFERENT data versions")
    for path in sorted(set().union(*data.values())):
        versions = [data[i].get(path) for i in ids]
        if len(set(versions)) > 1:
            shown = " · ".join(f"{data_version(v) if v else 'not read'} ({i})"
                               for i, v in zip(ids, versions, strict=True))
            print(f"  {path}: {shown}")
    return 0


def _secs(value: Any) -> str:
    return f"{value:.2f}s" if isinstance(value, int | float) else ("" if value is None
                                                                     else f"? ({value!r})")


def data_version(digest: str) -> str:
    """A recorded data version as shown: plugins' digests carry their algorithm ("md5:...",
    DVC's version of the file, in full); the core's own sha256 is shortened."""
    return digest if ":" in digest else f"sha256:{digest[:16]}"


def _value(text: str | None) -> Any:
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return text
