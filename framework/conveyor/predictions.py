"""The prediction log: every prediction a served model made, as Parquet parts in the project.

This module is the contract between whoever serves a model (conveyor-bentoml's `conveyor serve`)
and whoever reads what it predicted (monitoring, a UI, a notebook):

Location
    `<project>/.conveyor/predictions/<model_name>/part-<UTC %Y%m%dT%H%M%S%f>-<pid>-<seq>.parquet`.
    Each part is written to a temporary file in `<project>/.conveyor/tmp/` and renamed into
    place, so a reader never sees half a part. Part names sort in the order they were written
    (per process; across processes by their UTC stamp).
Columns
    `request_id` (string), `timestamp` (timestamp[us, tz=UTC], when the prediction was made),
    `model_name` (string), `model_version` (int64), then the input columns as the request sent
    them (the id column included, if the records carry it), `prediction`, and for classifiers
    one `proba__<class>` (float64) per class. Parts of different model versions may differ in
    their input or class columns; `read_prediction_log` aligns them.
Recommender slates
    A served recommender (`conveyor.serving.RecommendingModel`) logs one row per slate: the
    fixed columns (`timestamp` is when the slate was served), then `user_id` (as the request
    sent it), `k` (int64, as asked), `exclude_seen` (bool), `fallback` (bool: the user was
    unknown and got the popularity fallback), `scores` (list<float64>, best first) and
    `prediction`, the list of item ids, best first: an item's position is its index + 1.

Writing goes through `PredictionLogWriter`: `append` only buffers (cheap, on the request path);
a background thread writes a part every `flush_rows` rows or `flush_seconds` seconds, and
`close()` writes what is left. Reading goes through `read_prediction_log`, which yields pandas
DataFrames of at most `batch_rows` rows in time order, reading one Parquet row group at a time,
so memory stays bounded whatever the log's size. pandas and pyarrow are imported lazily.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conveyor.names import path_part

__all__ = ["PREDICTIONS_DIR", "PredictionLogWriter", "prediction_log_dir", "prediction_log_parts",
           "read_prediction_log"]

PREDICTIONS_DIR = Path(".conveyor") / "predictions"
TMP_DIR = Path(".conveyor") / "tmp"
PROBA_PREFIX = "proba__"


def prediction_log_dir(project_dir: Path, model_name: str) -> Path:
    """The folder holding the parts of one model's prediction log."""
    return path_part(Path(project_dir) / PREDICTIONS_DIR, model_name, "model name")


def prediction_log_parts(project_dir: Path, model_name: str, *,
                         since: datetime | None = None) -> list[Path]:
    """The complete parts of a model's log, oldest first. With `since` (an aware datetime),
    parts holding only older rows are left out."""
    folder = prediction_log_dir(project_dir, model_name)
    if not folder.is_dir():
        return []
    parts = sorted(folder.glob("part-*.parquet"), key=_part_key)
    if since is None:
        return parts
    # A part's name is stamped when it is written: every row in it is older than that stamp.
    cutoff = _stamp(_as_utc(since))
    return [p for p in parts if p.name[5:26] >= cutoff]


def read_prediction_log(project_dir: Path, model_name: str, *, since: datetime | None = None,
                        columns: Sequence[str] | None = None,
                        batch_rows: int = 50_000) -> Iterator[Any]:
    """Yield the log as pandas DataFrames of at most `batch_rows` rows, in time order.

    `since` keeps rows whose timestamp is at or after it; `columns` selects columns (missing
    ones, e.g. a class no earlier version knew, come back as nulls). One row group is read at a
    time, so memory is bounded by `batch_rows` and the writer's part size, not the log's size.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    since_utc = _as_utc(since) if since is not None else None
    wanted = list(columns) if columns is not None else None
    pending: list[Any] = []
    pending_rows = 0
    for part in prediction_log_parts(project_dir, model_name, since=since):
        try:
            reader = pq.ParquetFile(part)
        except FileNotFoundError:  # removed by a clean-up while we listed
            continue
        names = reader.schema_arrow.names
        read = [c for c in wanted if c in names] if wanted is not None else None
        if read is not None and since_utc is not None and "timestamp" not in read:
            read.append("timestamp")
        for group in range(reader.num_row_groups):
            table = reader.read_row_group(group, columns=read)
            if since_utc is not None:
                table = table.filter(pc.greater_equal(
                    table["timestamp"], pa.scalar(since_utc, type=table["timestamp"].type)))
            if wanted is not None:
                table = _select(table, wanted)
            if table.num_rows:
                pending.append(table)
                pending_rows += table.num_rows
            while pending_rows >= batch_rows:
                combined = pa.concat_tables(pending, promote_options="default")
                yield combined.slice(0, batch_rows).to_pandas()
                rest = combined.slice(batch_rows)
                pending, pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
    if pending_rows:
        yield pa.concat_tables(pending, promote_options="default").to_pandas()


class PredictionLogWriter:
    """Buffers predictions and writes them as parts of the log off the caller's thread.

    `append` is called on the request path and only takes a lock and extends a list. A daemon
    thread writes a part when `flush_rows` rows are buffered or `flush_seconds` passed since
    the oldest buffered row. `close()` (also on `with` exit) writes the rest and stops it.
    A part that cannot be written is counted in `errors` and its rows are dropped, so a full
    disk never stalls serving; `last_error` keeps the reason.
    """

    def __init__(self, project_dir: Path, model_name: str, *, flush_rows: int = 10_000,
                 flush_seconds: float = 2.0) -> None:
        self.project_dir = Path(project_dir)
        self.model_name = model_name
        self.folder = prediction_log_dir(self.project_dir, model_name)
        self.tmp = self.project_dir / TMP_DIR
        self.flush_rows = max(1, int(flush_rows))
        self.flush_seconds = float(flush_seconds)
        self.rows_written = 0
        self.parts_written = 0
        self.errors = 0
        self.last_error: str | None = None
        self._batches: list[tuple[Any, ...]] = []
        self._rows = 0
        self._oldest: float | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._seq = itertools.count()
        self._thread = threading.Thread(target=self._loop, name=f"prediction-log-{model_name}",
                                        daemon=True)
        self._thread.start()

    def append(self, records: Sequence[Mapping[str, Any]], predictions: Sequence[Any],
               probabilities: Any = None, model_version: int = 0,
               request_id: str | Sequence[str] = "", *,
               classes: Sequence[Any] | None = None, timestamp: float | None = None) -> None:
        """Buffer one request's (or one batch's) predictions.

        `records` are the input rows as received (mappings of column to value, or a pandas
        DataFrame the caller no longer changes), `predictions`
        one value per record, `probabilities` a (rows x classes) array for classifiers (with
        `classes` naming its columns; default 0..k-1), `request_id` one id for all rows or one
        per row. Raises ValueError when the lengths disagree, RuntimeError after `close()`.
        """
        rows = len(records)
        if len(predictions) != rows:
            raise ValueError(f"{rows} records but {len(predictions)} predictions")
        if probabilities is not None and len(probabilities) != rows:
            raise ValueError(f"{rows} records but {len(probabilities)} rows of probabilities")
        if not isinstance(request_id, str) and len(request_id) != rows:
            raise ValueError(f"{rows} records but {len(request_id)} request ids")
        if not rows:
            return
        stamp = time.time() if timestamp is None else timestamp
        if not hasattr(records, "columns"):  # a DataFrame is taken as it is (not copied)
            records = list(records)
        entry = (records, list(predictions), probabilities,
                 None if classes is None else list(classes), int(model_version), request_id,
                 stamp)
        with self._lock:
            if self._closed:
                raise RuntimeError("the prediction log writer is closed")
            self._batches.append(entry)
            self._rows += rows
            if self._oldest is None:
                # The writer sleeps without a deadline while nothing is buffered: wake it to
                # start the flush_seconds clock (without this, a quiet log waited for
                # flush_rows rows or close(), however long that took).
                self._oldest = stamp
                self._wake.notify()
            elif self._rows >= self.flush_rows:
                self._wake.notify()

    def flush(self) -> None:
        """Write what is buffered now, on the caller's thread."""
        with self._lock:
            batches, self._batches, self._rows, self._oldest = self._batches, [], 0, None
        self._write(batches)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake.notify()
        self._thread.join()
        self.flush()

    def __enter__(self) -> PredictionLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._closed:
                    if self._rows >= self.flush_rows:
                        break
                    if self._oldest is not None:
                        left = self._oldest + self.flush_seconds - time.time()
                        if left <= 0:
                            break
                        self._wake.wait(left)
                    else:
                        self._wake.wait()
                if self._closed:
                    return
                batches, self._batches, self._rows, self._oldest = self._batches, [], 0, None
            self._write(batches)

    def _write(self, batches: list[tuple[Any, ...]]) -> None:
        if not batches:
            return
        try:
            table = _to_table(batches, self.model_name)
            self._write_part(table)
        except Exception as exc:  # serving goes on; the loss is counted and kept
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"

    def _write_part(self, table: Any) -> None:
        import pyarrow.parquet as pq

        self.folder.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        name = f"part-{_stamp(datetime.now(UTC))}-{os.getpid()}-{next(self._seq):06d}.parquet"
        temporary = self.tmp / f"{self.model_name}-{name}.tmp"
        try:
            pq.write_table(table, temporary, row_group_size=50_000)
            os.replace(temporary, self.folder / name)
        finally:
            temporary.unlink(missing_ok=True)
        self.rows_written += table.num_rows
        self.parts_written += 1


def _to_table(batches: list[tuple[Any, ...]], model_name: str) -> Any:
    import pyarrow as pa

    # One table per run of batches alike (same classes, same kind of records): a part holds
    # thousands of single-record requests, and building a frame per request cost more CPU (and
    # GIL, next to the requests being served) than answering them.
    groups: list[tuple[Any, list[tuple[Any, ...]]]] = []
    for batch in batches:
        records, _, probabilities, classes = batch[:4]
        key = (None if classes is None else tuple(classes), probabilities is None,
               hasattr(records, "columns"))
        if groups and groups[-1][0] == key:
            groups[-1][1].append(batch)
        else:
            groups.append((key, [batch]))
    tables = [_group_table(group, model_name) for _, group in groups]
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def _group_table(batches: list[tuple[Any, ...]], model_name: str) -> Any:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    counts = [len(b[0]) for b in batches]
    if hasattr(batches[0][0], "columns"):
        inputs = pd.concat([b[0] for b in batches], ignore_index=True)
    else:
        inputs = pd.DataFrame.from_records([r for b in batches for r in b[0]])
    request_ids: list[Any] = []
    for (_, _, _, _, _, request_id, _), rows in zip(batches, counts, strict=True):
        request_ids.extend([request_id] * rows if isinstance(request_id, str) else request_id)
    stamps = np.repeat(np.array([int(b[6] * 1_000_000) for b in batches], dtype="int64"),
                       counts)
    meta = pd.DataFrame({
        "request_id": request_ids,
        "timestamp": pd.to_datetime(stamps, unit="us", utc=True),
        "model_name": [model_name] * len(request_ids),
        "model_version": np.repeat(np.array([b[4] for b in batches], dtype="int64"), counts),
    })
    inputs = inputs.drop(columns=[c for c in inputs.columns if c in meta.columns])
    out: dict[str, Any] = {"prediction": [p for b in batches for p in b[1]]}
    if batches[0][2] is not None:
        proba = np.concatenate([np.asarray(b[2], dtype="float64").reshape(rows, -1)
                                for b, rows in zip(batches, counts, strict=True)])
        classes = batches[0][3]
        names = classes if classes is not None else range(proba.shape[1])
        for index, label in enumerate(names):
            out[f"{PROBA_PREFIX}{label}"] = proba[:, index]
    frame = pd.concat([meta, inputs, pd.DataFrame(out)], axis=1)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.cast(_normalised_schema(table.schema))


def _normalised_schema(schema: Any) -> Any:
    """The contract's types for the fixed columns, whatever pandas inferred."""
    import pyarrow as pa

    fixed = {"request_id": pa.string(), "timestamp": pa.timestamp("us", tz="UTC"),
             "model_name": pa.string(), "model_version": pa.int64()}
    fields = []
    for field in schema:
        if field.name in fixed:
            field = field.with_type(fixed[field.name])
        elif field.name.startswith(PROBA_PREFIX):
            field = field.with_type(pa.float64())
        elif field.name == "scores" and pa.types.is_list(field.type):
            field = field.with_type(pa.list_(pa.float64()))  # list<null> when all were empty
        elif pa.types.is_large_string(field.type):
            field = field.with_type(pa.string())
        fields.append(field)
    return pa.schema(fields)


def _select(table: Any, columns: list[str]) -> Any:
    import pyarrow as pa

    arrays, names = [], []
    for name in columns:
        if name in table.column_names:
            arrays.append(table[name])
        else:
            arrays.append(pa.nulls(table.num_rows))
        names.append(name)
    return pa.table(arrays, names=names)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S%f")


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("since must be an aware datetime (e.g. datetime.now(timezone.utc))")
    return moment.astimezone(UTC)


def _part_key(path: Path) -> tuple[str, int, int]:
    # part-<stamp>-<pid>-<seq>: by time, then writer, then that writer's sequence.
    stem = path.stem.split("-")
    try:
        return stem[1], int(stem[2]), int(stem[3])
    except (IndexError, ValueError):
        return path.stem, 0, 0
