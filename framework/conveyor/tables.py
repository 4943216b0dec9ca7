"""Reading a data table (CSV, TSV, Parquet): the one way every stage and plugin reads one.

Training (`sklearn.load`), schema inference (`conveyor schema infer`), monitoring's labels and
retraining all read a table with `read_table`, so the same file gives the same column types
wherever it is read: a model retrained on a batch sees the types it was trained with.

- `read_table(path)`: the whole table as a pandas DataFrame. CSV and TSV (tab-separated, by
  the `.tsv` suffix) are read by pandas with the pyarrow engine (fast; ISO dates become
  timestamps); a file pyarrow's strict parser refuses (ragged rows, say) is read again by
  pandas' own parser. Parquet (`.parquet`, `.pq`) is read by pandas through pyarrow. A failure
  keeps its exception type and gains a note naming the file.
- For files too large to hold whole, `open_csv` (pyarrow's streaming CSV reader, with the
  delimiter, block size and column types) and `parquet_batches` (row batches of bounded
  memory) are the chunked readers batch scoring and monitoring build on.

Empty CSV fields are missing values in every reader.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CSV_BLOCK", "SUFFIXES", "delimiter", "is_parquet", "open_csv", "parquet_batches",
           "read_table"]

SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
CSV_BLOCK = 8 << 20  # bytes per streamed CSV block: ~20-100k rows of a typical table


def is_parquet(path: Path | str) -> bool:
    """Whether `path` names a Parquet file (`.parquet` or `.pq`, any case)."""
    return Path(path).suffix.lower() in (".parquet", ".pq")


def delimiter(path: Path | str) -> str:
    """The field delimiter of a text table: a tab for `.tsv`, else a comma."""
    return "\t" if Path(path).suffix.lower() == ".tsv" else ","


def read_table(path: Path | str, *, columns: Sequence[str] | None = None) -> Any:
    """The table at `path` as a pandas DataFrame (all its columns, or only `columns`)."""
    import pandas as pd

    path = Path(path)
    wanted = list(columns) if columns is not None else None
    try:
        if is_parquet(path):
            return pd.read_parquet(path, columns=wanted)
        try:
            return pd.read_csv(path, engine="pyarrow", sep=delimiter(path), usecols=wanted)
        except Exception:
            # pyarrow's reader is fast but strict; pandas' own parser copes with ragged files.
            return pd.read_csv(path, sep=delimiter(path), usecols=wanted)
    except Exception as exc:
        exc.add_note(f"reading the table {path}")
        raise


def open_csv(path: Path | str, *, column_types: Mapping[str, Any] | None = None,
             block_size: int = CSV_BLOCK) -> Any:
    """pyarrow's streaming reader of a CSV or TSV file (`pyarrow.csv.CSVStreamingReader`):
    blocks of about `block_size` bytes, the named columns read as the given arrow types and
    the others inferred from the first block, empty fields as missing values."""
    import pyarrow.csv as csv

    return csv.open_csv(
        Path(path), read_options=csv.ReadOptions(block_size=block_size),
        parse_options=csv.ParseOptions(delimiter=delimiter(path)),
        convert_options=csv.ConvertOptions(column_types=dict(column_types or {}),
                                           strings_can_be_null=True))


def parquet_batches(path: Path | str, *, chunk_rows: int) -> Iterator[Any]:
    """The row batches (`pyarrow.RecordBatch`) of a Parquet file, at most `chunk_rows` rows
    each, with about one batch in memory at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # pre_buffer would read ahead whole column chunks (2.3 GiB RSS at 10M rows x 20 columns);
    # without it memory stays at about one chunk.
    handle = pq.ParquetFile(Path(path), pre_buffer=False)
    pool = pa.default_memory_pool()
    for batch in handle.iter_batches(batch_size=chunk_rows):
        yield batch
        pool.release_unused()  # hand freed chunks back to the OS as we go
