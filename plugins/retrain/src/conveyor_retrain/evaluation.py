"""`retrain.compare: evaluation`, and the window of whole files it trains on.

The honest comparison for a model whose pipeline already holds out a test period (a
recommender's `recommend` pipeline: the newest part of the time range) is the challenger's own
evaluate stage: it scores the challenger and the champion on that period, on what the champion
never trained on, with a paired bootstrap, and returns a `conveyor.EvaluationResult` whose
`comparison` the register stage records with the version. `promote_if` is checked against that
comparison; no target column and no hold-out of the retrain's own are needed.

The window is then whole files, in time order: the history (the file `retrain.source_key` names,
with `window.include_history`), then the file of each monitored batch the window takes, each file
once (a feedback file carries one batch per period, all with the same `source`), oldest batch
first; rows repeated across the files (on the columns they all share) are dropped, the first
kept. The limits `window.batches` and `window.max_batches` count files here.

Nothing of another plugin is imported: which key the pipeline reads its data from, and which
stage registers the model, come from the project's config.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor import ConfigError, UsageError, api
from conveyor.gate import Comparison, parse_condition, shortfall_after
from conveyor.tables import read_table

from conveyor_retrain.policy import USABLE, Change
from conveyor_retrain.settings import COMPARE, RetrainConfig

SOURCE_HINT = ("name the config key the pipeline reads its training data from: data.source for "
               "the sklearn pipelines, recsys.source for the recommend pipeline")


def check_source(config: Mapping[str, Any], settings: RetrainConfig) -> None:
    """`retrain.source_key` is a key of the config; it holds a file name when the window reads
    the history from it, or when the pipeline is compared by its evaluation (a recommender,
    whose data is not under data.source): a ConfigError naming the setting otherwise."""
    if settings.window.include_history or settings.compare == "evaluation":
        source_file(config, settings)
    else:
        _lookup(config, settings.source_key)


def source_file(config: Mapping[str, Any], settings: RetrainConfig) -> str:
    """The file `retrain.source_key` names in the resolved config (the project's history): a
    ConfigError naming the setting when the key is not there or holds no file name."""
    key = settings.source_key
    node = _lookup(config, key)
    if not isinstance(node, str) or not node:
        raise ConfigError(f"retrain.source_key: '{key}' holds {node!r}, not a file the "
                          "pipeline reads: the challenger's window would never reach it",
                          hint=SOURCE_HINT)
    return node


def _lookup(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            close = difflib.get_close_matches(key, _leaf_keys(config), n=1)
            raise ConfigError(f"retrain.source_key: '{key}' is not a key of the project's config",
                              hint=(f"did you mean '{close[0]}'? " if close else "")
                              + SOURCE_HINT)
        node = node[part]
    return node


def _leaf_keys(config: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        keys += _leaf_keys(value, name + ".") if isinstance(value, Mapping) else [name]
    return keys


def check(config: Mapping[str, Any], settings: RetrainConfig) -> None:
    """`retrain.compare` is known, and with `evaluation` the pipeline registers the model
    through a `conveyor.register` stage whose evaluation scores this model's champion (not
    another model's): a ConfigError naming the setting otherwise."""
    if settings.compare not in COMPARE:
        raise ConfigError(f"retrain.compare must be one of {', '.join(COMPARE)}, not "
                          f"'{settings.compare}'")
    if settings.compare != "evaluation":
        return
    name = settings.model_name
    pipeline = config.get("pipeline") or {}
    registers = {stage: spec for stage, spec in pipeline.items() if isinstance(spec, Mapping)
                 and spec.get("uses") == "conveyor.register" and spec.get("model_name") == name}
    hint = ("use retrain.compare=holdout, or a pipeline whose evaluate stage scores the champion "
            "(its conveyor.EvaluationResult carries the comparison) and whose register stage "
            "records it")
    if not registers:
        raise ConfigError(f"retrain.compare is 'evaluation', but no stage of the pipeline "
                          f"registers '{name}' (a conveyor.register stage with model_name "
                          f"'{name}'): there is no evaluation comparing a challenger with the "
                          "champion", hint=hint)
    for stage, spec in registers.items():
        for needed in spec.get("needs") or []:
            scores = (pipeline.get(needed) or {}).get("model_name")
            if scores is not None and scores != name:
                raise ConfigError(
                    f"retrain.compare is 'evaluation', but stage '{needed}' (needed by "
                    f"'{stage}') scores the champion of '{scores}', not of '{name}' "
                    f"(pipeline.{needed}.model_name)", hint=hint)


def check_metrics(config: Mapping[str, Any], settings: RetrainConfig,
                  checks: list[tuple[str, str]]) -> None:
    """With `evaluation`, a metric named by `promote_if` or `when` (`checks`: (key, metric))
    must be one the evaluation reports: among `evaluate.metrics` when the project lists them."""
    computed = list(config["evaluate"]["metrics"])
    for where, metric in checks:
        if computed and metric not in computed:
            close = difflib.get_close_matches(metric, computed, n=1)
            raise ConfigError(f"{where}: '{metric}' is not among evaluate.metrics ("
                              + ", ".join(computed) + ")",
                              hint=f"did you mean '{close[0]}'?" if close else
                              "name one of evaluate.metrics, or add it there")


def files_window(project_dir: Path, config: Mapping[str, Any], settings: RetrainConfig,
                 batches: list[Any], change: Change | None) -> tuple[Any, list[str], list[str]]:
    """(rows, the files they came from, notes): see the module's documentation."""
    import pandas as pd

    usable = [b for b in batches if b.status in USABLE]
    limit, notes = settings.window.batches, []
    if settings.window.since == "change" and change is not None:
        usable = [b for b in usable if b.created_at >= change.at]
        limit = settings.window.max_batches
        notes.append(f"window: the files of {len(usable)} batch(es) since the change at batch "
                     f"{change.batch}")
    elif settings.window.since == "change":
        notes.append(f"window: no change detected yet, so the newest {limit} file(s)")
    chosen: dict[str, Path] = {}
    for batch in reversed(usable):  # newest first, each file once
        if len(chosen) == limit:
            break
        if batch.source in chosen:
            continue
        path = batch_file(project_dir, batch.source)
        if path is None:
            notes.append(f"batch {batch.id} ({batch.source}): no file to train on")
            continue
        chosen[batch.source] = path
    files = list(reversed(chosen))  # oldest first
    parts = [read_table(chosen[source]) for source in files]
    if settings.window.include_history:
        history = source_file(config, settings)
        parts.insert(0, read_table(project_dir / history))
        files.insert(0, history)
    if not parts:
        raise UsageError("no monitored batch names a file to train on"
                         + (f" ({'; '.join(notes)})" if notes else ""))
    shared = [c for c in parts[0].columns if all(c in part.columns for part in parts)]
    rows = pd.concat(parts, ignore_index=True)
    kept = rows.drop_duplicates(subset=shared or None, keep="first").reset_index(drop=True)
    if len(kept) < len(rows):
        notes.append(f"window: {len(rows) - len(kept):,} row(s) repeated across the files "
                     "dropped")
    return kept, files, notes


def batch_file(project_dir: Path, source: str) -> Path | None:
    """The file a monitored batch was read from, if it still exists (None for a prediction log
    batch, `log:<model>`)."""
    if not source or source.startswith("log:"):
        return None
    path = Path(source)
    path = path if path.is_absolute() else project_dir / path
    return path if path.is_file() else None


def compare(session: Any, config: Mapping[str, Any], settings: RetrainConfig, champion: Any,
            run_id: str, primary: str) -> tuple[dict, list[str], bool]:
    """The challenger's evaluation (run `run_id`'s `metrics` output) as the comparison: does
    the challenger clear `promote_if` (default: `primary` no worse, "+0")? Returns (metrics
    record, one line per condition, promote?). An evaluation without a comparison although
    there is a champion raises ConfigError naming `retrain.compare`."""
    from conveyor.evaluation import EvaluationResult

    evaluation = EvaluationResult.from_dict(api.load_output(session, run_id, "metrics"))
    rules = dict(settings.promote_if) or {evaluation.primary or primary: "+0"}
    directions = {metric: evaluation.directions.get(metric, "higher")
                  for metric in evaluation.overall}
    metrics: dict[str, Any] = {"challenger": dict(evaluation.overall), "directions": directions}
    if champion is None:
        return metrics, ["no champion to compare with"], True
    if evaluation.champion_version is None:
        raise ConfigError(
            f"retrain.compare is 'evaluation', but the challenger's evaluation (run {run_id}) "
            f"did not score champion v{champion.version}: there is nothing to compare",
            hint="use retrain.compare=holdout, or an evaluate stage that scores the champion "
                 "(conveyor.EvaluationResult with champion_version and comparison)")
    if evaluation.champion_version != champion.version:
        return metrics, [f"the challenger's evaluation compared it with "
                         f"v{evaluation.champion_version}, not with champion v{champion.version}"
                         " (the champion moved while it trained)"], False
    comparison = evaluation.gate_comparison(champion.gate.get("shortfall") or {})
    if not comparison.unavailable and comparison.champion:
        metrics["champion"] = dict(comparison.champion)
        metrics["challenger"] = dict(comparison.challenger)
    metrics["comparison"] = {
        "champion_version": champion.version, "rows": comparison.rows,
        "test_rows": evaluation.comparison.test_rows if evaluation.comparison else None,
        "where": f"the challenger's evaluation: {comparison.where}",
        "unavailable": comparison.unavailable,
        "intervals": {m: comparison.interval(m, 0.95) for m in comparison.champion}}
    lines, better = promote_if(rules, metrics["challenger"], directions, comparison)
    if better:
        metrics["shortfall"] = shortfall_after(comparison, directions)
    return metrics, lines, better


def promote_if(rules: Mapping[str, str], challenger: Mapping[str, float],
               directions: Mapping[str, str], comparison: Comparison | None
               ) -> tuple[list[str], bool]:
    """Each `retrain.promote_if` condition checked on the challenger's scores (relative ones
    against `comparison`): one line each, and whether all hold. A metric the challenger was not
    scored on fails closed."""
    lines, better = [], True
    for metric, text in rules.items():
        condition = parse_condition(text, f"retrain.promote_if.{metric}", metric)
        if metric not in challenger:
            lines.append(f"challenger: {metric} was not measured, so '{text}' cannot hold")
            better = False
            continue
        ok, line = condition.check(metric, challenger[metric], directions=directions,
                                   comparison=comparison)
        lines.append(f"challenger {line}")
        better = better and ok
    return lines, better
