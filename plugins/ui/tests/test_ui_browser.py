"""conveyor ui in a real browser (Debian's headless Chromium through Playwright), as a person
uses it, over a project made by the real CLI: runs, a failed run, two model versions with a
promotion and a rollback, monitored batches with drift. Screenshots of every page go to
test-artifacts/ui/ (printed), and each test asserts on what the page shows."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _ui_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, running_ui
from conveyor.testing import Project, conveyor_executable

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (make test does)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {ARTIFACTS}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def ui(shop_history: Project) -> Iterator[Any]:
    with running_ui(shop_history.path) as server:
        yield server


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    tab.on("console", lambda message: problems.append(f"console: {message.text}")
           if message.type == "error" else None)
    tab.problems = problems
    yield tab
    context.close()
    assert not problems, problems  # no script error, no failed resource (CSP, 404)


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_runs_page_sorts_filters_and_leads_to_a_failed_runs_validation_report(ui, page):
    page.goto(ui.base + "/")
    table = page.locator("#runs-table")
    assert page.locator("h1").inner_text().startswith("Runs")
    assert table.locator("tbody tr").count() == 3
    assert table.locator(".badge.failed").count() == 1
    shot(page, "01-runs")
    page.click("th.metric a:text-is('accuracy')")  # sort by a metric, best first
    headers = [h.strip(" ▼▲") for h in table.locator("thead th").all_inner_texts()]
    column = headers.index("accuracy") + 1
    cells = table.locator(f"tbody td:nth-child({column})").all_inner_texts()
    values = [float(v) for v in cells if v.strip()]
    assert len(values) == 2 and values == sorted(values, reverse=True)
    page.select_option("select[name=status]", "failed")
    page.click("button:has-text('Filter')")
    assert table.locator("tbody tr").count() == 1
    page.locator("#runs-table tbody a").first.click()
    page.wait_for_selector("#validation-report")
    report = page.locator("#validation-report").inner_text()
    assert "monthly_charges" in report and "rows invalid" in report
    assert "failed" in page.locator("table.stages").inner_text()
    assert "validation failed" in page.locator("#run-error").inner_text()
    shot(page, "02-failed-run")


def test_a_run_shows_config_lineage_stages_and_why_they_ran(ui, page):
    page.goto(ui.base + "/runs?sort=created&dir=asc")
    page.locator("#runs-table tbody tr").nth(1).locator("a").first.click()  # the second run
    stages = page.locator("table.stages").inner_text()
    assert "cached" in stages and "setting changed: model.params.max_depth" in stages
    assert "max_depth: 3" in page.locator("#resolved-config").inner_text()
    lineage = page.locator("dl.facts").last.inner_text()
    assert "data/customers.csv" in lineage and "md5:" in lineage
    assert page.locator("table.artifacts").inner_text().count("json") >= 2
    shot(page, "03-run")


def test_two_runs_compared_side_by_side_with_a_metrics_chart(ui, page):
    page.goto(ui.base + "/runs?status=completed")
    boxes = page.locator("#runs-table tbody input[type=checkbox]")
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.click("#compare-selected")
    page.wait_for_selector("#metrics-chart .main-svg")  # Plotly drew it
    assert page.locator("h1").inner_text() == "Compare 2 runs"
    differing = page.locator("#params-table tr.differs").all_inner_texts()
    assert any("model.params.max_depth" in row for row in differing)
    assert not any("data.target" in row for row in differing)
    page.check("input.only-differing")
    assert page.locator("#params-table tr.same").first.is_hidden()
    shot(page, "04-compare")


def test_pipeline_graph_coloured_by_last_status(ui, page):
    page.goto(ui.base + "/pipeline")
    graph = page.locator("#pipeline-graph")
    names = graph.locator("g.node text.name").all_text_contents()
    assert names == ["load", "validate", "split", "train", "evaluate", "register"]
    # the latest run failed in validate: that stage is red, the ones it never reached keep
    # the status of the last run that had them
    assert "status-failed" in graph.locator("g[data-stage=validate]").get_attribute("class")
    assert "status-completed" in graph.locator("g[data-stage=train]").get_attribute("class")
    assert graph.locator("path.edge").count() >= 5
    shot(page, "05-pipeline")


def test_models_show_versions_gate_and_alias_history_with_who_and_why(ui, page):
    page.goto(ui.base + "/models")
    page.wait_for_selector("#chart-shop .main-svg")
    model = page.locator("#model-shop")
    assert model.locator("table.versions tbody tr").count() == 2
    history = model.locator("table.history").inner_text()
    assert "rollback" in history and "promotion was premature" in history
    assert "v1 holds up better on new weeks" in history and "passed the gate" in history
    assert "Promote v" not in model.inner_text()  # read-only by default
    assert "No conveyor serve answers" in page.locator("#served").inner_text()
    shot(page, "06-models")


def test_monitoring_shows_drift_against_thresholds_and_performance_over_time(ui, page):
    page.goto(ui.base + "/monitoring")
    page.wait_for_selector("#drift-chart .main-svg")
    page.wait_for_selector("#performance-chart .main-svg")
    batches = page.locator("#batches-table tbody tr")
    assert batches.count() == 2
    assert "drift" in batches.nth(0).inner_text() and "ok" in batches.nth(1).inner_text()
    features = page.locator("#features-table").inner_text()
    assert "tenure_months" in features and "drift" in features
    assert page.locator("#retraining").is_visible()
    shot(page, "07-monitoring")


def test_actions_promote_with_confirmation_and_pages_follow_the_store_live(shop_copy, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    with running_ui(shop_copy.path, "--allow-actions") as server:
        page.goto(server.base + "/models")
        page.evaluate("window.__same_page = true")
        page.click("summary:has-text('Promote v1')")
        form = page.locator("details[open] form")
        form.locator("input[name=reason]").fill("v1 wins on the new weeks")
        form.locator("button[type=submit]").click()  # not confirmed: the browser holds it
        assert page.evaluate("window.__same_page") is True
        form.locator("input[name=confirm]").check()
        shot(page, "08-promote-confirm")
        form.locator("button[type=submit]").click()
        page.wait_for_selector("p.note")
        assert "champion is now version 1 (was 2)" in page.locator("p.note").inner_text()
        assert "v1 wins on the new weeks" in page.locator("table.history").inner_text()
        assert "via conveyor ui" in page.locator("table.history").inner_text()
        shot(page, "09-promoted")

        # another process changes the store: the open page follows without a reload
        page.evaluate("window.__same_page = true")
        done = subprocess.run([conveyor_executable(), "models", "rollback", "shop", "--reason",
                               "rolled back from the terminal"], cwd=shop_copy.path,
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "COLUMNS": "200"})
        assert done.returncode == 0, done.stderr
        page.wait_for_selector("text=rolled back from the terminal", timeout=15000)
        assert page.evaluate("window.__same_page") is True
        shot(page, "10-live-update")
    context.close()
