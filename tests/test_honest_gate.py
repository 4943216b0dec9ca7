"""Honest champion comparisons, through the real CLI on freshly generated data: the champion is
scored only on rows it never trained on, a comparison that cannot be made fails closed, every
decision records the paired difference with its interval, and relative gates cannot ratchet
quality down."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conveyor import api
from conveyor.store import ArtifactRef, Registry, open_store
from conveyor.testing import assert_usage_error

FEATURES = [f"x{i}" for i in range(6)]

CONFIG = """\
defaults:
  - conveyor/defaults
  - pipeline: train
  - model: logistic_regression
  - _self_

project: proj

data:
  source: data/fresh.csv
  target: label

evaluate:
  metrics: [accuracy, roc_auc]
  gate:
{gate}
"""


def fresh_data(rows: int = 2000, seed: int = 7) -> pd.DataFrame:
    """Seeded: six numeric features, one categorical, a noisy logistic label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES)))
    plan = rng.choice(["basic", "plus", "pro"], rows)
    logit = x @ np.array([1.2, 0.9, 0.7, 0.5, 0.3, 0.2]) + (plan == "pro") * 0.6
    frame = pd.DataFrame(x.round(4), columns=FEATURES)
    frame["plan"] = plan
    frame["label"] = (logit + rng.logistic(size=rows) > 0).astype(int)
    return frame


@pytest.fixture
def project(new_project):
    """A project on fresh.csv; `project.gate(...)` rewrites its gate."""
    made = new_project()
    (made.path / "data" / "fresh.csv").parent.mkdir(exist_ok=True)
    fresh_data().to_csv(made.path / "data" / "fresh.csv", index=False)

    def gate(**rules: str) -> None:
        lines = "\n".join(f'    {metric}: "{rule}"' for metric, rule in rules.items()) or "    {}"
        (made.path / "conveyor.yaml").write_text(CONFIG.format(gate=lines))

    made.gate = gate
    gate(accuracy=">= champion - 0.02")
    return made


def _versions(project) -> list[dict]:
    return json.loads(project.cli("models", "list", "--json", check=True).stdout)


def _record(project, version: int):
    store = open_store(project.path)
    try:
        return Registry(store).get("proj", version)
    finally:
        store.close()


def _drop_rows(project, every: int = 50) -> None:
    """The same file minus a few rows (as after quarantining bad ones): the split reshuffles,
    so most new test rows are rows the champion trained on."""
    path = project.path / "data" / "fresh.csv"
    frame = pd.read_csv(path)
    frame.drop(index=range(0, len(frame), every)).to_csv(path, index=False)


def test_the_champion_is_scored_only_on_test_rows_it_never_trained_on(project):
    first = project.run_recorded()
    _drop_rows(project)
    result = project.run("evaluate.champion_min_rows=20")
    assert result.returncode in (0, 1), result.stderr
    second = project.last_run()
    comparison = _record(project, 2).gate["comparison"]
    # Counted independently: the new test rows that were in the champion's training split.
    trained = api.load_output(project.path, first.id, "train")
    test = api.load_output(project.path, second.id, "test")
    columns = [*FEATURES, "plan", "label"]
    seen = test.merge(trained[columns].drop_duplicates(), on=columns, how="left", indicator=True)
    overlap = int((seen["_merge"] == "both").sum())
    assert overlap > len(test) // 2  # the scenario: most of the test set is the champion's
    assert comparison["excluded"] == overlap
    assert comparison["rows"] == len(test) - overlap == comparison["test_rows"] - overlap
    assert f"compared on the other {len(test) - overlap:,}" in result.stdout
    # ...and the champion's recorded score is its score on exactly those rows.
    unseen = seen[seen["_merge"] == "left_only"]
    champion = api.load_model(project.path, "proj", version=1).model
    honest = champion.score(unseen[champion.feature_names_in_], unseen["label"])
    assert comparison["champion"]["accuracy"] == pytest.approx(honest)
    assert f"on {len(test) - overlap:,} test rows it never trained on" in " ".join(
        _record(project, 2).gate["reasons"])


def test_too_few_unseen_rows_fail_closed_and_force_is_recorded(project):
    project.run(check=True)
    _drop_rows(project)
    result = project.run("evaluate.champion_min_rows=300")
    assert result.returncode == 1
    assert "fails closed: only" in result.stdout and "evaluate.champion_min_rows is 300" \
        in result.stdout
    version = _versions(project)[1]
    assert version["decision"] == "rejected" and version["aliases"] == []
    assert "not compared" in project.cli("models", "list", check=True).stdout
    forced = project.cli("models", "promote", "proj", "2", "--force", "--reason",
                         "reviewed by hand")
    assert forced.returncode == 0, forced.stderr
    history = json.loads(project.cli("models", "history", "proj", "--json", check=True).stdout)
    assert [(h["version"], h["action"], h["forced"]) for h in history][-1] == (2, "promote", 1)
    assert "evaluate.champion_min_rows is 300" in history[-1]["comparison"]["unavailable"]
    shown = project.cli("models", "history", "proj", check=True).stdout
    assert "promote (forced) by" in shown and "vs v1: not compared (only" in shown


def test_a_champion_that_cannot_be_loaded_fails_the_relative_gate_closed(project):
    project.run(check=True)
    store = open_store(project.path)
    ref = ArtifactRef.from_dict(Registry(store).alias("proj").artifact)
    path = store.artifacts.path(ref)
    store.close()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    result = project.run("model.params.C=0.5")
    assert result.returncode == 1
    assert "fails closed: champion v1 cannot be loaded" in result.stdout
    assert "holds trivially" not in result.stdout
    assert _versions(project)[1]["decision"] == "rejected"
    # An absolute-only gate does not need the champion.
    project.gate(roc_auc=">= 0.6")
    assert project.run("model.params.C=0.25").returncode == 0


def test_a_cached_rerun_reports_the_registry_as_it_is_now(project):
    project.run(check=True)
    project.run("model.params.C=0.5", check=True)
    project.cli("models", "promote", "proj", "2", check=True)
    project.cli("models", "rollback", "proj", check=True)
    project.cli("models", "promote", "proj", "2", check=True)
    again = project.run()  # every stage cached from the first run
    assert again.returncode == 0
    assert "promoted to champion" not in again.stdout
    assert "proj v1 (registered then; it passed the gate) is not the champion (v2 is)" \
        in again.stdout
    assert len(_versions(project)) == 2


def test_every_gate_decision_records_the_paired_difference_with_its_interval(project):
    project.run(check=True)
    project.run("model.params.C=0.01")
    comparison = _record(project, 2).gate["comparison"]
    assert comparison["rows"] == 400 and comparison["excluded"] == 0
    for metric in ("accuracy", "roc_auc"):
        interval = comparison["intervals"][metric]
        assert interval["level"] == 0.95 and interval["rows"] == 400
        assert interval["resamples"] >= 990
        assert interval["low"] <= interval["diff"] <= interval["high"]
        assert interval["diff"] == pytest.approx(
            comparison["challenger"][metric] - comparison["champion"][metric])
    history = project.cli("models", "history", "proj", check=True).stdout
    listing = project.cli("models", "list", check=True).stdout
    assert "vs v1 on 400 rows: roc_auc Δ" in listing or "vs v1 on 400 rows" in listing
    if _versions(project)[1]["aliases"]:
        assert "95% CI" in history


def test_a_condition_at_95_percent_needs_the_intervals_lower_bound_to_clear_it(project):
    project.gate(accuracy="+0.01 at 95%")
    project.run("model.params.C=0.0005", check=True)  # a weak first champion
    # Gradient boosting is clearly better: the interval's lower bound clears the margin.
    clear = project.run("model=hist_gradient_boosting")
    assert clear.returncode == 0, clear.stdout
    assert _record(project, 2).gate["comparison"]["intervals"]["accuracy"]["low"] > 0.01
    history = project.cli("models", "history", "proj", check=True).stdout
    assert "at 95% meets >= +0.01" in history and "vs v1 on 400 rows: accuracy Δ +" in history
    # The tuned linear model beats it by more than 0.01 on these 400 rows, within the noise:
    # a bare "+0.01" would promote it, "+0.01 at 95%" does not.
    noisy = project.run("model.params.C=0.05")
    assert noisy.returncode == 1
    interval = _record(project, 3).gate["comparison"]["intervals"]["accuracy"]
    assert interval["diff"] > 0.01 > interval["low"]
    assert "accuracy difference's lower bound" in noisy.stdout
    assert "at 95% misses >= +0.01" in noisy.stdout


@pytest.mark.parametrize("rule, key", [
    ("+0.01 at 120%", "evaluate.gate.accuracy"),
    ("+0.01 at", "evaluate.gate.accuracy"),
])
def test_malformed_margins_are_config_errors_naming_the_key(project, rule, key):
    project.gate(accuracy=rule)
    assert_usage_error(project.run(), key)


def test_an_unknown_metric_in_the_gate_or_promote_if_is_a_config_error(project):
    project.gate(acuracy=">= 0.5")
    assert_usage_error(project.run(), "evaluate.gate.acuracy", "accuracy")
    project.gate(accuracy=">= 0.5")
    config = (project.path / "conveyor.yaml").read_text()
    (project.path / "conveyor.yaml").write_text(
        config + "retrain:\n  promote_if: {roc_acu: '+0.01'}\n")
    assert_usage_error(project.cli("retrain"), "retrain.promote_if.roc_acu", "roc_auc")
    (project.path / "inbox").mkdir()
    assert_usage_error(project.cli("watch", "--inbox", "inbox", "--once"),
                       "retrain.promote_if.roc_acu")
    (project.path / "conveyor.yaml").write_text(
        config + "retrain:\n  when: {metrics.f1_macro: '< 0.5'}\n")
    assert_usage_error(project.cli("retrain"), "retrain.when.metrics.f1_macro",
                       "evaluate.metrics")
    (project.path / "conveyor.yaml").write_text(
        config + "retrain:\n  when: {metrics.accuracy: '< champion - 0.05 at 95%'}\n")
    assert_usage_error(project.cli("retrain"), "retrain.when.metrics.accuracy", "interval")
    (project.path / "conveyor.yaml").write_text(
        config + "retrain:\n  when: {metrics.accuracy: '< 0.5'}\n"
                 "  promote_if: {accuracy: '+0.01 at 200%'}\n")
    assert_usage_error(project.cli("retrain"), "retrain.promote_if.accuracy")


def test_a_tolerance_is_anchored_to_the_best_recent_champion(project):
    """Each step within 0.03 of the current champion, but never more than 0.03 below the best
    one: the ground given up is carried from version to version."""
    project.gate(accuracy=">= champion - 0.03")
    project.run(check=True)
    steps = ["0.002", "0.001", "0.0007", "0.0005", "0.0004"]
    for c in steps:
        project.run(f"model.params.C={c}")
    versions = _versions(project)
    accuracy = {v["version"]: v["metrics"]["accuracy"] for v in versions}
    champions = [h["version"] for h in json.loads(
        project.cli("models", "history", "proj", "--json", check=True).stdout)]
    # Same data, same test rows: the recorded accuracies are directly comparable.
    best = max(accuracy[v] for v in champions)
    assert min(accuracy[v] for v in champions) >= best - 0.03 - 1e-9
    # Without the anchor each of these steps would have passed (within 0.03 of its champion).
    steps_within = [accuracy[v + 1] >= accuracy[v] - 0.03 for v in range(1, len(steps) + 1)]
    assert accuracy[len(steps) + 1] < best - 0.03 and all(steps_within)
    reasons = " ".join(r for v in versions for r in v["reasons"])
    assert "already given up since the best recent champion" in reasons


def test_a_metrics_direction_comes_from_its_scorer(project):
    """d2_absolute_error_score names an error but is better when higher: a worse model must
    not clear "+0" (the name-based guess had it backwards)."""
    config = CONFIG.replace("model: logistic_regression", "model: ridge").replace(
        "target: label", "target: x0").replace(
        "metrics: [accuracy, roc_auc]", "metrics: [d2_absolute_error_score, neg_mean_absolute_error]")
    (project.path / "conveyor.yaml").write_text(config.format(
        gate='    d2_absolute_error_score: "+0"'))
    project.run(check=True)
    worse = project.run("model.params.alpha=100000")
    assert worse.returncode == 1, worse.stdout
    record = _record(project, 2)
    assert record.gate["directions"] == {"d2_absolute_error_score": "higher",
                                         "neg_mean_absolute_error": "higher"}
    assert record.metrics["d2_absolute_error_score"] < _record(project, 1).metrics[
        "d2_absolute_error_score"]
    assert "d2_absolute_error_score" in worse.stdout and "misses >=" in worse.stdout


def test_row_fingerprints_agree_however_a_column_was_read():
    from conveyor.fingerprints import row_fingerprints, unseen

    numbers = pd.DataFrame({"a": [5, 6, 7], "b": ["x", "y", None], "t": [0, 1, 0]})
    text = pd.DataFrame({"t": ["0", "1", "0"], "a": ["5.0", "6", "7"], "b": ["x", "y", None]})
    floats = numbers.astype({"a": "float64"})
    expected = row_fingerprints(numbers, ["a", "b", "t"])
    assert (row_fingerprints(text, ["t", "b", "a"]) == expected).all()
    assert (row_fingerprints(floats, ["a", "b", "t"]) == expected).all()
    assert len(set(expected)) == 3
    relabelled = numbers.assign(t=[1, 1, 0])  # same features, another label: a new row
    assert unseen(relabelled, ["a", "b", "t"], expected).tolist() == [True, False, False]
