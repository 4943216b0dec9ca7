"""Apply the retraining policy once: decide, train a challenger, compare, promote, record.

The challenger is trained by the project's own pipeline (`conveyor.api.run` with the config key
`retrain.source_key`, `data.source` by default, pointed at the window of recent data, written
under `data/windows/`, so a DVC project versions it like any input), registered as a new
version, and compared with the champion on the same hold-out rows that neither model trained
on (`retrain.compare: holdout`), or through its own evaluation (`evaluation`, see
`conveyor_retrain.evaluation`). The champion alias moves in one compare-and-set
transaction, so a process killed at any point leaves either the old champion or the new one.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conveyor import ConfigError, ConveyorError, UsageError, api, promotion
from conveyor.gate import failing, gate_results, parse_condition, shortfall_after
from conveyor.store import AliasMoved, Registry, open_store
from conveyor.tables import read_table

from conveyor_retrain import evaluation, locks, policy
from conveyor_retrain.records import RetrainDecision, RetrainDecisions
from conveyor_retrain.settings import RetrainConfig, settings_from

WINDOWS_DIR = Path("data") / "windows"


@dataclass
class Window:
    train: Any  # DataFrame
    holdout: Any  # DataFrame
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def apply(session: Any, *, force: bool = False, trigger: str | None = None,
          log: Callable[[str], None] = print, quiet: bool = True) -> RetrainDecision:
    """Apply the project's `retrain` policy once, in the command's `conveyor.Session` (its
    plugins, config and store), and return the recorded decision."""
    config, settings = check_policy(session)  # a bad policy: nothing is recorded
    # Read the batches and decisions, act, record: never interleaved with another process
    # deciding for the same model (a second watcher, a retrain by hand).
    with locks.decision_lock(session.project_dir, settings.model_name, log=log):
        return _apply(session, config, settings, force=force, trigger=trigger,
                      log=log, quiet=quiet)


def _apply(session: Any, config: dict, settings: RetrainConfig, *, force: bool,
           trigger: str | None, log: Callable[[str], None], quiet: bool) -> RetrainDecision:
    from conveyor_monitor.records import Monitoring

    project_dir = session.project_dir
    name = settings.model_name
    store = open_store(project_dir)
    try:
        registry, decisions = Registry(store), RetrainDecisions(store)
        batches = Monitoring(store).batches(model_name=name)
        # A decision killed after it moved the champion (its alias move names it) did act.
        moved_by = {h["reason"].split(":", 1)[0].removeprefix("retrain decision ")
                    for h in registry.history(name) if h["action"] == "retrain"
                    and str(h["reason"]).startswith("retrain decision ")}
        earlier = decisions.list(model_name=name)
        acted = [d for d in earlier
                 if d.acted or (d.outcome == "interrupted" and d.id in moved_by)]
        last_retrain_at = acted[-1].created_at if acted else None
        champion = registry.alias(name, "champion")
        champion_metrics = {v.version: v.metrics for v in registry.versions(name)}
        known = last_change(earlier)
        verdict = policy.decide(settings, batches, last_retrain_at, change=known,
                                champion_metrics=champion_metrics)
        change = verdict.change
        if (change is not None and known is not None and not verdict.refresh
                and known.at < change.at and (last_retrain_at is None
                                              or known.at > _newest_window_batch(acted[-1],
                                                                                 batches))):
            # A change detected earlier that no retrain has caught up with yet (its decision
            # was skipped for too few rows, say) is where the new behaviour began.
            change = known
        if force:
            verdict.reasons.append("forced with --force: retraining whatever the policy says")
        details: dict[str, Any] = {"policy": asdict(settings)}
        if change is not None:
            details["change"] = change.as_dict()
        if verdict.refresh:
            details["refresh"] = True
        decision_id = decisions.start(model_name=name, trigger=trigger,
                                      batches=verdict.considered, forced=force, details=details)
        if not (verdict.retrain or force):
            return decisions.finish(decision_id, outcome="no_action", reasons=verdict.reasons,
                                    champion_version=champion.version if champion else None)
    finally:
        store.close()
    return _retrain(session, config, settings, decision_id, verdict.reasons,
                    batches, champion, log, quiet, change=change)


def last_change(decisions: list[Any]) -> policy.Change | None:
    """The newest change an earlier decision detected (recorded in its details)."""
    for decision in reversed(decisions):
        found = (decision.details or {}).get("change")
        if isinstance(found, dict) and "batch" in found and "at" in found:
            return policy.Change(str(found["batch"]), float(found["at"]))
    return None


def _newest_window_batch(decision: Any, batches: list[Any]) -> float:
    """When the newest batch a decision trained on was monitored (0 if unknown)."""
    at = {b.id: b.created_at for b in batches}
    times = [at[b] for b in decision.batches if b in at]
    return max(times) if times else 0.0


def check_policy(session: Any) -> tuple[dict, RetrainConfig]:
    """The session's resolved config and its `retrain` policy, checked: a ConfigError naming
    the key for a condition that does not parse or a metric that is not computed."""
    config = api.load_config(session).data
    settings = settings_from(config)
    policy.parse_when(settings)
    evaluation.check(config, settings)
    evaluation.check_source(config, settings)
    check_metrics(settings, config)
    if settings.overrides:
        try:  # a misspelt key stops here, before anything is recorded
            session.compose([*session.overrides, *settings.overrides])
        except (ConfigError, UsageError) as exc:
            raise ConfigError(f"retrain.overrides: {exc.message}", hint=exc.hint) from exc
    return config, settings


def check_metrics(settings: RetrainConfig, config: dict) -> None:
    """Every metric `promote_if` and `when` name is one that will be computed, and every
    `promote_if` condition parses: a ConfigError naming the key otherwise."""
    from conveyor_retrain.settings import flatten

    named = [(f"retrain.promote_if.{m}", m) for m in settings.promote_if]
    named += [(f"retrain.when.{key}", key.removeprefix("metrics."))
              for key in flatten(settings.when) if key.startswith("metrics.")]
    if settings.compare == "evaluation":  # the evaluation's own metrics, not scikit-learn's
        evaluation.check_metrics(config, settings, named)
    else:
        _check_scorers(config, named)
    for metric, text in settings.promote_if.items():
        parse_condition(text, f"retrain.promote_if.{metric}", metric)
    for key, text in flatten(settings.when).items():
        if parse_condition(text, f"retrain.when.{key}", key).level is not None:
            raise ConfigError(f"retrain.when.{key}: '{text}' asks for an interval, which needs "
                              "two models scored on the same rows; a monitored batch has one",
                              hint="drop 'at L%' here; promote_if can ask for it")


def _check_scorers(config: dict, named: list[tuple[str, str]]) -> None:
    from sklearn.metrics import get_scorer_names

    computed = list(config["evaluate"]["metrics"])
    known = set(get_scorer_names())
    checks = [(where, metric, computed or sorted(known)) for where, metric in named]
    for where, metric, allowed in checks:
        if metric not in known or metric not in allowed:
            import difflib

            close = difflib.get_close_matches(metric, allowed, n=1)
            what = ("is not a scikit-learn metric name" if metric not in known else
                    "is not among evaluate.metrics (" + ", ".join(computed) + ")")
            hint = (f"did you mean '{close[0]}'?" if close else
                    "see sklearn.metrics.get_scorer_names()")
            if metric in known:  # a real metric the project does not compute: say how to
                hint = (f"add it to evaluate.metrics (evaluate.metrics=[{', '.join(computed)}, "
                        f"{metric}]), or use one of those")
            raise ConfigError(f"{where}: '{metric}' {what}", hint=hint)


def _retrain(session: Any, config: dict, settings: RetrainConfig,
             decision_id: str, reasons: list[str], batches: list[Any], champion: Any,
             log: Callable[[str], None], quiet: bool, *,
             change: policy.Change | None = None) -> RetrainDecision:
    project_dir, host = session.project_dir, session.host
    name = settings.model_name
    champion_version = champion.version if champion else None

    def finish(outcome: str, *more: str, **fields: Any) -> RetrainDecision:
        store = open_store(project_dir)
        try:
            return RetrainDecisions(store).finish(
                decision_id, outcome=outcome, reasons=[*reasons, *more],
                champion_version=champion_version, **fields)
        finally:
            store.close()

    try:
        if settings.compare == "evaluation":
            train, files, notes = evaluation.files_window(project_dir, config, settings,
                                                          batches, change)
            window = Window(train=train, holdout=train.iloc[:0], files=files, notes=notes)
        else:
            window = build_window(project_dir, config, settings, batches, host=host,
                                  change=change)
    except UsageError as exc:
        return finish("skipped", f"no window to train on: {exc.message}")
    rows = len(window.train)
    if rows < settings.min_rows:
        return finish("skipped", f"the window has {rows:,} rows to train on; retrain.min_rows "
                                 f"is {settings.min_rows:,}", details={"window": window.files})
    source = write_csv(window.train, project_dir / WINDOWS_DIR / f"{decision_id}.csv")
    relative = source.relative_to(project_dir).as_posix()
    details = {"window": window.files, "window_file": relative, "train_rows": rows,
               "notes": window.notes}
    if settings.compare == "holdout":
        details["holdout_rows"] = len(window.holdout)
    log(f"retrain: training a challenger on {rows:,} rows ({', '.join(window.files)})")
    try:
        result = api.run(session, overrides=[f"{settings.source_key}={relative}",
                                             "registry.promote_on_gate=false",
                                             *settings.overrides],
                         force=True, quiet=quiet, command="retrain")
    except ConveyorError as exc:
        return finish("blocked", f"the challenger could not be trained: {exc.message}",
                      details=details)
    if result.status != "completed":
        error = api.get_run(session, result.run_id).error or result.status
        return finish("blocked", f"the challenger's training run {result.run_id} {result.status}:"
                                 f" {error}", run_id=result.run_id, details=details)
    store = open_store(project_dir)
    try:
        registry = Registry(store)
        mine = [v for v in registry.versions(name) if v.run_id == result.run_id]
        if not mine:
            return finish("blocked", f"run {result.run_id} registered no version of '{name}'",
                          run_id=result.run_id, details=details)
        challenger = mine[-1]
        registry.set_alias(name, "challenger", challenger.version, action="retrain",
                           actor="conveyor-retrain", reason=f"trained by decision {decision_id}")
    finally:
        store.close()
    fields: dict[str, Any] = {"run_id": result.run_id, "challenger_version": challenger.version,
                              "details": details}
    if challenger.decision != "passed":
        failed = failing(gate_results(challenger.gate)) or ["gate"]
        gate_comparison = challenger.comparison()  # the gate's own comparison with the champion
        if gate_comparison:
            fields["metrics"] = {"comparison": gate_comparison}
        return finish("kept", f"challenger v{challenger.version} failed its gate: "
                              + "; ".join(failed), **fields)
    where = "in its evaluation" if settings.compare == "evaluation" else "on the hold-out"
    try:
        if settings.compare == "evaluation":
            metrics, comparison, better = evaluation.compare(
                session, config, settings, champion, result.run_id, _primary(config))
        else:
            metrics, comparison, better = compare(session, config, settings, champion,
                                                  challenger, window.holdout,
                                                  config["data"]["target"])
    except Exception as exc:  # the decision must not stay "running"
        message = exc.message if isinstance(exc, ConveyorError) else f"{type(exc).__name__}: {exc}"
        blocked = finish("blocked", f"challenger v{challenger.version} could not be compared "
                                    f"with the champion {where}: {message}", **fields)
        if isinstance(exc, ConfigError):  # the project's config is wrong: exit 2, not 1
            raise
        return blocked
    fields["metrics"] = metrics
    if not better:
        return finish("kept", f"challenger v{challenger.version} stays challenger: "
                              + "; ".join(comparison), **fields)
    reason = (f"retrain decision {decision_id}: challenger v{challenger.version} beat "
              f"v{champion_version} {where}: " + "; ".join(comparison)
              if champion else f"retrain decision {decision_id}: no champion yet")
    store = open_store(project_dir)
    try:
        try:
            registry = Registry(store)
            promotion.over(registry, name, challenger.version, champion_version,
                           action="retrain", actor="conveyor-retrain", reason=reason)
            if "shortfall" in metrics:
                # What this champion gave up since the best recent one, on the hold-out.
                registry.annotate(name, challenger.version, shortfall=metrics["shortfall"],
                                  retrain_comparison=metrics.get("comparison"))
        except AliasMoved as moved:
            return finish("kept", f"not promoted: the champion moved to v{moved.actual} while "
                                  "the challenger trained", *comparison, **fields)
    finally:
        store.close()
    return finish("promoted", f"challenger v{challenger.version} promoted to champion: "
                              + "; ".join(comparison), **fields)


def build_window(project_dir: Path, config: dict, settings: RetrainConfig,
                 batches: list[Any], host: Any = None, *,
                 change: policy.Change | None = None) -> Window:
    """The labelled batches the policy's window takes (and the history, if asked), minus the
    hold-out: the newest `window.batches`, or with `window.since: change` every one since the
    change (at most `window.max_batches`). Rows the monitor set aside for breaking the schema
    stay out (with `host`, to validate them)."""
    import pandas as pd

    target = config["data"]["target"]
    frames: list[tuple[str, Any]] = []
    notes: list[str] = []
    usable = [b for b in batches if b.status in policy.USABLE]
    limit = settings.window.batches
    if settings.window.since == "change" and change is not None:
        usable = [b for b in usable if b.created_at >= change.at]
        limit = settings.window.max_batches
        notes.append(f"window: {len(usable)} batch(es) since the change at batch {change.batch}")
    elif settings.window.since == "change":
        notes.append("window: no change detected yet, so the newest "
                     f"{settings.window.batches} batch(es)")
    for batch in reversed(usable):
        if len(frames) == limit:
            break
        path = evaluation.batch_file(project_dir, batch.source)
        if path is None:
            notes.append(f"batch {batch.id} ({batch.source}): no file to train on")
            continue
        frame = read_table(path)
        if host is not None and ((batch.details or {}).get("quality") or {}).get("invalid_rows"):
            frame, dropped = _without_rows_set_aside(host, project_dir, config, frame)
            notes.append(f"batch {batch.id} ({batch.source}): {dropped:,} rows set aside by "
                         "monitoring (they break the schema) left out")
        if target not in frame.columns or frame[target].isna().all():
            notes.append(f"batch {batch.id} ({batch.source}): no labels ('{target}')")
            continue
        frames.append((batch.source, frame[frame[target].notna()]))
    if not frames:
        raise UsageError("no monitored batch with labels is available"
                         + (f" ({'; '.join(notes)})" if notes else ""))
    frames.reverse()  # oldest first
    newest_source, newest = frames[-1]
    # The hold-out depends on the data, not on when the decision ran: the same batches give
    # the same comparison (and a story that can be told twice the same way).
    seed = zlib.crc32(f"{newest_source}:{len(newest)}".encode())
    holdout = newest.sample(frac=settings.holdout_fraction, random_state=seed % (2**32))
    parts = [frame for _, frame in frames[:-1]] + [newest.drop(holdout.index)]
    files = [source for source, _ in frames]
    if settings.window.include_history:
        history = evaluation.source_file(config, settings)
        parts.insert(0, read_table(project_dir / history))
        files.insert(0, history)
    train = pd.concat(parts, ignore_index=True)
    return Window(train=train, holdout=holdout.reset_index(drop=True), files=files, notes=notes)


def _without_rows_set_aside(host: Any, project_dir: Path, config: dict, frame: Any
                            ) -> tuple[Any, int]:
    """The rows of a monitored batch that pass the schema, as monitoring kept them."""
    from conveyor.validation import validate_frame

    report = validate_frame(host, frame, config=config, project_dir=project_dir, purpose="batch")
    if report.ok or report.not_about_rows:
        return frame, 0
    return report.valid_part(frame).reset_index(drop=True), len(report.invalid_rows)


def compare(session: Any, config: dict, settings: RetrainConfig, champion: Any,
            challenger: Any, holdout: Any, target: str) -> tuple[dict, list[str], bool]:
    """Score both models on the same hold-out rows (those the champion never trained on);
    does the challenger clear `promote_if`? The metrics record carries the paired difference
    with its interval per metric; a champion that cannot be loaded, scored or compared on
    enough rows makes every relative condition fail closed."""
    from sklearn.metrics import get_scorer

    rules = dict(settings.promote_if) or {_primary(config): "+0"}
    names = list(dict.fromkeys([*rules, *config["evaluate"]["metrics"]]))
    # scikit-learn's scorers apply their sign (errors become neg_*): higher is always better
    directions = dict.fromkeys(names, "higher")
    challenger_loaded = api.load_model(session, settings.model_name,
                                       version=challenger.version)
    challenger_model = challenger_loaded.model
    rows = challenger_loaded.transform(holdout)  # its own inference path, on raw rows
    features = _features(challenger_model, rows, target, config)
    metrics: dict[str, Any] = {"challenger": {
        metric: float(get_scorer(metric)(challenger_model, rows[features], rows[target]))
        for metric in names}, "directions": directions}
    if champion is None:
        return metrics, ["no champion to compare with"], True
    comparison = _paired(session, config, settings, champion, challenger_loaded, holdout,
                         target, names, get_scorer)
    if not comparison.unavailable:
        metrics["champion"] = dict(comparison.champion)
        metrics["challenger"] = dict(comparison.challenger)
    metrics["comparison"] = {
        "champion_version": champion.version, "rows": comparison.rows,
        "holdout_rows": len(holdout), "unavailable": comparison.unavailable,
        "intervals": {m: comparison.interval(m, 0.95) for m in comparison.champion}}
    lines, better = evaluation.promote_if(rules, metrics["challenger"], directions, comparison)
    if better:
        metrics["shortfall"] = shortfall_after(comparison, directions)
    return metrics, lines, better


def _paired(session: Any, config: dict, settings: RetrainConfig, champion: Any,
            challenger_loaded: Any, holdout: Any, target: str, names: list[str],
            get_scorer: Any) -> Any:
    """The champion and the challenger on the hold-out rows the champion never trained on,
    each through its own inference path."""
    from conveyor.gate import Comparison
    from conveyor.uncertainty import paired_scores

    evaluate = config["evaluate"]  # the resolved config (check_policy): the schema's defaults
    label = f"champion v{champion.version}"
    base = {"version": champion.version, "shortfall": champion.gate.get("shortfall") or {}}
    challenger_model = challenger_loaded.model
    try:
        champion_loaded = api.load_model(session, settings.model_name,
                                         version=champion.version)
        champion_model = champion_loaded.model
    except ConveyorError as exc:
        return Comparison(**base, unavailable=f"{label} cannot be loaded: {exc.message}")
    rows = holdout
    try:
        champion_view = champion_loaded.transform(holdout)  # its own inference path
        if champion.gate.get("training_rows"):
            from conveyor.fingerprints import unseen

            known = api.load_output(session, champion.run_id, "training_rows")["fingerprint"]
            columns = [*_features(champion_model, champion_view, target, config), target]
            keep = unseen(champion_view, columns, known.to_numpy())
            rows = holdout[keep].reset_index(drop=True)
            champion_view = champion_view[keep].reset_index(drop=True)
        minimum = int(evaluate["champion_min_rows"])
        if len(rows) < minimum:
            return Comparison(**base, rows=len(rows), unavailable=(
                f"only {len(rows):,} of the {len(holdout):,} hold-out rows are rows {label} "
                f"never trained on; evaluate.champion_min_rows is {minimum:,}"))
        through = {id(champion_model): champion_view,
                   id(challenger_model): challenger_loaded.transform(rows)}

        def inputs(model: Any) -> Any:
            frame = through[id(model)]
            return frame[_features(model, frame, target, config)]

        paired = paired_scores(
            champion_model, challenger_model, rows,
            lambda model: _features(model, rows, target, config), target, names,
            get_scorer=get_scorer, resamples=int(evaluate["bootstrap"]),
            seed=int(config["seed"]), inputs=inputs)
    except (ConveyorError, ValueError, KeyError) as exc:
        message = exc.message if isinstance(exc, ConveyorError) else str(exc)
        return Comparison(**base, rows=len(rows),
                          unavailable=f"{label} cannot be scored on the hold-out: {message}")
    return Comparison(champion=paired["champion"], challenger=paired["challenger"],
                      rows=len(rows), diffs=paired["bootstrap"],
                      where=f"{len(rows):,} hold-out rows it never trained on", **base)


def _features(model: Any, frame: Any, target: str, config: dict) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return list(names)
    id_column = config["data"]["id_column"]
    return [c for c in frame.columns if c not in (target, id_column)]


def _primary(config: dict) -> str:
    evaluate = config["evaluate"]
    primary = evaluate["primary"] or next(iter(evaluate["metrics"]), None)
    if primary is None:
        raise UsageError("retrain.promote_if is empty and the project names no metric",
                         hint="set retrain.promote_if, e.g. {accuracy: '+0.005'}")
    return primary


def write_csv(frame: Any, path: Path) -> Path:
    """Whole or not at all (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_csv(tmp, index=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
