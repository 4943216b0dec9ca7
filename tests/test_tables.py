"""`conveyor.tables`: the one table reader, and the types it gives wherever a file is read."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conveyor import tables

CSV = """id,when,amount,kind,label
1,2024-01-01 10:00:00,1.5,a,0
2,2024-01-02 10:00:00,,b,1
3,2024-01-03 10:00:00,3.25,a,0
4,2024-01-04 10:00:00,4.0,c,1
5,2024-01-05 10:00:00,5.5,b,0
6,2024-01-06 10:00:00,6.0,a,1
7,2024-01-07 10:00:00,7.5,c,0
8,2024-01-08 10:00:00,8.0,b,1
"""


def test_the_same_csv_has_the_same_types_for_training_and_for_retraining(tmp_path):
    """Regression: retrain read batches and history with pandas' C parser while training read
    with the pyarrow engine, so an ISO date column was a timestamp for training and text for
    the challenger."""
    from conveyor_retrain.retrain import build_window
    from conveyor_retrain.settings import settings_from
    from conveyor_sklearn.stages import _load

    (tmp_path / "data.csv").write_text(CSV)
    (tmp_path / "batch.csv").write_text(CSV)
    ctx = SimpleNamespace(settings={"source": "data.csv"}, project_dir=tmp_path,
                          log=lambda *_: None)
    trained_on = _load(ctx)["data"]
    config = {"data": {"source": "data.csv", "target": "label"},
              "retrain": {"window": {"batches": 1, "include_history": True}}}
    batch = SimpleNamespace(id="b1", status="ok", source="batch.csv", details={},
                            created_at=time.time())
    window = build_window(tmp_path, config, settings_from(config), [batch])
    assert window.files == ["data.csv", "batch.csv"]
    assert dict(window.train.dtypes) == dict(trained_on.dtypes)
    assert dict(window.holdout.dtypes) == dict(trained_on.dtypes)
    assert pd.api.types.is_datetime64_any_dtype(trained_on["when"])


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".pq"])
def test_every_format_reads_to_the_same_frame(tmp_path, suffix):
    frame = tables.read_table(_write(tmp_path / "t.csv"))
    path = tmp_path / f"t{suffix}"
    if tables.is_parquet(path):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep=tables.delimiter(path), index=False)
    again = tables.read_table(path)
    pd.testing.assert_frame_equal(again, frame, check_dtype=False)
    assert list(tables.read_table(path, columns=["id", "kind"]).columns) == ["id", "kind"]


def test_a_ragged_csv_falls_back_to_pandas_parser(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3\n4,5\n")
    assert tables.read_table(path)["a"].tolist() == [1, 3, 4]


def test_a_failure_names_the_file(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(Exception) as info:
        tables.read_table(path)
    assert any(str(path) in note for note in getattr(info.value, "__notes__", []))


def test_the_chunked_readers_bound_their_batches(tmp_path):
    path = _write(tmp_path / "t.csv")
    frame = tables.read_table(path)
    rows = sum(batch.num_rows for batch in tables.open_csv(path))
    assert rows == len(frame)
    frame.to_parquet(tmp_path / "t.parquet")
    sizes = [b.num_rows for b in tables.parquet_batches(tmp_path / "t.parquet", chunk_rows=3)]
    assert sizes == [3, 3, 2]


def _write(path: Path) -> Path:
    path.write_text(CSV)
    return path


def test_no_other_table_reader_in_the_core_or_the_plugins():
    """Data tables are read by `conveyor.tables` only. A codec reading back the artifact it
    wrote itself (conveyor_sklearn.codecs: a DataFrame stored as Parquet) is not a data table."""
    import re

    repo = Path(__file__).resolve().parents[1]
    reader = re.compile(r"\b(pd|pandas)\.read_(csv|parquet|table)\b|\bcsv\.open_csv\b"
                        r"|\bParquetFile\([^)]*\)\.iter_batches\b")
    allowed = {"framework/conveyor/tables.py", "plugins/sklearn/src/conveyor_sklearn/codecs.py"}
    sources = [*(repo / "framework" / "conveyor").rglob("*.py"), *repo.glob("plugins/*/src/**/*.py")]
    offenders = [f"{path.relative_to(repo)}:{number}: {line.strip()}"
                 for path in sources if str(path.relative_to(repo)) not in allowed
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if reader.search(line)]
    assert offenders == []
