"""`conveyor predict`: batch inference with a registered model, in chunks of bounded memory.

The command loads the model version first (`conveyor.api.load_model`: no champion, an
unknown version, a bad `--model` or a recommender stop it with exit 2 before anything is
recorded; the stage then takes the model it loaded rather than deserialising it again), then
runs a one-stage pipeline, `sklearn.predict`, through `conveyor.api.run` with command "predict". The
scoring run is therefore an ordinary run of the store: `conveyor runs list` shows it, the data
file's version is in its data inputs (DVC's md5 or the core's sha256), the model name, version
and sha256 are in the stage's settings, and the row counts are its metrics. The recorded config
is the config of the run that trained the model, with `pipeline` replaced by that one stage.

Memory: the file is read by pyarrow in chunks of `--chunk-rows` rows (Parquet: row batches;
CSV/TSV: pyarrow's streaming reader, whose blocks are cut to that size). Each chunk is validated
against the schema recorded with the model version (`conveyor.ModelContract`; for a version
registered before contracts, its run's `data.schema`), purpose "request": the rules that apply
to the model's inputs row by row, scored, and appended to the output as one row group (Parquet)
or block (CSV). At most one chunk, its predictions and one reader block are held at a time, so
peak memory grows with `--chunk-rows` times the row width, not with the file's length.
Frame-wide checks of the schema that need every row at once (`unique`) hold within each chunk only;
row-count checks (`min_rows`) do not apply to scoring.

Nothing is half-written: predictions go to a temporary file beside the output, renamed into
place once every chunk passed validation and was scored. If any chunk fails validation, the
remaining chunks are still validated (not scored), every failure is reported, and no output
file appears.

Scoring: with the version's compiled form (`conveyor.compiled`, loaded by
`api.load_model(..., compiled=True)`) when it has one, else its Python model (`--no-compiled`
forces that). Without row transforms, the compiled model takes its columns straight from the
pyarrow chunk (numbers as float64, text as str) and the output is built as a pyarrow Table; the
chunk becomes a DataFrame only for the schema's checks, which stay as they are. The log line and
the run's `summary` (`scored_by`, `scored_by_reason`) say which scored, and why.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import conveyor
from conveyor import tables
from conveyor.serving import require_not_recommender

DEFAULT_CHUNK_ROWS = 50_000
PROGRESS_SECONDS = 2.0
EXAMPLES = 3
INPUT_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
OUTPUT_SUFFIXES = (".parquet", ".pq", ".csv")
# The model `conveyor predict` loaded to see what it is, handed to its `sklearn.predict` stage
# in the same process (keyed by the artifact's sha256, taken once): a large model is
# deserialised once per command, not twice.
_LOADED: dict[str, Any] = {}


@dataclass
class PredictSettings:
    data: str | None = None  # the file to score, relative to the project or absolute
    output: str | None = None  # where the predictions go (a .parquet or .csv file)
    model_name: str | None = None
    model_version: int | None = None
    artifact: dict[str, Any] = field(default_factory=dict)  # the model's stored artifact
    id_column: str | None = None
    schema: str | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    transforms: list[Any] = field(default_factory=list)  # the version's inference path


# --- the command ------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = """\
examples:
  conveyor predict --data data/new.csv                  # the champion; -> data/new.predictions.parquet
  conveyor predict --data new.parquet -o scores.csv --model churn:3

Scored by the version's compiled form (ONNX, no pandas) when it has one, else by its Python
model; the log and the run's summary say which, and why. --no-compiled uses the Python model.
The output has the model's id column (its data.id_column; else `row`, the position in the
file), `prediction`, and for classifiers one `proba__<class>` column per class. The file is
validated first against the schema recorded with the model version (its contract); a file
that fails is reported and nothing is written.
The scoring is recorded as a run with command "predict" (see `conveyor runs list`)."""
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="the CSV, TSV or Parquet file to score")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="where to write the predictions, .parquet or .csv (default: "
                             "FILE's folder, <stem>.predictions.parquet)")
    parser.add_argument("--model", metavar="NAME:VERSION",
                        help="the version to use, e.g. churn:3 or churn:challenger "
                             "(default: the champion of the project's only model)")
    parser.add_argument("--no-compiled", dest="compiled", action="store_false",
                        help="score with the Python model even when the version has a compiled "
                             "form (ONNX; `conveyor models list` shows which scores it)")
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, metavar="N",
                        help=f"rows read, validated and scored at a time; bounds memory "
                             f"(default {DEFAULT_CHUNK_ROWS:,})")


def resolve_data(app: Any, data: str, *, what: str = "--data") -> Path:
    path = (app.directory / data).resolve()
    if not path.is_file():
        raise conveyor.UsageError(f"{what} {data}: no such file",
                                  hint=f"paths are relative to the current folder ({app.directory})")
    if path.suffix.lower() not in INPUT_SUFFIXES:
        raise conveyor.UsageError(f"{what} {data}: unsupported file type '{path.suffix}'",
                                  hint="use .csv, .tsv or .parquet")
    return path


def run(args: argparse.Namespace, app: Any) -> int:
    from conveyor import api

    name, version, alias = api.parse_model_spec(args.model)
    if args.chunk_rows < 1:
        raise conveyor.UsageError(f"--chunk-rows {args.chunk_rows}: must be at least 1")
    data = resolve_data(app, args.data)
    output = (app.directory / args.output).resolve() if args.output else \
        data.with_name(f"{data.stem}.predictions.parquet")
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise conveyor.UsageError(f"-o {args.output}: unsupported output type '{output.suffix}'",
                                  hint="use .parquet or .csv")
    if output == data:
        raise conveyor.UsageError(f"-o {args.output} is the input file itself",
                                  hint="choose another output file")
    if not output.parent.is_dir():
        raise conveyor.UsageError(f"-o {args.output}: folder {output.parent} does not exist")
    project_dir = app.project_dir
    loaded = api.load_model(app, name, version=version, alias=alias,  # sha256 checked
                            compiled=getattr(args, "compiled", True))
    require_not_recommender(  # before anything is read, recorded or written
        loaded, command="conveyor predict", does="scores rows with classifiers and regressors",
        instead="write batch recommendations with `conveyor recommend --users FILE "
                "[-o OUT] [--k 10]` (a slate per user; see `conveyor recommend --help`)")
    record, trained, contract = loaded.version, loaded.config, loaded.contract
    if contract is not None:  # what the version was validated with, not today's data.schema
        trained = contract.data_config(trained, project_dir)
    data_section = trained.get("data") or {}
    settings = {
        "uses": "sklearn.predict", "data": _relative(data, project_dir),
        "output": str(output), "model_name": record.name, "model_version": record.version,
        "artifact": record.artifact, "id_column": data_section.get("id_column"),
        "schema": data_section.get("schema"), "chunk_rows": args.chunk_rows,
        "transforms": [] if contract is None else contract.to_dict()["transforms"]}
    config = {**trained, "pipeline": {"predict": settings}}
    _LOADED[loaded.sha256] = loaded  # the stage takes it: not deserialised twice
    try:
        result = api.run(app, config=config, force=True, quiet=False, command="predict",
                         config_from=f"the recorded config of run {record.run_id}, which "
                                     f"trained {record.name} v{record.version}")
    finally:
        _LOADED.pop(loaded.sha256, None)
    print(f"✓ predictions of {record.name} v{record.version} written to {output} "
          f"(run {result.run_id})")
    return 0


def _relative(path: Path, project_dir: Path) -> str:
    try:
        return str(path.relative_to(project_dir))
    except ValueError:
        return str(path)


# --- the stage --------------------------------------------------------------------------------


def _input_files(settings: Mapping[str, Any]) -> list[str]:
    return [settings["data"]] if settings.get("data") else []


def _check(settings: Mapping[str, Any], ctx: conveyor.CheckContext) -> None:
    for key in ("data", "output", "model_name", "model_version"):
        if settings.get(key) in (None, ""):
            raise conveyor.ConfigError(f"sklearn.predict: setting '{key}' is not set",
                                       hint="run it with `conveyor predict`")
    data = Path(settings["data"])
    if not (data if data.is_absolute() else ctx.project_dir / data).is_file():
        raise conveyor.ConfigError(f"sklearn.predict: data file not found: {data}")
    if settings.get("schema") and ctx.check_schema is not None:
        ctx.check_schema(settings["schema"])


class _Widen(Exception):
    """A later CSV block does not fit the type pyarrow inferred from the first one."""

    def __init__(self, column: str) -> None:
        self.column = column


def _predict(ctx: conveyor.StageContext) -> Mapping[str, Any]:
    settings = ctx.settings
    data = Path(settings["data"])
    data = data if data.is_absolute() else ctx.project_dir / data
    output = Path(settings["output"])
    loaded = _LOADED.pop(str(settings["artifact"].get("sha256")), None)
    if loaded is None:  # run other than by `conveyor predict` in this process
        model = ctx.load_artifact(settings["artifact"])  # sha256 checked before deserialising
        scorer = Scorer(model, None, "python", "the stage ran outside `conveyor predict`, "
                        "which loads the compiled form")
    elif loaded.compiled_status is None:
        model = loaded.model
        scorer = Scorer(model, None, "python", "--no-compiled")
    else:
        model, status = loaded.model, loaded.compiled_status
        scorer = Scorer(model, loaded.compiled, status.served_by, status.reason)
    ctx.log(f"{settings['model_name']} v{settings['model_version']} "
            f"({type(_estimator(model)).__name__}, scored by {scorer.describe()}) "
            f"scoring {settings['data']}")
    overrides: dict[str, Any] = {}
    for _attempt in range(64):
        try:
            return _score_file(ctx, scorer, data, output, overrides)
        except _Widen as widen:
            import pyarrow as pa

            before = overrides.get(widen.column)
            # int -> float -> text: what a read of the whole file would have inferred.
            overrides[widen.column] = pa.float64() if before is None else pa.string()
            ctx.log(f"column '{widen.column}' has values later in the file that do not fit the "
                    f"type read from its first rows; reading it as {overrides[widen.column]} "
                    "and starting again")
    raise conveyor.StageFailed(f"cannot settle the column types of {settings['data']}")


@dataclass
class Scorer:
    """What scores the chunks: the version's compiled form (`conveyor.compiled.CompiledModel`)
    when it has one, else the Python model; `served_by` and `reason` as its CompiledStatus."""

    model: Any
    compiled: Any
    served_by: str
    reason: str | None

    def describe(self) -> str:
        return self.served_by + (f" ({self.reason})" if self.reason else "")


def _score_file(ctx: conveyor.StageContext, scorer: Scorer, data: Path, output: Path,
                overrides: dict[str, Any]) -> Mapping[str, Any]:
    settings = ctx.settings
    id_column = settings.get("id_column")
    model, compiled = scorer.model, scorer.compiled
    features = [str(c) for c in getattr(model, "feature_names_in_", [])]
    classes = list(getattr(model, "classes_", [])) if hasattr(model, "predict_proba") else []
    if compiled is not None:
        features = list(compiled.features)
        classes = list(compiled.classes or [])
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    writer = _Writer(tmp, output.suffix.lower())
    rows = scored = chunks = 0
    failures: dict[tuple[str | None, str], list[Any]] = {}
    invalid_rows = 0
    started = last = time.perf_counter()
    total = _row_count(data)
    path = conveyor.ModelContract.from_dict({"transforms": settings.get("transforms") or []})
    # Columns straight from the pyarrow chunk to the compiled model: pandas only where the
    # contract's checks (validation) or the version's row transforms need a DataFrame.
    arrow_only = compiled is not None and not path.transforms
    try:
        for chunk in _chunks(data, settings["chunk_rows"], overrides):
            chunks += 1
            frame = None
            if not arrow_only or settings.get("schema"):
                frame = path.transform(chunk.to_pandas(), ctx.stage_types, before_schema=True)
            report = ctx.validate(frame, "request", schema=settings.get("schema")) \
                if settings.get("schema") else None
            if report is not None and not report.ok:
                invalid_rows += len(report.invalid_rows)
                _collect(failures, report, offset=rows)
            elif not failures:
                if report is not None and report.data is not None and report.data is not frame:
                    frame, arrow_only = report.data, False  # the schema changed (coerced) it
                if arrow_only:
                    writer.write_table(_compiled_predictions(compiled, chunk, features, classes,
                                                             id_column, rows))
                elif compiled is not None:
                    frame = path.transform(frame, ctx.stage_types, before_schema=False)
                    writer.write_table(_compiled_predictions(
                        compiled, _arrow(frame, features, id_column), features, classes,
                        id_column, rows))
                else:
                    frame = path.transform(frame, ctx.stage_types, before_schema=False)
                    writer.write(_predictions(model, frame, features, classes, id_column, rows))
            rows += chunk.num_rows if frame is None else len(frame)
            scored = rows if not failures else scored
            now = time.perf_counter()
            if now - last >= PROGRESS_SECONDS:
                last = now
                done = f" of {total:,} ({rows / total:.0%})" if total else ""
                ctx.log(f"{'validated' if failures else 'scored'} {rows:,} rows{done}, "
                        f"{rows / (now - started):,.0f} rows/s")
        if failures:
            raise conveyor.StageFailed(
                f"{settings['data']} does not match the schema of {settings['model_name']} "
                f"v{settings['model_version']} ({settings.get('schema')}): "
                f"{len(failures)} check(s) failed on {invalid_rows:,} of {rows:,} rows; "
                "nothing was written\n" + _failure_lines(failures),
                hint="fix the file (rows are positions in it, counted from 0) or the schema")
        if rows == 0:
            raise conveyor.StageFailed(f"{settings['data']} has no rows to score")
        writer.close()
        os.replace(tmp, output)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started
    ctx.log(f"scored {scored:,} rows in {chunks} chunk(s), {seconds:.2f}s "
            f"({scored / max(seconds, 1e-9):,.0f} rows/s, scored by {scorer.describe()}) "
            f"-> {output}")
    ctx.log_metrics({"rows": rows, "rows_scored": scored, "chunks": chunks})
    return {"summary": {"data": settings["data"], "output": str(output), "rows": rows,
                        "model": settings["model_name"], "version": settings["model_version"],
                        "model_sha256": settings["artifact"].get("sha256"),
                        "seconds": round(seconds, 3), "scored_by": scorer.served_by,
                        "scored_by_reason": scorer.reason}}


def _estimator(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def _predictions(model: Any, frame: Any, features: list[str], classes: list[Any],
                 id_column: str | None, offset: int) -> Any:
    import numpy as np
    import pandas as pd

    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise conveyor.StageFailed("the data lacks feature columns the model needs: "
                                   + ", ".join(map(str, missing[:10])))
    x = frame[features] if features else frame
    out: dict[str, Any] = {}
    if id_column:
        if id_column not in frame.columns:
            raise conveyor.StageFailed(f"the data has no id column '{id_column}' (data.id_column "
                                       "of the run that trained the model)")
        out[id_column] = frame[id_column].to_numpy()
    else:
        out["row"] = np.arange(offset, offset + len(frame))
    if classes:
        proba = model.predict_proba(x)
        # predict() is argmax of predict_proba for scikit-learn classifiers: one pass, not two.
        out["prediction"] = np.asarray(classes)[proba.argmax(axis=1)]
        for index, label in enumerate(classes):
            out[f"proba__{label}"] = proba[:, index]
    else:
        out["prediction"] = model.predict(x)
    return pd.DataFrame(out)


def _arrow(frame: Any, features: list[str], id_column: str | None) -> Any:
    """The columns of a DataFrame the compiled model and the output need, as a pyarrow Table."""
    import pyarrow as pa

    keep = [*features, *([id_column] if id_column and id_column in frame.columns else [])]
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise conveyor.StageFailed("the data lacks feature columns the model needs: "
                                   + ", ".join(map(str, missing[:10])))
    return pa.Table.from_pandas(frame[keep], preserve_index=False)


def arrow_columns(table: Any, features: list[str], kinds: Mapping[str, str]) -> dict[str, Any]:
    """One numpy array per feature from a pyarrow Table, as `CompiledModel.predict_columns`
    takes them: float64 with NaN for missing numbers, object arrays of str (None: missing)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    columns: dict[str, Any] = {}
    for name in features:
        if name not in table.column_names:
            raise conveyor.StageFailed(f"the data lacks the feature column '{name}' the model "
                                       "needs")
        column = table.column(name)
        text = kinds.get(name, "number") == "text"
        try:
            if text:
                if not pa.types.is_string(column.type) and not pa.types.is_large_string(
                        column.type):
                    column = pc.cast(column, pa.string())
                columns[name] = column.to_numpy(zero_copy_only=False)
            else:
                columns[name] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise conveyor.StageFailed(
                f"column '{name}' ({column.type}) cannot be read as "
                f"{'text' if text else 'a number'}, as the model takes it: {exc}") from exc
        if not text:
            columns[name] = np.asarray(columns[name], dtype=np.float64)
    return columns


def _compiled_predictions(compiled: Any, table: Any, features: list[str], classes: list[Any],
                          id_column: str | None, offset: int) -> Any:
    """The output rows of one chunk scored by the compiled model, as a pyarrow Table (the same
    columns and types as `_predictions` writes)."""
    import numpy as np
    import pyarrow as pa

    result = compiled.predict_columns(arrow_columns(table, features, compiled.kinds))
    out: dict[str, Any] = {}
    if id_column:
        if id_column not in table.column_names:
            raise conveyor.StageFailed(f"the data has no id column '{id_column}' (data.id_column "
                                       "of the run that trained the model)")
        out[id_column] = table.column(id_column)
    else:
        out["row"] = pa.array(np.arange(offset, offset + table.num_rows))
    if classes and result.probabilities is not None:
        proba = result.probabilities
        out["prediction"] = pa.array(np.asarray(classes)[proba.argmax(axis=1)])
        for index, label in enumerate(classes):
            out[f"proba__{label}"] = pa.array(np.ascontiguousarray(proba[:, index],
                                                                   dtype=np.float64))
    else:
        out["prediction"] = pa.array(np.asarray(result.predictions, dtype=np.float64))
    return pa.table(out)


def _row_count(path: Path) -> int | None:
    if tables.is_parquet(path):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


def _chunks(path: Path, chunk_rows: int, overrides: Mapping[str, Any]) -> Iterator[Any]:
    """pyarrow Tables of at most `chunk_rows` rows, read as they are needed."""
    import pyarrow as pa

    if tables.is_parquet(path):
        for batch in tables.parquet_batches(path, chunk_rows=chunk_rows):
            yield pa.Table.from_batches([batch])
        return
    # Empty fields are missing values, as `read_table` reads them for training.
    reader = tables.open_csv(path, column_types=overrides, block_size=1 << 22)
    names = reader.schema.names
    pending: list[Any] = []
    held = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as exc:
            found = re.search(r"CSV column #(\d+)", str(exc))
            if found and int(found[1]) < len(names):
                raise _Widen(names[int(found[1])]) from exc
            raise conveyor.StageFailed(f"{path.name} cannot be read: {exc}") from exc
        pending.append(batch)
        held += batch.num_rows
        while held >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending, schema=reader.schema)


class _Writer:
    """Appends prediction frames to a Parquet (one row group each) or CSV file."""

    def __init__(self, path: Path, suffix: str) -> None:
        self.path = path
        self.csv = suffix == ".csv"
        self._writer: Any = None

    def write(self, frame: Any) -> None:
        import pyarrow as pa

        self.write_table(pa.Table.from_pandas(frame, preserve_index=False))

    def write_table(self, table: Any) -> None:
        if self._writer is None:
            if self.csv:
                import pyarrow.csv as pacsv

                self._writer = pacsv.CSVWriter(self.path, table.schema)
            else:
                import pyarrow.parquet as pq

                self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table.cast(self._writer.schema)
                                 if not self.csv and table.schema != self._writer.schema else table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _collect(failures: dict[tuple[str | None, str], list[Any]], report: Any,
             offset: int) -> None:
    for failure in report.failures:
        entry = failures.setdefault((failure.column, failure.check), [0, []])
        entry[0] += failure.failing_rows
        for row, value in failure.examples:
            if len(entry[1]) < EXAMPLES:
                entry[1].append((None if row is None else row + offset, value))


def _failure_lines(failures: Mapping[tuple[str | None, str], list[Any]]) -> str:
    lines = []
    for (column, check), (count, examples) in list(failures.items())[:40]:
        shown = ", ".join(f"row {row}: {value!r}" if row is not None else repr(value)
                          for row, value in examples)
        rows = f"{count:,} rows" if count else "the whole file"
        lines.append(f"  {column or '(frame)'}: {check} - {rows}" + (f"; e.g. {shown}" if shown
                                                                      else ""))
    return "\n".join(lines)


PREDICT = conveyor.StageType(
    "sklearn.predict", _predict, "score a file with a registered model (conveyor predict)",
    settings_schema=PredictSettings, input_files=_input_files, check=_check,
    outputs={"summary": "what was scored: the file, the output written, rows, the model "
                        "version, seconds"})

PREDICT_COMMAND = conveyor.CliCommand(
    "predict", "score a CSV/Parquet file with the champion (or --model NAME:VERSION)",
    configure, run,
    description="Batch inference: validate FILE against the schema, score it in chunks with a "
                "registered model, write the predictions with the id column, record the run.")
