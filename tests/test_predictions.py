"""`conveyor.predictions`: the prediction log's writer and reader (the contract monitoring reads)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import pytest
from conveyor.predictions import PredictionLogWriter, prediction_log_parts, read_prediction_log


def test_written_parts_read_back_in_order_with_the_contract_columns(tmp_path):
    with PredictionLogWriter(tmp_path, "churn", flush_rows=3, flush_seconds=60) as log:
        log.append([{"id": "a", "x": 1.0}, {"id": "b", "x": 2.0}], [0, 1],
                   np.array([[0.9, 0.1], [0.2, 0.8]]), model_version=1, request_id="r1",
                   classes=[0, 1])
        log.append([{"id": "c", "x": 3.0}], [1], np.array([[0.3, 0.7]]), model_version=2,
                   request_id=["r2"], classes=[0, 1])
        deadline = time.monotonic() + 10
        while not prediction_log_parts(tmp_path, "churn") and time.monotonic() < deadline:
            time.sleep(0.02)  # flushed by the background thread at 3 rows
        log.append([{"id": "d", "x": 4.0}], [0], np.array([[0.6, 0.4]]), model_version=2,
                   request_id="r3", classes=[0, 1])
    parts = prediction_log_parts(tmp_path, "churn")
    assert len(parts) == 2 and all(p.parent.name == "churn" for p in parts)
    assert not list((tmp_path / ".conveyor" / "tmp").iterdir())  # temp files renamed away
    frames = list(read_prediction_log(tmp_path, "churn", batch_rows=3))
    assert [len(f) for f in frames] == [3, 1]
    log_frame = frames[0]
    assert list(log_frame.columns) == ["request_id", "timestamp", "model_name", "model_version",
                                       "id", "x", "prediction", "proba__0", "proba__1"]
    assert list(log_frame["request_id"]) == ["r1", "r1", "r2"]
    assert list(log_frame["model_version"]) == [1, 1, 2]
    assert str(log_frame["timestamp"].dtype) == "datetime64[us, UTC]"
    assert log_frame["proba__1"].tolist() == [0.1, 0.8, 0.7]
    only = list(read_prediction_log(tmp_path, "churn", columns=["id", "missing"]))
    assert list(only[0].columns) == ["id", "missing"] and only[0]["missing"].isna().all()
    assert list(read_prediction_log(tmp_path, "churn", since=datetime.now(UTC))) == []


def test_bad_calls_are_refused(tmp_path):
    log = PredictionLogWriter(tmp_path, "m")
    with pytest.raises(ValueError, match="2 records but 1 predictions"):
        log.append([{"x": 1}, {"x": 2}], [0])
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        log.append([{"x": 1}], [0])
    with pytest.raises(ValueError, match="model name"):
        PredictionLogWriter(tmp_path, "../escape")
    with pytest.raises(ValueError, match="aware"):
        list(read_prediction_log(tmp_path, "m", since=datetime(2020, 1, 1)))
    assert list(read_prediction_log(tmp_path, "nothing")) == []


def test_one_part_of_unlike_batches_keeps_every_row_and_column(tmp_path):
    import pandas as pd

    with PredictionLogWriter(tmp_path, "churn", flush_rows=10**6, flush_seconds=60) as log:
        for i in range(300):  # many single-record requests: one part, built in one go
            log.append([{"id": f"a{i}", "x": float(i)}], [i % 2], np.array([[0.5, 0.5]]),
                       model_version=1, request_id=f"r{i}", classes=[0, 1])
        log.append(pd.DataFrame({"id": ["f"], "x": [9.5]}), [1], np.array([[0.1, 0.9]]),
                   model_version=1, request_id="rf", classes=[0, 1])
        log.append([{"id": "b", "x": 1.0, "extra": "e"}], [2], np.array([[0.2, 0.3, 0.5]]),
                   model_version=2, request_id="rb", classes=[0, 1, 2])
    assert log.errors == 0, log.last_error
    (frame,) = read_prediction_log(tmp_path, "churn")
    assert len(frame) == 302 and list(frame["request_id"][:2]) == ["r0", "r1"]
    assert frame["request_id"].iloc[-2:].tolist() == ["rf", "rb"]
    assert frame["x"].iloc[-2] == 9.5 and frame["model_version"].iloc[-1] == 2
    assert frame["extra"].iloc[-1] == "e" and frame["extra"].iloc[:-1].isna().all()
    assert frame["proba__2"].iloc[-1] == 0.5 and frame["proba__2"].iloc[:-1].isna().all()
    assert frame["proba__1"].iloc[-2] == 0.9 and frame["prediction"].iloc[-1] == 2


def test_recommender_slates_keep_their_list_columns(tmp_path):
    """One row per slate (the contract conveyor-bentoml's /recommend writes): the item ids and
    scores are lists, best first; a part of only empty slates still reads back with the rest."""
    with PredictionLogWriter(tmp_path, "shop", flush_rows=10**6, flush_seconds=60) as log:
        log.append([{"user_id": "u1", "k": 3, "exclude_seen": True, "fallback": False,
                     "scores": [0.9, 0.5, 0.25]}], [["i3", "i1", "i7"]], None, 2, "r1")
        log.append([{"user_id": "new", "k": 2, "exclude_seen": False, "fallback": True,
                     "scores": [12.0, 11.0]}], [["i1", "i2"]], None, 2, "r2")
        log.flush()
        log.append([{"user_id": "all-seen", "k": 2, "exclude_seen": True, "fallback": False,
                     "scores": []}], [[]], None, 3, "r3")
    assert len(prediction_log_parts(tmp_path, "shop")) == 2
    frame = next(read_prediction_log(tmp_path, "shop"))
    assert list(frame.columns) == ["request_id", "timestamp", "model_name", "model_version",
                                   "user_id", "k", "exclude_seen", "fallback", "scores",
                                   "prediction"]
    assert [list(p) for p in frame["prediction"]] == [["i3", "i1", "i7"], ["i1", "i2"], []]
    assert [list(s) for s in frame["scores"]] == [[0.9, 0.5, 0.25], [12.0, 11.0], []]
    assert frame["fallback"].tolist() == [False, True, False]
    assert frame["k"].tolist() == [3, 2, 2] and frame["model_version"].tolist() == [2, 2, 3]
    assert frame["exclude_seen"].tolist() == [True, False, True]


def test_a_quiet_log_is_written_within_flush_seconds(tmp_path):
    """Regression: the writer slept without a deadline while idle, so a few rows waited for
    flush_rows rows or close() (a served week's slates reached disk only at shutdown)."""
    with PredictionLogWriter(tmp_path, "m", flush_rows=10_000, flush_seconds=0.2) as log:
        time.sleep(0.3)  # the writer is idle, waiting
        log.append([{"x": 1}], [0], model_version=1, request_id="r1")
        deadline = time.monotonic() + 5
        while not prediction_log_parts(tmp_path, "m") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert prediction_log_parts(tmp_path, "m"), "not written within flush_seconds"
        assert time.monotonic() < deadline


def test_values_keep_their_types_and_odd_ones_are_not_lost(tmp_path):
    """Records are buffered as typed columns: ints stay int64 until a float or a missing value
    makes the column float64 (as pandas made them), bools and text stay themselves, numpy
    scalars count as numbers, and a field no one type holds is logged as text, not dropped."""
    import pyarrow.parquet as pq

    with PredictionLogWriter(tmp_path, "m", flush_rows=10**6, flush_seconds=60) as log:
        log.append([{"n": 1, "f": 2, "b": True, "t": "x", "odd": 1, "big": 5},
                    {"n": 2, "f": None, "b": None, "t": None, "odd": "one", "big": 2**70},
                    {"n": np.int64(3), "f": np.float64(0.5), "b": False, "t": "y", "odd": 2.5}],
                   [0, 1, 0], model_version=1, request_id="r")
    assert log.errors == 0, log.last_error
    (part,) = prediction_log_parts(tmp_path, "m")
    types = {field.name: str(field.type) for field in pq.read_schema(part)}
    assert types["n"] == "int64" and types["f"] == "double" and types["b"] == "bool"
    assert types["t"] == types["odd"] == types["big"] == "string"
    (frame,) = read_prediction_log(tmp_path, "m")
    assert frame["n"].tolist() == [1, 2, 3] and frame["f"].iloc[2] == 0.5
    assert frame["f"].isna().tolist() == [False, True, False]
    assert frame["odd"].tolist() == ["1", "one", "2.5"]
    assert frame["big"].iloc[1] == str(2**70) and frame["big"].isna().iloc[2]


def test_a_field_typed_differently_by_two_parts_reads_back(tmp_path):
    """Regression: a field sent as 3 by the requests of one part and 3.5 by those of the next
    was int64 in one and double in the other, and reading the log (what `conveyor monitor`
    does) failed with "Unable to merge"; text in one part and numbers in another reads as text."""
    with PredictionLogWriter(tmp_path, "m", flush_rows=10**6, flush_seconds=60) as log:
        log.append([{"x": 3, "y": 1}], [0], model_version=1, request_id="a")
        log.flush()
        log.append([{"x": 3.5, "y": "one"}], [0], model_version=1, request_id="b")
    (frame,) = read_prediction_log(tmp_path, "m")
    assert frame["x"].tolist() == [3.0, 3.5] and str(frame["x"].dtype) == "float64"
    assert frame["y"].tolist() == ["1", "one"]


def test_request_ids_or_predictions_no_one_type_holds_are_written_as_text(tmp_path):
    """Before, such a part failed to build and its rows were dropped (counted in errors)."""
    with PredictionLogWriter(tmp_path, "m") as log:
        log.append([{"x": 1}, {"x": 2}], [0, "one"], model_version=1, request_id=[7, 8])
    assert log.errors == 0, log.last_error
    frame = next(read_prediction_log(tmp_path, "m"))
    assert frame["request_id"].tolist() == ["7", "8"]
    assert frame["prediction"].tolist() == ["0", "one"]


def test_one_part_of_versions_typing_a_field_differently_is_not_lost(tmp_path):
    with PredictionLogWriter(tmp_path, "m", flush_rows=10**6, flush_seconds=60) as log:
        log.append([{"x": 1}], [0], [[0.5, 0.5]], 1, "a", classes=[0, 1])
        log.append([{"x": "t"}], [2], [[0.2, 0.3, 0.5]], 2, "b", classes=[0, 1, 2])
    assert log.errors == 0, log.last_error
    (frame,) = read_prediction_log(tmp_path, "m")
    assert frame["x"].tolist() == ["1", "t"] and frame["model_version"].tolist() == [1, 2]
    assert frame["proba__2"].isna().tolist() == [True, False]
