"""`conveyor monitor` through the real console script: verdicts, bad input, the store, alerts."""

from __future__ import annotations

import json
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from conveyor.testing import Project, assert_clear_error, each_store, free_port, store_rows
from monitor_support import configure, customers, shifted


def monitor(project: Project, *args: str) -> tuple[Any, dict[str, Any] | None]:
    result = project.cli("monitor", *args, "--json")
    try:
        report = json.loads(result.stdout)
    except ValueError:
        report = None
    return result, report


def stored(project: Project) -> list[dict[str, Any]]:
    return store_rows(project.path, "SELECT * FROM monitor_batches ORDER BY created_at")


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_batch_from_the_training_distribution_raises_no_alarm(shop, batch, seed):
    batch(shop, "week.csv", customers(1000, seed))
    result, report = monitor(shop, "--data", "week.csv")
    assert result.returncode == 0, result.stderr
    assert report["status"] == "ok", report["message"]
    assert report["drift_share"] < 0.3
    assert not any(e["drifted"] for e in report["prediction"].values())
    assert "alert" not in result.stderr
    [row] = stored(shop)
    assert row["status"] == "ok" and row["rows"] == 1000 and row["model_version"] == 1
    assert row["source"] == "week.csv" and len(row["source_sha256"]) == 64


@each_store  # SQLite, then a fresh PostgreSQL database
def test_a_shifted_batch_is_drift_recorded_alerted_and_reported(shop, batch):
    batch(shop, "week.parquet", shifted(1000, 21))
    result, report = monitor(shop, "--data", "week.parquet")
    assert result.returncode == 1, result.stderr
    assert report["status"] == "drift"
    drifted = {n for n, e in report["feature_results"].items() if e["drifted"]}
    assert {"tenure_months", "contract", "monthly_charges"} <= drifted
    assert report["feature_results"]["region"]["drifted"] is False
    assert report["prediction"]["prediction"]["drifted"] is True
    assert "alert [drift, warning] shop:1" in result.stderr
    [row] = stored(shop)
    assert row["status"] == "drift" and row["drifted_features"] >= 3 and row["features"] == 6
    assert json.loads(row["details"])["alerts"] == ["drift"]
    assert (shop.path / row["report_json"]).is_file() and (shop.path / row["report_html"]).is_file()
    # The reference profile was built once, by the first check, and is reused.
    assert len(list((shop.path / ".conveyor/monitor/profiles/shop").glob("v1-*.npz"))) == 1
    again = shop.cli("monitor", "--data", "week.parquet")
    assert "reference profile" not in again.stderr
    assert "DRIFT" in again.stdout and again.returncode == 1
    listing = json.loads(shop.cli("monitor", "--list", "--json").stdout)
    assert [b["status"] for b in listing] == ["drift", "drift"]


def test_ks_and_js_selected_in_config(shop, batch):
    configure(shop, {"drift": {"numeric": "ks", "categorical": "js"}})
    batch(shop, "ok.csv", customers(1000, 31))
    batch(shop, "shift.csv", shifted(1000, 32))
    result, report = monitor(shop, "--data", "ok.csv")
    assert result.returncode == 0 and report["status"] == "ok", report["message"]
    assert report["feature_results"]["tenure_months"]["method"] == "ks"
    assert report["feature_results"]["contract"]["method"] == "js"
    result, report = monitor(shop, "--data", "shift.csv")
    assert report["status"] == "drift" and report["feature_results"]["tenure_months"]["drifted"]


@each_store  # SQLite, then a fresh PostgreSQL database
def test_rows_failing_the_schema_are_set_aside_and_too_many_make_the_batch_invalid(shop, batch):
    frame = customers(500, 41)
    frame.loc[7, "region"] = "atlantis"
    batch(shop, "bad.csv", frame)
    result, report = monitor(shop, "--data", "bad.csv")
    assert result.returncode == 0, result.stderr
    assert report["status"] == "ok" and report["invalid"] is None
    quality = report["quality"]
    assert quality["invalid_rows"] == 1 and quality["checked_rows"] == 499
    [(reason, examples)] = quality["invalid_examples"].items()
    assert reason.startswith("region: isin(") and examples == [[7, "atlantis"]]
    assert "1 row set aside (region: isin(" in report["message"]
    frame.loc[:300, "region"] = "atlantis"  # 301 of 500: more than monitor.max_invalid_share
    batch(shop, "worse.csv", frame)
    result, report = monitor(shop, "--data", "worse.csv")
    assert result.returncode == 1 and report["status"] == "invalid"
    assert "301 of 500 rows (60%) break the contract" in report["message"]
    assert [r["status"] for r in stored(shop)] == ["ok", "invalid"]
    text = shop.cli("monitor", "--data", "worse.csv")
    assert "region" in text.stdout and "atlantis" in text.stdout and "worse.csv" in text.stdout


def test_a_batch_missing_a_feature_is_invalid(shop, batch):
    batch(shop, "nofeature.csv", customers(500, 42).drop(columns=["tenure_months"]))
    result, report = monitor(shop, "--data", "nofeature.csv")
    assert result.returncode == 1 and report["status"] == "invalid"
    assert "tenure_months" in json.dumps(report["invalid"])


def test_an_empty_or_header_only_batch_is_invalid(shop, batch):
    batch(shop, "empty.csv", customers(10, 43).iloc[:0])
    result, report = monitor(shop, "--data", "empty.csv")  # a header line and nothing else
    assert result.returncode == 1, result.stderr
    assert report["status"] == "invalid" and "empty.csv has no rows" in report["message"]
    (shop.path / "zero.csv").write_text("")
    result, report = monitor(shop, "--data", "zero.csv")
    assert result.returncode == 1 and report["status"] == "invalid"
    assert "zero.csv is empty" in report["message"]


def test_a_too_small_batch_is_insufficient(shop, batch):
    batch(shop, "small.csv", shifted(50, 44))
    result, report = monitor(shop, "--data", "small.csv")
    assert result.returncode == 0
    assert report["status"] == "insufficient"
    assert "50 rows, fewer than monitor.min_rows=200" in report["message"]
    assert all(e["insufficient"] and not e["drifted"] for e in report["feature_results"].values())
    assert "alert" not in result.stderr


def test_an_all_missing_column_is_insufficient_for_that_feature_only(shop, batch):
    frame = customers(1000, 45)
    frame["monthly_charges"] = float("nan")
    batch(shop, "nan.csv", frame)
    result, report = monitor(shop, "--data", "nan.csv")
    entry = report["feature_results"]["monthly_charges"]
    assert entry["insufficient"] == "all 1,000 values are missing" and not entry["drifted"]
    assert report["drifted_features"] == 0 and report["features"] == 6
    # The model fills the blank column with its training median, so its predictions do
    # shift: that is reported as prediction drift, not blamed on the feature. Without the
    # prediction check, the batch is fine.
    configure(shop, {"prediction_drift": False})
    result, report = monitor(shop, "--data", "nan.csv")
    assert result.returncode == 0, result.stderr
    assert report["status"] == "ok" and report["drift_share"] == 0


@each_store  # SQLite, then a fresh PostgreSQL database
def test_labels_give_performance_and_a_breach_alerts(shop, batch):
    configure(shop, {"performance": {"accuracy": ">= 0.99"}})
    frame = customers(1000, 46)
    batch(shop, "week.csv", frame.drop(columns=["churned"]))
    batch(shop, "labels.csv", frame[["customer_id", "churned"]].sample(frac=0.5, random_state=0))
    result, report = monitor(shop, "--data", "week.csv", "--labels", "labels.csv")
    assert result.returncode == 1, result.stderr
    assert report["labelled_rows"] == 500
    assert set(report["performance"]) == {"accuracy", "balanced_accuracy", "f1_macro"}
    assert 0.6 < report["performance"]["accuracy"] < 0.99
    assert report["performance_breached"] and report["status"] == "drift"
    assert "alert [performance, critical]" in result.stderr
    row = stored(shop)[0]
    assert row["performance_breached"] == 1 and json.loads(row["performance"])["accuracy"] > 0.6


def test_labels_that_match_no_row_are_an_error_after_recording(shop, batch):
    frame = customers(1000, 47)
    batch(shop, "week.csv", frame.drop(columns=["churned"]))
    labels = frame[["customer_id", "churned"]].assign(customer_id=lambda f: "X" + f.customer_id)
    batch(shop, "labels.csv", labels)
    result = shop.cli("monitor", "--data", "week.csv", "--labels", "labels.csv")
    assert_clear_error(result, 2, "labels.csv", "none of its 1,000 ids", "customer_id")
    assert "recorded as batch" in result.stderr
    assert stored(shop)[0]["labelled_rows"] == 0


def test_bad_usage_and_config_exit_2(shop, batch):
    assert_clear_error(shop.cli("monitor"), 2, "--data BATCH or --from-log")
    assert_clear_error(shop.cli("monitor", "--data", "nope.csv"), 2, "nope.csv: no such file")
    batch(shop, "week.csv", customers(300, 48))
    labels = customers(10, 1)[["churned"]]
    batch(shop, "labels.csv", labels)
    assert_clear_error(shop.cli("monitor", "--data", "week.csv", "--labels", "labels.csv"), 2,
                     "no column 'customer_id'")
    assert_clear_error(shop.cli("monitor", "--data", "week.csv", "--model", "shop:9"), 2,
                     "no version 9")
    configure(shop, {"drift": {"numeric": "wasserstein"}})
    assert_clear_error(shop.cli("monitor", "--data", "week.csv"), 2,
                     "monitor.drift.numeric", "wasserstein", "psi")
    configure(shop, {"drift": {"numeric": "chi2", "categorical": "ks"}})
    assert_clear_error(shop.cli("monitor", "--data", "week.csv"), 2,
                     "monitor.drift.categorical", "'ks' does not handle categorical")
    assert not stored(shop)


DETECTOR_MODULE = '''
import conveyor


def _mean_shift(dist, threshold):
    import numpy as np

    centres = np.arange(len(dist.reference))
    ref = (centres * dist.reference).sum() / dist.reference.sum()
    cur = (centres * dist.current).sum() / dist.current.sum()
    score = abs(cur - ref)
    return conveyor.DriftResult(score=float(score), drifted=score >= threshold)


@conveyor.hookimpl
def conveyor_drift_detectors(register):
    register(conveyor.DriftDetector("bin_shift", frozenset({"numeric"}), _mean_shift, 1.0,
                                    description="shift of the mean quantile bin"))
'''


def test_a_third_party_detector_from_a_project_module_is_used(shop, batch):
    (shop.path / "my_detectors.py").write_text(textwrap.dedent(DETECTOR_MODULE))
    configure(shop, {"drift": {"numeric": "bin_shift"}, "thresholds": {"bin_shift": 2.5}},
              plugins={"local": ["my_detectors"]})
    batch(shop, "shift.csv", shifted(1000, 51))
    _, report = monitor(shop, "--data", "shift.csv")
    entry = report["feature_results"]["tenure_months"]
    assert entry["method"] == "bin_shift" and entry["threshold"] == 2.5
    assert entry["drifted"] and entry["score"] > 2.5
    assert report["feature_results"]["contract"]["method"] == "chi2"
    listing = json.loads(shop.cli("plugins", "list", "--json").stdout)
    assert "my_detectors" in json.dumps(listing)


# --- webhook ----------------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"body": json.loads(body), "type": self.headers["Content-Type"]})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.server
def test_the_webhook_gets_the_alert_as_json(shop, batch):
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/conveyor"
        configure(shop, {"alerts": {"webhook": {"url": url, "timeout": 5}}})
        batch(shop, "shift.csv", shifted(1000, 52))
        result, report = monitor(shop, "--data", "shift.csv")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1 and "not delivered" not in result.stderr, result.stderr
    [call] = _Receiver.received
    assert call["type"] == "application/json"
    body = call["body"]
    assert body["kind"] == "drift" and body["severity"] == "warning" and body["model"] == "shop:1"
    assert body["details"]["batch"] == report["batch"]
    assert "tenure_months" in body["details"]["drifted"]


def test_an_unreachable_webhook_is_named_and_not_fatal(shop, batch):
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    configure(shop, {"alerts": {"webhook": {"url": url, "timeout": 2}}})
    batch(shop, "shift.csv", shifted(1000, 53))
    result, report = monitor(shop, "--data", "shift.csv")
    assert result.returncode == 1 and report["status"] == "drift"
    assert "warning: alert not delivered" in result.stderr
    assert "conveyor-monitor" in result.stderr and "unreachable" in result.stderr
    assert "alert [drift, warning]" in result.stderr  # the log delivery still ran
    assert stored(shop)[0]["status"] == "drift"


# --- the serving prediction log -----------------------------------------------------------------


def _write_log(project: Project, frame: Any, part: str, start: str) -> None:
    import pandas as pd

    folder = project.path / ".conveyor" / "predictions" / "shop"
    folder.mkdir(parents=True, exist_ok=True)
    log = frame.drop(columns=["churned"]).assign(
        request_id=[f"r{part}-{i}" for i in range(len(frame))],
        timestamp=pd.date_range(start, periods=len(frame), freq="s", tz="UTC"),
        model_name="shop", model_version=1, prediction=0, proba__0=0.7, proba__1=0.3)
    # named as conveyor.predictions names its parts: part-<UTC stamp>-<pid>-<seq>.parquet
    stamp = pd.Timestamp(start, tz="UTC").strftime("%Y%m%dT%H%M%S%f")
    log.to_parquet(folder / f"part-{stamp}-1-{int(part)}.parquet", index=False)


@each_store  # SQLite, then a fresh PostgreSQL database
def test_from_log_reads_new_rows_only(shop):
    _write_log(shop, customers(600, 61), "0001", "2026-01-01")
    result, report = monitor(shop, "--from-log")
    assert result.returncode == 1, result.stderr  # the logged predictions are all class 0
    assert report["rows"] == 600 and report["source"] == "log:shop"
    assert report["prediction"]["prediction"]["drifted"]
    result, report = monitor(shop, "--from-log")
    assert report["rows"] == 0 and report["status"] == "insufficient"
    _write_log(shop, customers(400, 62), "0002", "2026-01-02")
    result, report = monitor(shop, "--from-log")
    assert report["rows"] == 400
    assert [r["rows"] for r in stored(shop)] == [600, 0, 400]


def test_from_log_without_a_log_says_so(shop):
    assert_clear_error(shop.cli("monitor", "--from-log"), 2, "no prediction log for model 'shop'")


# --- the HTML report in a real browser ----------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium package")
def test_the_html_report_renders_in_headless_chromium(shop, batch, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    batch(shop, "ok.csv", customers(1000, 71))
    frame = shifted(1000, 72)
    batch(shop, "shift.csv", frame)
    shop.cli("monitor", "--data", "ok.csv", check=False)
    monitor(shop, "--data", "shift.csv", "--report", str(tmp_path / "report"))
    page_file = tmp_path / "report" / "report.html"
    html = page_file.read_text()
    assert "cdn" not in html.lower().split("<body>")[1] and "<script src=" not in html
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(page_file.as_uri())
            page.wait_for_selector(".plotly svg", timeout=30000)
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert page.locator("#verdict").inner_text() == "DRIFT"
            assert page.locator("#features").is_visible()
            rows = page.locator("#features tr").all_inner_texts()
            assert any("tenure_months" in r and "drifted" in r for r in rows)
            assert page.locator("#history tr").count() == 3  # header + the two batches
            assert page.locator(".plotly").count() >= 9  # 8 distributions + the history
            assert page.get_by_text("tenure_months").first.is_visible()
        finally:
            browser.close()
    assert not errors, errors
    assert shot.stat().st_size > 20000


@each_store  # SQLite, then a fresh PostgreSQL database
def test_whole_numbers_written_as_floats_are_read_as_the_same_numbers(shop, batch):
    # pandas, Excel and most exports write an integer column as "3.0" once it has had a gap
    frame = customers(600, 71)
    frame["support_calls"] = frame["support_calls"].astype(float)
    path = batch(shop, "floats.csv", frame)
    assert "3.0" in path.read_text() or ".0," in path.read_text()
    result, report = monitor(shop, "--data", str(path))
    assert report is not None, result.stderr
    assert report["status"] in ("ok", "drift") and report["rows"] == 600, report["status"]
