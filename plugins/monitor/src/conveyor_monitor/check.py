"""Checking one batch against a model version: validate, count, test, score, record, alert.

Validation tells breakage from drift (`conveyor_monitor.quality`): rows that break the schema
are set aside and counted, values outside its expectations are counted per column, and the
batch is invalid only when it cannot be scored; drift is computed on the rows kept.

`check_batch` is what `conveyor monitor` runs, and what `conveyor watch` (a later plugin) can
call for each batch: it returns the recorded `BatchRecord`, the report as a dict and the exit
code the command line uses.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import conveyor
from conveyor import DriftResult, api
from conveyor.compiled import columns_from_frame
from conveyor.gate import ConditionResult, failing
from conveyor.names import path_part
from conveyor.serving import require_not_recommender
from conveyor.store import open_store, sha256_file
from conveyor.validation import validate_frame

from conveyor_monitor import profile as prof
from conveyor_monitor import reading
from conveyor_monitor.quality import Quality, numbers_from_text
from conveyor_monitor.records import BatchRecord, Monitoring, new_batch_id
from conveyor_monitor.settings import MonitorConfig, as_dict, settings_from

PREDICTION = "prediction"
PROBA = "proba__"
LOG_COLUMNS = ("request_id", "timestamp", "model_name", "model_version")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass
class Request:
    """What to check: a batch file or the prediction log, with optional labels."""

    data: Path | None = None
    from_log: bool = False
    since: Any = None
    labels: Path | None = None
    model: str | None = None  # NAME or NAME:VERSION; default the champion of the only model
    report_dir: Path | None = None
    quiet: bool = False


@dataclass
class Outcome:
    record: BatchRecord
    report: dict[str, Any]
    exit_code: int
    problem: str = ""  # an error to show after recording (labels that match nothing)
    alerts: list[str] = field(default_factory=list)


def parse_model(text: str | None) -> tuple[str | None, int | None]:
    if not text:
        return None, None
    name, _, version = text.partition(":")
    if version and not version.isdigit():
        raise conveyor.UsageError(f"--model {text}: the version must be a number",
                                  hint="write NAME:VERSION (e.g. churn:3), or NAME for its champion")
    return name or None, int(version) if version else None


def say(request: Request, text: str) -> None:
    if not request.quiet:
        print(text, file=sys.stderr, flush=True)


# --- detectors --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    detector: Any
    threshold: float
    plugin: str


def methods(host: conveyor.Host, settings: MonitorConfig) -> dict[str, Method]:
    found = host.drift_detectors
    for name in settings.thresholds:
        if name not in found:
            raise conveyor.ConfigError(
                f"monitor.thresholds.{name}: no drift detector is called '{name}'",
                hint="installed detectors: " + ", ".join(sorted(found)))
    chosen = {}
    for kind in (prof.NUMERIC, prof.CATEGORICAL):
        name = getattr(settings.drift, kind)
        detector = found.get(name)
        if detector is None:
            raise conveyor.ConfigError(
                f"monitor.drift.{kind}: no drift detector is called '{name}'",
                hint="installed detectors: " + ", ".join(sorted(found)))
        if kind not in detector.kinds:
            raise conveyor.ConfigError(
                f"monitor.drift.{kind}: detector '{name}' does not handle {kind} features",
                hint="detectors for them: " + ", ".join(
                    sorted(n for n, d in found.items() if kind in d.kinds)))
        threshold = float(settings.thresholds.get(name, detector.default_threshold))
        provider = host.provider("drift detector", name)
        plugin = provider.name if provider is not None else "?"
        chosen[kind] = Method(detector, threshold, plugin)
    return chosen


def run_detector(host: Any, method: Method, dist: Any) -> DriftResult:
    try:
        result = method.detector.test(dist, method.threshold)
    except conveyor.ConveyorError:
        raise
    except Exception as exc:
        raise conveyor.PluginError(
            f"drift detector '{method.detector.name}' of plugin {host.describe(method.plugin)} "
            f"raised on feature '{dist.feature}': {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, DriftResult):
        raise conveyor.PluginError(
            f"drift detector '{method.detector.name}' of plugin {host.describe(method.plugin)} "
            f"returned {type(result).__name__}, not a conveyor.DriftResult")
    return result


# --- the reference --------------------------------------------------------------------------


def model_features(model: Any, reference: Any, target: str | None, id_column: str | None
                   ) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    return [c for c in reference.columns if c not in (target, id_column)]


def reference_frame(session: Any, loaded: Any) -> tuple[Any, str]:
    """The model's training split as the run stored it, else its whole `data.source`."""
    project_dir = session.project_dir
    try:
        return api.load_output(session, loaded.run_id, "train"), \
            f"run {loaded.run_id}, output 'train'"
    except conveyor.UsageError:
        pass
    source = (loaded.config.get("data") or {}).get("source")
    path = Path(project_dir) / str(source)
    if not source or not path.is_file():
        raise conveyor.UsageError(
            f"model {loaded.name} v{loaded.number}: neither the training split of run "
            f"{loaded.run_id} nor its data.source ({source}) is available as a reference")
    import pandas as pd

    frame = pd.concat(list(reading.read_chunks(path, chunk_rows=1 << 20)), ignore_index=True)
    return frame, f"{source} (whole file: run {loaded.run_id} stored no 'train' output)"


def is_classifier(model: Any) -> bool:
    return hasattr(model, "classes_") and hasattr(model, "predict_proba")


def predictions(model: Any, frame: Any, compiled: Any = None) -> dict[str, Any]:
    """The model's outputs on a chunk: the predicted class (or value), and for a binary
    classifier the probability of its second class. Scored by the version's compiled form
    (`conveyor.compiled.CompiledModel`) when it has one, else by the Python model."""
    import numpy as np
    import pandas as pd

    if compiled is not None:
        result = compiled.predict_columns(
            columns_from_frame(frame, compiled.features, compiled.kinds))
        if compiled.classes is None or result.probabilities is None:
            return {PREDICTION: pd.Series(np.asarray(result.predictions, dtype=np.float64))}
        proba, classes = result.probabilities, np.asarray(compiled.classes)
        labels = result.predictions  # the first class of the highest probability
    elif is_classifier(model):
        proba = model.predict_proba(frame)
        classes = model.classes_
        labels = classes[np.argmax(proba, axis=1)]
    else:
        return {PREDICTION: pd.Series(np.asarray(model.predict(frame), dtype=np.float64))}
    out = {PREDICTION: pd.Series(labels)}
    if len(classes) == 2:
        out[f"{PROBA}{classes[1]}"] = pd.Series(proba[:, 1])
    return out


def get_profile(session: Any, loaded: Any, settings: MonitorConfig, target: str | None,
                id_column: str | None, request: Request) -> prof.Profile:
    project_dir = session.project_dir
    key = prof.profile_key(loaded.sha256, settings)
    path = prof.profile_path(project_dir, loaded.name, loaded.number, key)
    stored = prof.load(path)
    if stored is not None:
        return stored
    started = time.perf_counter()
    reference, source = reference_frame(session, loaded)
    features = model_features(loaded.model, reference, target, id_column)
    missing = [f for f in features if f not in reference.columns]
    if missing:
        raise conveyor.UsageError(f"the reference data ({source}) lacks the model's features "
                                  + ", ".join(missing))
    profiles = {name: prof.profile_column(name, reference[name], settings) for name in features}
    # Predictions on the rows a model learnt from are more confident than on new rows: their
    # reference is the held-out test split, when the run stored one.
    try:
        held_out = api.load_output(session, loaded.run_id, "test")
    except conveyor.UsageError:
        held_out = reference
    if any(f not in held_out.columns for f in features):
        held_out = reference
    outputs: dict[str, list[Any]] = {}
    step = max(settings.chunk_rows, 1)
    for start in range(0, len(held_out), step):
        for name, values in predictions(loaded.model, held_out[features].iloc[
                start:start + step], loaded.compiled).items():
            outputs.setdefault(name, []).append(values)
    import pandas as pd

    predicted = {}
    for name, parts in outputs.items():
        series = pd.concat(parts, ignore_index=True)
        kind = prof.CATEGORICAL if name == PREDICTION and is_classifier(loaded.model) \
            else prof.NUMERIC
        predicted[name] = prof.profile_column(name, series, settings, kind)
    profile = prof.Profile(loaded.name, loaded.number, len(reference), source, profiles,
                           predicted, key=key)
    prof.save(profile, path)
    say(request, f"reference profile of {loaded.name} v{loaded.number}: {len(reference):,} rows, "
                 f"{len(features)} features from {source} "
                 f"({time.perf_counter() - started:.1f}s, stored once: {_rel(path, project_dir)})")
    return profile


def _rel(path: Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return str(path)


# --- labels -----------------------------------------------------------------------------------


def load_labels(path: Path, id_column: str | None, target: str | None) -> Any:
    """The labels as a Series: target values indexed by id (as text)."""
    if not id_column:
        raise conveyor.UsageError("--labels needs data.id_column: the column that joins labels "
                                  "to the batch's rows", hint="set data.id_column in conveyor.yaml")
    if not target:
        raise conveyor.UsageError("--labels needs data.target: the column holding the labels")
    frame = reading.read_table(path)
    for column, what in ((id_column, "data.id_column"), (target, "data.target")):
        if column not in frame.columns:
            raise conveyor.UsageError(
                f"--labels {path}: no column '{column}' ({what})",
                hint="its columns: " + ", ".join(map(str, frame.columns[:20])))
    frame = frame[frame[target].notna()]
    ids = frame[id_column].astype(str)
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise conveyor.UsageError(f"--labels {path}: {len(duplicated)} id(s) appear more than "
                                  f"once in '{id_column}', e.g. {duplicated.iloc[0]}")
    return frame.set_index(ids)[target]


# --- the check ----------------------------------------------------------------------------------


@dataclass
class Batch:
    source: str
    digest: str | None
    chunks: Iterator[Any]
    logged: bool  # predictions come with the rows (the serving log)
    log_until: Any = None


def open_batch(project_dir: Path, request: Request, model: str, profile: prof.Profile,
               reference_dtypes: dict[str, Any], settings: MonitorConfig, *,
               numbers_as_text: bool = False) -> Batch:
    if request.from_log:
        since = request.since
        if since is None:
            earlier = [b for b in Monitoring(open_store(project_dir)).batches(model_name=model)
                       if b.source == f"log:{model}" and b.details.get("log_until")]
            since = earlier[-1].details["log_until"] if earlier else None
        parts = reading.log_parts(project_dir, model)
        if not parts:
            raise conveyor.UsageError(
                f"no prediction log for model '{model}' in "
                f"{reading.prediction_log_dir(project_dir, model)}",
                hint="`conveyor serve` writes it; or check a file with --data BATCH")
        return Batch(f"log:{model}", reading.log_digest(parts, since),
                     reading.read_prediction_log(project_dir, model, since=since,
                                                 chunk_rows=settings.chunk_rows),
                     logged=True, log_until=since)
    path = Path(request.data)
    reading.check_file(path, "--data")
    return Batch(_rel(path, project_dir), sha256_file(path),
                 reading.read_chunks(path, chunk_rows=settings.chunk_rows,
                                     types=reading.arrow_types(reference_dtypes,
                                                               numbers_as_text=numbers_as_text)),
                 logged=False)


@dataclass
class Layout:
    """The columns the project's schema lists, and whether it refuses others (strict)."""

    schema: str
    columns: frozenset[str]
    strict: bool


def schema_layout(host: Any, config: Any, project_dir: Path, features: list[str]
                  ) -> Layout | None:
    """The schema's columns (None without `data.schema`). A schema that names none of the
    model's features was written for other data: exit 2, naming the file."""
    from conveyor.validation import describe_schema

    try:
        description = describe_schema(host, config=config, project_dir=project_dir)
    except conveyor.ConfigError as exc:
        if "no installed plugin describes" in exc.message:
            return None  # a validator that does not describe fields: validation alone decides
        raise
    if description is None:
        return None
    columns = frozenset(f.name for f in description.fields)
    patterns = any("columns matching a pattern" in u for u in description.unchecked)
    if not patterns and features and not columns & set(features):
        raise conveyor.ConfigError(
            f"data.schema: {description.schema} shares no column with the model's data: it "
            f"lists {', '.join(sorted(columns)[:8]) or 'no column'}; the model's features are "
            f"{', '.join(features[:8])}",
            hint="point data.schema at the schema of this data, or write one with "
                 "`conveyor schema infer DATA -o schema.yaml`")
    return Layout(description.schema, columns, description.strict and not patterns)


@dataclass
class Scan:
    """What reading a batch found: counts for drift, labelled rows, its data quality."""

    profile: prof.Profile
    newest: Any = None
    rows: int = 0
    invalid: dict[str, Any] | None = None
    counter: Any = None
    quality: Quality = field(default_factory=Quality)
    labelled_x: list[Any] = field(default_factory=list)
    labelled_y: list[Any] = field(default_factory=list)
    labels_in_batch: bool = False

    def __post_init__(self) -> None:
        self.counter = prof.BatchCounter(self.profile.all())


def scan_batch(app: Any, config: Any, settings: MonitorConfig, loaded: Any, features: list[str],
               batch: Batch, layout: Layout | None, labels: Any, target: str | None,
               id_column: str | None, scan: Scan, dtypes: dict[str, Any]) -> None:
    """Read the batch chunk by chunk: set aside the rows that break the contract, count the
    values outside expectations, and count the rest for drift, predictions and labels."""
    import numpy as np

    project_dir = app.project_dir
    numeric = [name for name, dtype in dtypes.items() if dtype.kind in "iuf"]
    quality = scan.quality
    try:
        for chunk, purpose in with_purpose(batch.chunks, settings.min_rows):
            outputs = {}
            if batch.logged:
                chunk = chunk[chunk["model_version"].astype(str) == str(loaded.number)] \
                    if "model_version" in chunk.columns else chunk
                if len(chunk) and "timestamp" in chunk.columns:
                    scan.newest = str(chunk["timestamp"].max())
                chunk = chunk.reset_index(drop=True)
                outputs = logged_outputs(chunk)
                chunk = chunk.drop(columns=[c for c in chunk.columns
                                            if c in LOG_COLUMNS or c in outputs])
            if not len(chunk):
                continue
            chunk = loaded.transform(chunk, before_schema=True)  # the version's inference path
            first = scan.rows
            scan.rows += len(chunk)
            quality.rows += len(chunk)
            if layout is not None and layout.strict:
                # A column the schema does not list is noted, not a reason to refuse the batch.
                extra = [str(c) for c in chunk.columns if str(c) not in layout.columns]
                if extra:
                    quality.extra_columns = sorted(set(quality.extra_columns) | set(extra))
                    chunk = chunk.drop(columns=extra)
            chunk, unreadable, examples = numbers_from_text(chunk, numeric, first)
            origin = np.arange(first, first + len(chunk))
            if unreadable:
                keep = np.ones(len(chunk), dtype=bool)
                keep[list(unreadable)] = False
                quality.set_aside_rows({first + r: why for r, why in unreadable.items()},
                                       examples)
                chunk, origin = chunk.iloc[keep].reset_index(drop=True), origin[keep]
                outputs = {k: v[keep].reset_index(drop=True) for k, v in outputs.items()}
            report = validate_frame(app.host, chunk, config=config, project_dir=project_dir,
                                    purpose=purpose)
            if not report.ok and report.not_about_rows:
                summary = report.summary()
                for failure in summary["failures"]:  # rows of the whole batch, not the chunk
                    failure["examples"] = [[None if row is None else int(origin[row]), value]
                                           for row, value in failure["examples"]]
                broken = "; ".join(f"{f.column + ': ' if f.column else ''}{f.check}"
                                   for f in report.not_about_rows)
                schema = layout.schema if layout else config["data"].get("schema")
                whose = f"{loaded.name} v{loaded.number}'s" if loaded.contract is not None \
                    else "the project's"
                scan.invalid = {"reason": f"{batch.source} cannot be scored: {broken} "
                                          f"({whose} schema, {schema})",
                                "validation": summary}
                break
            if not report.ok:
                # Rows that break the contract are set aside; the rest goes on.
                summary = report.summary()
                quality.set_aside_rows(
                    {int(origin[r]): why for r, why in report.invalid_rows.items()},
                    {(f"{f['column']}: {f['check']}" if f["column"] else f["check"]):
                     [[None if row is None else int(origin[row]), value]
                      for row, value in f["examples"]] for f in summary["failures"]})
                keep = np.ones(len(chunk), dtype=bool)
                keep[list(report.invalid_rows)] = False
                chunk, origin = chunk.iloc[keep].reset_index(drop=True), origin[keep]
                outputs = {k: v[keep].reset_index(drop=True) for k, v in outputs.items()}
                report = validate_frame(app.host, chunk, config=config,
                                        project_dir=project_dir, purpose="request")
                if not report.ok:
                    scan.invalid = {
                        "reason": f"{batch.source}: after setting aside the rows that break "
                                  "the schema, the rest still fails it: " + "; ".join(
                                      f"{f.column + ': ' if f.column else ''}{f.check}"
                                      for f in report.failures),
                        "validation": report.summary()}
                    break
            if report.expectations:
                quality.expectations(report.expectations, report.unexpected_rows,
                                     lambda row, origin=origin: int(origin[row]))
            frame = loaded.transform(report.data if report.data is not None else chunk,
                                     before_schema=False)
            absent = [f for f in features if f not in frame.columns]
            if absent:
                scan.invalid = {"reason": f"{batch.source} lacks feature(s) the model needs: "
                                          + ", ".join(absent), "missing_features": absent}
                break
            quality.checked_rows += len(frame)
            if not len(frame):
                continue
            for feature in features:
                scan.counter.add(feature, frame[feature])
            if settings.prediction_drift and scan.profile.predictions:
                if not batch.logged:
                    outputs = predictions(loaded.model, frame[features], loaded.compiled)
                for output, values in outputs.items():
                    if output in scan.counter.counters:
                        scan.counter.add(output, values)
            if labels is not None:
                if id_column not in frame.columns:
                    raise conveyor.UsageError(
                        f"--labels: the batch has no id column '{id_column}' (data.id_column) "
                        "to join the labels on")
                ids = frame[id_column].astype(str)
                hit = ids.isin(labels.index).to_numpy()
                if hit.any():
                    scan.labelled_x.append(frame.loc[hit, features])
                    scan.labelled_y.append(labels.loc[ids[hit]].to_numpy())
            elif target and target in frame.columns:
                scan.labels_in_batch = True
                known = frame[target].notna().to_numpy()
                if known.any():
                    scan.labelled_x.append(frame.loc[known, features])
                    scan.labelled_y.append(frame.loc[known, target].to_numpy())
    except reading.Unconvertible:
        raise  # the caller reads the batch again, its number columns as text
    except reading.BadBatch as exc:
        scan.invalid = {"reason": str(exc)}


def judge_quality(batch: Batch, quality: Quality, settings: MonitorConfig
                  ) -> dict[str, Any] | None:
    """Invalid when the batch has no rows to score (a file with a header only), or when more
    than `monitor.max_invalid_share` of its rows break the contract."""
    if quality.rows == 0 and not batch.logged:
        return {"reason": f"{batch.source} has no rows: a header line and nothing else"}
    if quality.set_aside and quality.invalid_share > settings.max_invalid_share:
        return {"reason": f"{quality.set_aside:,} of {quality.rows:,} rows "
                          f"({quality.invalid_share:.0%}) break the contract, more than "
                          f"monitor.max_invalid_share={settings.max_invalid_share:g}: "
                          + quality.top_reasons(),
                "set_aside": quality.as_dict(settings.max_invalid_share)}
    return None


def check_batch(app: Any, request: Request) -> Outcome:
    project_dir = app.project_dir
    config = api.load_config(app).data
    settings = settings_from(config)
    chosen = methods(app.host, settings)
    name, version = parse_model(request.model)
    loaded = api.load_model(app, name, version=version, compiled=True)
    require_not_recommender(  # before the batch is read: nothing is recorded
        loaded, command="conveyor monitor",
        does="checks classifiers and regressors (batches of feature rows)",
        instead="monitor a recommender with `conveyor feedback --data FILE` (the purchases or "
                "clicks that followed its slates: online metrics and drift, see the monitor "
                "plugin's README, 'Feedback that arrives later'); batch slates come from "
                "`conveyor recommend --users FILE`")
    run_data = loaded.config.get("data") or {}
    data = config.get("data") or {}
    target = data.get("target") or run_data.get("target")
    id_column = data.get("id_column") or run_data.get("id_column")
    contract = loaded.contract  # the version's schema, target and id column, not today's files
    if contract is not None:
        config = contract.data_config(config, project_dir)
        target, id_column = contract.target, contract.id_column
    metrics = list((config.get("evaluate") or {}).get("metrics") or [])
    conditions = performance_conditions(settings)
    labels = load_labels(request.labels, id_column, target) if request.labels else None
    profile = get_profile(app, loaded, settings, target, id_column, request)
    features = list(profile.features)
    dtypes = _reference_dtypes(profile)
    batch = open_batch(project_dir, request, loaded.name, profile, dtypes, settings)
    layout = schema_layout(app.host, config, project_dir, features)
    say(request, f"checking {batch.source} against {loaded.name} v{loaded.number} ...")
    scan = Scan(profile, batch.log_until)
    try:
        scan_batch(app, config, settings, loaded, features, batch, layout, labels, target,
                   id_column, scan, dtypes)
    except reading.Unconvertible:
        # Words where numbers belong: read again with those columns as text, and set the
        # rows that hold them aside (the batch is invalid only if there are too many).
        say(request, f"{batch.source}: a number column holds text; reading it again to set "
                     "those rows aside")
        batch = open_batch(project_dir, request, loaded.name, profile, dtypes, settings,
                           numbers_as_text=True)
        scan = Scan(profile, batch.log_until)
        scan_batch(app, config, settings, loaded, features, batch, layout, labels, target,
                   id_column, scan, dtypes)
    rows, invalid, counter, quality = scan.rows, scan.invalid, scan.counter, scan.quality
    labelled_x, labelled_y, labels_in_batch = scan.labelled_x, scan.labelled_y, \
        scan.labels_in_batch
    newest = scan.newest
    if invalid is None:
        invalid = judge_quality(batch, quality, settings)
    if invalid is not None:  # nothing of an invalid batch is used, its labels neither
        labelled_x, labelled_y = [], []
    else:
        for feature, entry in counter.counters.items():
            if feature in profile.features:
                quality.unseen(feature, entry.unseen)
    result = assess(app.host, counter, profile, chosen, settings, quality.checked_rows, invalid)
    perf, perf_problem = performance(loaded, labelled_x, labelled_y, metrics)
    breached, perf_results = judge_performance(conditions, perf, loaded)
    perf_reasons = [result.message for result in perf_results]  # as stored and shown
    problem = ""
    labelled_rows = sum(len(y) for y in labelled_y)
    if labels is not None and invalid is None and rows and not labelled_rows:
        problem = (f"--labels {request.labels}: none of its {len(labels):,} ids matches a row "
                   f"of the batch (joined on '{id_column}', data.id_column)")
    status = result["status"]
    if status == "ok" and breached:
        status = "drift"
    message = summary_line(result, status, breached, perf_results, rows) + \
        quality_note(quality, invalid)
    quality_figures = quality.as_dict(settings.max_invalid_share)
    from conveyor_monitor.report import write_reports

    store = open_store(project_dir)
    try:
        log = Monitoring(store)
        batch_id = new_batch_id()
        history = log.batches(model_name=loaded.name)
        report = {
            "batch": batch_id, "model": {"name": loaded.name, "version": loaded.number,
                                         "run": loaded.run_id, "sha256": loaded.sha256},
            "source": batch.source, "source_sha256": batch.digest, "rows": rows,
            "status": status, "message": message,
            "reference": {"rows": profile.rows, "source": profile.source},
            "drift_share": result["drift_share"], "drift_share_threshold": settings.drift_share,
            "drifted_features": result["drifted"], "features": result["features"],
            "feature_results": result["per_feature"], "prediction": result["prediction"],
            "labelled_rows": labelled_rows, "labels": str(request.labels) if request.labels
            else ("batch column " + target if labels_in_batch and labelled_rows else None),
            "performance": perf, "performance_problem": perf_problem,
            "performance_breached": breached, "performance_checks": perf_reasons,
            "champion_metrics": {k: v for k, v in loaded.version.metrics.items()
                                 if k in perf},
            "settings": as_dict(settings), "invalid": invalid, "problem": problem or None,
            "quality": quality_figures, "created_at": time.time(),
        }
        paths = write_reports(report, history, request.report_dir
                              or path_part(Path(project_dir) / settings.reports, batch_id,
                                           "batch id"),
                              project_dir)
        alerts = planned_alerts(report, loaded)
        details = {"invalid": invalid, "labels": report["labels"],
                   "performance_checks": perf_reasons, "performance_problem": perf_problem,
                   "prediction": result["prediction"], "reference": report["reference"],
                   "thresholds": {k: m.threshold for k, m in chosen.items()},
                   "methods": {k: m.detector.name for k, m in chosen.items()},
                   "drift_share_threshold": settings.drift_share, "problem": problem or None,
                   "quality": quality_figures, "alerts": [a.kind for a in alerts]}
        if batch.logged:
            details["log_until"] = newest
        prediction = result["prediction"].get(PREDICTION) or {}
        record = log.record(
            batch_id=batch_id, model_name=loaded.name, model_version=loaded.number,
            source=batch.source, source_sha256=batch.digest, rows=rows, status=status,
            drift_share=result["drift_share"], drifted_features=result["drifted"],
            features=result["features"], prediction_drift=prediction.get("score"),
            prediction_drifted=bool(prediction.get("drifted")), labelled_rows=labelled_rows,
            performance=perf, performance_breached=breached,
            feature_results=result["per_feature"], report_json=paths["json"],
            report_html=paths["html"], message=message, details=details,
            created_at=report["created_at"])
    finally:
        store.close()
    report["report_json"], report["report_html"] = paths["json"], paths["html"]
    failures: list[str] = []
    from conveyor.alerts import fire

    for alert in alerts:
        failures += fire(app, alert)
    code = EXIT_OK if status in ("ok", "insufficient") else EXIT_FAILED
    if problem:
        code = EXIT_USAGE
    return Outcome(record, report, code, problem, failures)


def quality_note(quality: Quality, invalid: dict[str, Any] | None) -> str:
    """The data-quality part of the summary line ('' when there is nothing to say)."""
    if invalid is not None:
        return ""
    parts = []
    if quality.set_aside:
        parts.append(f"{quality.set_aside:,} row{'s' if quality.set_aside != 1 else ''} set "
                     f"aside ({quality.top_reasons(2)})")
    if quality.unexpected_rows:
        columns = sorted(n for n, c in quality.columns.items() if c.get("unexpected"))
        parts.append(f"{quality.unexpected_rows:,} rows with values outside expectations "
                     f"({', '.join(columns)})")
    unseen = sorted(n for n, c in quality.columns.items() if c.get("unseen_categories"))
    if unseen:
        parts.append("unseen categories in " + ", ".join(unseen))
    return ("; data quality: " + "; ".join(parts)) if parts else ""


def with_purpose(chunks: Iterator[Any], min_rows: int) -> Iterator[tuple[Any, str]]:
    """Each chunk with the validation purpose that fits it.

    The schema's checks on the row count apply to the batch, not to a chunk: the first chunk
    (as large as a chunk gets) is validated as a "batch", the others as "request" (the same
    checks less the row count). A batch smaller than `monitor.min_rows` is validated as a
    "request" too: it is "insufficient data", whatever minimum the schema sets for training.
    """
    iterator = iter(chunks)
    first = next(iterator, None)
    if first is None:
        return
    second = next(iterator, None)
    yield first, "request" if second is None and len(first) < min_rows else "batch"
    if second is not None:
        yield second, "request"
        for chunk in iterator:
            yield chunk, "request"


def _reference_dtypes(profile: prof.Profile) -> dict[str, Any]:
    import numpy as np

    def dtype(p: prof.FeatureProfile) -> Any:
        try:
            return np.dtype(p.dtype)
        except TypeError:
            return np.dtype("O")  # pandas' own dtypes (str, category): read as text

    return {name: dtype(p) for name, p in profile.features.items()}


def logged_outputs(frame: Any) -> dict[str, Any]:
    return {c: frame[c].reset_index(drop=True) for c in frame.columns
            if c == PREDICTION or c.startswith(PROBA)}


def assess(host: Any, counter: prof.BatchCounter, profile: prof.Profile,
           chosen: dict[str, Method], settings: MonitorConfig, rows: int,
           invalid: dict[str, Any] | None) -> dict[str, Any]:
    """Per-feature verdicts, the drift share and the batch's status (before performance)."""
    per_feature: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    if invalid is not None:
        return {"status": "invalid", "per_feature": {}, "prediction": {}, "drift_share": None,
                "drifted": 0, "features": len(profile.features), "reason": invalid["reason"]}
    too_small = ""
    if rows == 0:
        too_small = "the batch has no rows"
    elif rows < settings.min_rows:
        too_small = f"{rows:,} rows, fewer than monitor.min_rows={settings.min_rows}"
    for name in counter.counters:
        dist = counter.distributions(name)
        method = chosen[dist.kind]
        entry = {"kind": dist.kind, "method": method.detector.name,
                 "threshold": method.threshold, "p_value": method.detector.p_value,
                 "rows": dist.current_rows, "missing": dist.current_missing,
                 "reference": [int(v) for v in dist.reference],
                 "current": [int(v) for v in dist.current],
                 "bins": bin_labels(dist), "score": None, "statistic": None,
                 "drifted": False, "insufficient": ""}
        unseen = counter.counters[name].unseen
        if unseen:
            entry["unseen_categories"] = dict(unseen)
        reason = too_small or insufficient(dist, settings.min_rows)
        if reason:
            entry["insufficient"] = reason
        else:
            verdict = run_detector(host, method, dist)
            entry.update(score=_num(verdict.score), statistic=_num(verdict.statistic),
                         drifted=bool(verdict.drifted), insufficient=verdict.insufficient,
                         details=dict(verdict.details))
            if verdict.insufficient:
                entry["drifted"] = False
        (per_feature if name in profile.features else outputs)[name] = entry
    judged = [e for e in per_feature.values() if not e["insufficient"]]
    drifted = sum(e["drifted"] for e in judged)
    share = drifted / len(judged) if judged else None
    prediction_drifted = any(e["drifted"] for e in outputs.values())
    if too_small or share is None:
        status = "insufficient"
    elif share >= settings.drift_share or prediction_drifted:
        status = "drift"
    else:
        status = "ok"
    return {"status": status, "per_feature": per_feature, "prediction": outputs,
            "drift_share": share, "drifted": drifted, "features": len(per_feature),
            "reason": too_small}


def insufficient(dist: Any, min_rows: int) -> str:
    if dist.current_rows == 0 and dist.current_missing:
        return f"all {dist.current_missing:,} values are missing"
    if dist.current_rows < min_rows:
        return (f"only {dist.current_rows:,} values (monitor.min_rows={min_rows})"
                + (f"; {dist.current_missing:,} missing" if dist.current_missing else ""))
    if dist.reference_rows < min_rows:
        return f"the reference has only {dist.reference_rows:,} values"
    return ""


def bin_labels(dist: Any) -> list[str]:
    if dist.kind == prof.CATEGORICAL:
        return list(dist.labels)
    edges = [f"{e:.4g}" for e in dist.edges]
    if not edges:
        return ["all"]
    from itertools import pairwise

    return [f"≤ {edges[0]}"] + [f"({a}, {b}]" for a, b in pairwise(edges)] + [f"> {edges[-1]}"]


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if value == value else None


# --- performance --------------------------------------------------------------------------------


def performance_conditions(settings: MonitorConfig) -> dict[str, Any]:
    from conveyor.gate import parse_gate

    return parse_gate(settings.performance, "monitor.performance", paired=False)


def performance(loaded: Any, xs: list[Any], ys: list[Any], metrics: list[str]
                ) -> tuple[dict[str, float], str]:
    """The evaluate metrics on the labelled rows, scored as the evaluate stage scores them."""
    if not xs:
        return {}, ""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import check_scoring

    x = pd.concat(xs, ignore_index=True)
    y = np.concatenate(ys)
    if is_classifier(loaded.model):
        y = pd.Series(y).astype(loaded.model.classes_.dtype, errors="ignore").to_numpy()
    names = metrics or (["accuracy"] if is_classifier(loaded.model) else ["r2"])
    try:
        scorer = check_scoring(loaded.model, scoring=names)
        return {k: float(v) for k, v in scorer(loaded.model, x, y).items()}, ""
    except (ValueError, TypeError) as exc:
        return {}, f"the metrics cannot be computed on these {len(y):,} labelled rows: {exc}"


def judge_performance(conditions: dict[str, Any], perf: dict[str, float], loaded: Any
                      ) -> tuple[bool, list[ConditionResult]]:
    if not perf:
        return False, []
    breached, results = False, []
    for metric, condition in conditions.items():
        if metric not in perf:
            results.append(ConditionResult(
                metric=metric, op=condition.op, met=False, closed=True,
                condition=condition.text,
                message=f"{metric}: not computed (add it to evaluate.metrics)"))
            continue
        checked = condition.result(metric, perf[metric], loaded.version.metrics.get(metric))
        breached |= not checked.met
        results.append(checked)
    return breached, results


def summary_line(result: dict[str, Any], status: str, breached: bool,
                 reasons: list[ConditionResult] | list[str], rows: int) -> str:
    if status == "invalid":
        return f"invalid batch: {result['reason']}"
    if result["status"] == "insufficient":
        return "insufficient data: " + (result["reason"] or "no feature had enough values")
    parts = []
    if result["drift_share"] is not None:
        drifted = [n for n, e in result["per_feature"].items() if e["drifted"]]
        judged = sum(1 for e in result["per_feature"].values() if not e["insufficient"])
        parts.append(f"{result['drifted']} of {judged} features drifted "
                     f"({result['drift_share']:.0%})"
                     + (": " + ", ".join(drifted) if drifted else ""))
    if any(e["drifted"] for e in result["prediction"].values()):
        parts.append("predictions drifted")
    if breached:
        parts.append("performance breach: " + "; ".join(failing(reasons)))
    return f"{status}: " + "; ".join(parts) + f" ({rows:,} rows)"


def planned_alerts(report: dict[str, Any], loaded: Any) -> list[Any]:
    from conveyor.alerts import Alert

    model = f"{loaded.name}:{loaded.number}"
    base = {"batch": report["batch"], "source": report["source"], "rows": report["rows"]}
    alerts = []
    drifted = report["drift_share"] is not None and \
        report["drift_share"] >= report["drift_share_threshold"]
    prediction = any(e["drifted"] for e in report["prediction"].values())
    if report["status"] == "drift" and (drifted or prediction):
        features = {n: {"method": e["method"], "score": e["score"], "threshold": e["threshold"]}
                    for n, e in report["feature_results"].items() if e["drifted"]}
        alerts.append(Alert(kind="drift", severity="warning", message=f"{model}: "
                            + report["message"], model=model,
                            details={**base, "drift_share": report["drift_share"],
                                     "drifted": features, "prediction_drifted": prediction}))
    if report["performance_breached"]:
        alerts.append(Alert(kind="performance", severity="critical",
                            message=f"{model}: performance below its thresholds on "
                                    f"{report['labelled_rows']:,} labelled rows", model=model,
                            details={**base, "performance": report["performance"],
                                     "checks": report["performance_checks"]}))
    return alerts
