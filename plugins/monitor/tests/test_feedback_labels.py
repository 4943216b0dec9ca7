"""`conveyor feedback` for a classifier: labels that arrive after the predictions were served,
joined by the id column (or request id), back-filling the `--from-log` batch that covers them
or recorded per period."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conveyor.testing import Project, assert_usage_error, each_store, serving
from monitor_support import customers


def log_predictions(project: Project, frame: Any, start: str, prefix: str) -> None:
    """What `conveyor serve` logs for these records: the champion's predictions, one second
    apart from `start`."""
    import pandas as pd
    from conveyor import api
    from conveyor.predictions import PredictionLogWriter

    loaded = api.load_model(project.path)
    records = frame.drop(columns=["churned"])
    features = records[list(loaded.model.feature_names_in_)]
    predicted = loaded.model.predict(features)
    proba = loaded.model.predict_proba(features)
    begin = pd.Timestamp(start, tz="UTC").timestamp()
    with PredictionLogWriter(project.path, "shop") as writer:
        for i, record in enumerate(records.to_dict("records")):
            writer.append([record], [predicted[i]], proba[i:i + 1], loaded.number,
                          f"{prefix}-{i}", classes=list(loaded.model.classes_),
                          timestamp=begin + i)


def feedback(project: Project, *args: str) -> dict[str, Any]:
    result = project.cli("feedback", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def batches(project: Project) -> list[dict[str, Any]]:
    return json.loads(project.cli("monitor", "--list", "--json", check=True).stdout)


@each_store  # SQLite, then a fresh PostgreSQL database
def test_labels_back_fill_the_log_batch_then_make_their_own(shop):
    import pandas as pd

    first = customers(300, 71)
    log_predictions(shop, first, "2026-03-02", "a")
    checked = shop.cli("monitor", "--from-log", "--json")
    assert checked.returncode in (0, 1), checked.stderr
    [log_batch] = batches(shop)
    assert log_batch["source"] == "log:shop" and log_batch["labelled_rows"] == 0
    # labels for 250 of the 300, a repeated row, and 5 ids nobody predicted
    labels = first[["customer_id", "churned"]].iloc[:250]
    extra = pd.DataFrame({"customer_id": [f"nobody-{i}" for i in range(5)], "churned": 1})
    pd.concat([labels, labels.iloc[:3], extra]).to_csv(shop.path / "labels-1.csv", index=False)
    out = feedback(shop, "--data", "labels-1.csv")
    assert out["kind"] == "predictions" and out["join"] == "id"
    assert out["events"]["matched"] == 250 and out["events"]["unmatched"] == 5
    assert out["events"]["duplicates"] == 3
    [filled] = out["batches"]
    assert filled["id"] == log_batch["id"]  # back-filled, not a new batch
    [stored] = batches(shop)
    assert stored["labelled_rows"] == 250 and "accuracy" in stored["performance"]
    # the same figure `conveyor monitor --labels` computes on those rows
    first.iloc[:250].to_csv(shop.path / "same.csv", index=False)
    direct = json.loads(shop.cli("monitor", "--data", "same.csv", "--json").stdout)
    assert stored["performance"]["accuracy"] == direct["performance"]["accuracy"]

    # later predictions no --from-log check covers: their labels make a batch of their own
    second = customers(120, 72)
    second["customer_id"] = "late-" + second["customer_id"]  # the generator repeats its ids
    log_predictions(shop, second, "2026-03-10", "b")
    second[["customer_id", "churned"]].to_csv(shop.path / "labels-2.csv", index=False)
    out = feedback(shop, "--data", "labels-2.csv", "feedback.min_rows=100")
    [new] = out["batches"]
    assert new["source"] == "labels-2.csv" and new["labelled_rows"] == 120
    assert new["status"] == "ok" and "accuracy" in new["performance"]
    assert new["details"]["feedback"]["start"] == "2026-03-09T00:00:00Z"  # its week
    assert len(batches(shop)) == 3  # log batch, same.csv, labels-2.csv
    again = shop.cli("feedback", "--data", "labels-2.csv")
    assert "recorded before" in again.stdout and len(batches(shop)) == 3


def test_labels_join_by_request_id_and_bad_labels(shop):
    first = customers(50, 73)
    log_predictions(shop, first, "2026-03-02", "c")
    labels = first[["churned"]].assign(request_id=[f"c-{i}" for i in range(50)])
    labels.to_csv(shop.path / "by-request.csv", index=False)
    out = feedback(shop, "--data", "by-request.csv")
    assert out["join"] == "request_id" and out["events"]["matched"] == 50
    [batch] = out["batches"]
    assert batch["status"] == "insufficient" or batch["labelled_rows"] >= 20
    first[["customer_id"]].to_csv(shop.path / "no-target.csv", index=False)
    assert_usage_error(shop.cli("feedback", "--data", "no-target.csv"),
                       "no label column 'churned' (data.target)")
    first[["churned"]].to_csv(shop.path / "no-key.csv", index=False)
    assert_usage_error(shop.cli("feedback", "--data", "no-key.csv"),
                       "no column to join on", "customer_id")
    labels.assign(request_id="zzz").drop_duplicates().to_csv(shop.path / "strangers.csv",
                                                             index=False)
    assert_usage_error(shop.cli("feedback", "--data", "strangers.csv"),
                       "matches a logged prediction")


@pytest.mark.slow
def test_labels_join_what_a_real_server_predicted(shop):
    httpx = pytest.importorskip("httpx")
    frame = customers(60, 74)
    frame["customer_id"] = "live-" + frame["customer_id"]
    records = json.loads(frame.drop(columns=["churned"]).to_json(orient="records"))
    with serving(shop.path) as url:  # stopped on exit: the prediction log flushed
        for start in range(0, len(records), 20):
            reply = httpx.post(f"{url}/predict", json=records[start:start + 20], timeout=30)
            assert reply.status_code == 200, reply.text
    frame[["customer_id", "churned"]].iloc[:50].to_csv(shop.path / "labels.csv", index=False)
    out = feedback(shop, "--data", "labels.csv")
    assert out["join"] == "id" and out["events"]["matched"] == 50
    [batch] = out["batches"]
    assert batch["rows"] == 60 and batch["labelled_rows"] == 50  # served, labelled
    assert batch["status"] == "ok" and 0 <= batch["performance"]["accuracy"] <= 1


def test_labels_score_the_answers_each_version_logged(shop):
    """A hot swap inside one period: v1 answered every row right, v2 every row wrong (and sure
    of it). The period's figures are those of the logged answers, not today's champion's."""
    import numpy as np
    from conveyor.predictions import PredictionLogWriter
    from sklearn.metrics import roc_auc_score

    frame = customers(80, 75)
    frame["customer_id"] = "swap-" + frame["customer_id"]
    truth = frame["churned"].to_numpy()
    answered = np.where(np.arange(80) < 60, truth, 1 - truth)  # v1: 60 right, v2: 20 wrong
    proba = np.where(answered == 1, 0.9, 0.2)
    records = frame.drop(columns=["churned"])[["customer_id"]]  # v2's features never logged
    with PredictionLogWriter(shop.path, "shop") as writer:
        for i, record in enumerate(records.to_dict("records")):
            writer.append([record], [int(answered[i])], np.array([[1 - proba[i], proba[i]]]),
                          1 if i < 60 else 2, f"swap-{i}", classes=[0, 1],
                          timestamp=1772409600 + i)  # 2026-03-02, one week
    frame[["customer_id", "churned"]].to_csv(shop.path / "swap.csv", index=False)
    out = feedback(shop, "--data", "swap.csv", "evaluate.metrics=[accuracy,roc_auc]")
    [batch] = out["batches"]
    assert batch["labelled_rows"] == 80 and batch["model_version"] == 1
    assert batch["performance"]["accuracy"] == pytest.approx(60 / 80)
    assert batch["performance"]["roc_auc"] == pytest.approx(roc_auc_score(truth, proba))


def test_feedback_model_takes_a_name_only(shop):
    frame = customers(30, 76)
    log_predictions(shop, frame, "2026-03-02", "m")
    frame[["customer_id", "churned"]].to_csv(shop.path / "labels.csv", index=False)
    for spec in ("shop:1", "shop:challenger", "shop:champion"):
        assert_usage_error(shop.cli("feedback", "--data", "labels.csv", "--model", spec),
                           "feedback takes a model NAME", "every version that served")
    assert feedback(shop, "--data", "labels.csv", "--model", "shop")["model_name"] == "shop"


@each_store  # SQLite, then a fresh PostgreSQL database
def test_a_second_labels_file_for_the_same_predictions_wins(shop):
    """Back-filling one --from-log batch twice: the newest file's figures and rows (not a sum
    of rows with the newest performance), each file's summary kept; a rerun of the first file
    is still recognised."""
    frame = customers(120, 77)
    log_predictions(shop, frame, "2026-03-02", "w")
    assert shop.cli("monitor", "--from-log", "--json").returncode in (0, 1)
    frame[["customer_id", "churned"]].iloc[:100].to_csv(shop.path / "first.csv", index=False)
    relabelled = frame[["customer_id", "churned"]].iloc[40:70].copy()
    relabelled["churned"] = 1 - relabelled["churned"]  # corrected labels, all flipped
    relabelled.to_csv(shop.path / "second.csv", index=False)
    [first] = feedback(shop, "--data", "first.csv")["batches"]
    [second] = feedback(shop, "--data", "second.csv")["batches"]
    assert second["id"] == first["id"] and second["labelled_rows"] == 30
    assert second["performance"]["accuracy"] != first["performance"]["accuracy"]
    [stored] = batches(shop)
    assert stored["labelled_rows"] == 30
    assert stored["performance"] == second["performance"]
    summary = stored["details"]["feedback"]
    assert summary["source"] == "second.csv" and summary["matched"] == 30
    assert [e["source"] for e in summary["earlier"]] == ["first.csv"]
    assert summary["earlier"][0]["matched"] == 100
    again = feedback(shop, "--data", "first.csv")
    assert again["reused"] and again["events"]["matched"] == 100
