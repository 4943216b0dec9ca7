"""conveyor-retrain on a recommender (the recsys `recommend` pipeline), through the real CLI:
feedback batches with a poor online hit rate trigger a retrain on the history plus the feedback
files, and the challenger's own evaluation (champion and challenger on the newest held-out
period, paired bootstrap) decides the promotion. The data is the retail simulator with a seed
and a change the defaults do not use (seed 7, a price shock in week 5)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conveyor.store import Registry, open_store
from conveyor.testing import Project, assert_usage_error, conveyor_executable, copy_project, prepared_once
from conveyor_monitor.records import Monitoring
from conveyor_retrain.records import RetrainDecisions

pytest.importorskip("conveyor_recsys")

RETRAIN = """
retrain:
  source_key: recsys.source
  compare: evaluation
  when: {metrics.hit_rate@10: "< champion - 0.05"}
  consecutive: 3
  min_rows: 1000
  window: {since: change, max_batches: 6, include_history: true}
  promote_if: {ndcg@10: "+0"}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A recommender project trained on weeks 1-4 of the simulated shop (v1 is champion); the
    weeks after it are feedback files under data/feedback/."""
    return prepared_once(tmp_path_factory, "recsys-retrain", _train) / "shop"


def _train(root: Path) -> None:
    from conveyor_recsys.simulate import RetailWorld, simulate

    subprocess.run([conveyor_executable(), "init", "shop", "--template", "recommender"],
                   cwd=root, check=True, capture_output=True)
    project = root / "shop"
    sim = simulate(RetailWorld(users=600, items=200, weeks=8, change_week=5,
                               change="price_shock", seed=7))
    sim.write(project / "data" / "feedback", cutoff=5)
    shutil.move(project / "data" / "feedback" / "history.csv", project / "data" / "history.csv")
    config = (project / "conveyor.yaml").read_text()
    config = config.replace("source: data/interactions.csv", "source: data/history.csv")
    (project / "conveyor.yaml").write_text(config + RETRAIN)
    Project(project).run(check=True)
    assert champion(project) == 1


@pytest.fixture
def project(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "shop"
    copy_project(trained, copy)
    return copy


def feedback(project: Path, hit_rate: float, *weeks: int, periods: int = 1) -> None:
    """Monitor batches as the feedback join records them: one per (events file, period)."""
    store = open_store(project)
    try:
        for week in weeks:
            for period in range(periods):
                Monitoring(store).record(
                    model_name="shop", model_version=champion(project),
                    source=f"data/feedback/week-{week:02d}.csv", source_sha256=None, rows=4000,
                    status="ok", labelled_rows=300,
                    performance={"hit_rate@10": hit_rate, "ndcg@10": hit_rate / 4},
                    details={"feedback": {"period": period, "join": "user"}})
                time.sleep(0.01)  # batches are ordered by when they were recorded
    finally:
        store.close()


def champion(project: Path) -> int | None:
    store = open_store(project)
    try:
        return Registry(store).aliases("shop").get("champion")
    finally:
        store.close()


def retrain(project: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = Project(project).cli("retrain", "--json", *args)
    return done, (json.loads(done.stdout) if done.stdout.strip() else {})


def rows(*paths: Path) -> int:
    import pandas as pd

    frame = pd.concat([pd.read_csv(p) for p in paths])
    return len(frame.drop_duplicates(subset=["user_id", "item_id", "timestamp", "event",
                                             "weight", "week"]))


def test_poor_feedback_retrains_on_history_and_feedback_and_promotes_through_evaluation(project):
    feedback(project, 0.60, 5)             # the week the champion still does well
    feedback(project, 0.40, 6, 7)
    feedback(project, 0.40, 8, periods=2)  # one file, two periods: read once
    done, decision = retrain(project)
    assert done.returncode == 0, done.stderr
    assert decision["outcome"] == "promoted", decision["reasons"]
    assert "metrics.hit_rate@10 0.4 breaches" in decision["reasons"][0]
    # the change is the first of the 3 breaching batches in a row (week 7, then week 8's two
    # periods): the window starts there, and week 8's file is read once
    window = decision["details"]["window"]
    assert window == ["data/history.csv", "data/feedback/week-07.csv",
                      "data/feedback/week-08.csv"]
    data = project / "data"
    assert decision["details"]["train_rows"] == rows(
        data / "history.csv", *(data / "feedback" / f"week-{w:02d}.csv" for w in (7, 8)))
    # the comparison is the challenger's evaluation: champion v1 on the same test users
    comparison = decision["metrics"]["comparison"]
    assert comparison["champion_version"] == 1 and comparison["rows"] > 0
    interval = comparison["intervals"]["ndcg@10"]
    assert interval["low"] <= interval["diff"] <= interval["high"]
    assert interval["diff"] == pytest.approx(decision["metrics"]["challenger"]["ndcg@10"]
                                             - decision["metrics"]["champion"]["ndcg@10"])
    assert champion(project) == 2 and decision["challenger_version"] == 2
    history = json.loads(Project(project).cli("models", "history", "shop", "--json").stdout)
    assert history[-1]["action"] == "retrain" and history[-1]["actor"] == "conveyor-retrain"
    # the challenger really trained on the window file, through recsys.source
    run = Project(project).show(decision["run_id"])
    assert run["metrics"]["interactions"] == decision["details"]["train_rows"]


def test_a_challenger_short_of_the_margin_stays_challenger(project):
    config = project / "conveyor.yaml"
    config.write_text(config.read_text().replace('promote_if: {ndcg@10: "+0"}',
                                                 'promote_if: {ndcg@10: "+0.2"}'))
    feedback(project, 0.40, 5, 6, 7)
    done, decision = retrain(project)
    assert done.returncode == 1, done.stderr
    assert decision["outcome"] == "kept", decision["reasons"]
    assert "stays challenger" in decision["reasons"][-1]
    assert "ndcg@10" in decision["reasons"][-1] and "+0.2" in decision["reasons"][-1]
    assert decision["metrics"]["comparison"]["champion_version"] == 1
    assert champion(project) == 1
    store = open_store(project)
    try:
        assert RetrainDecisions(store).list()[-1].challenger_version == 2
        assert Registry(store).aliases("shop")["challenger"] == 2
    finally:
        store.close()


def test_force_retrains_when_the_policy_does_not_trigger(project):
    feedback(project, 0.60, 5, 6, 7)       # no breach
    done, decision = retrain(project)
    assert done.returncode == 1 and decision["outcome"] == "no_action", decision
    done, decision = retrain(project, "--force")
    assert decision["forced"] and decision["outcome"] in ("promoted", "kept"), decision
    assert decision["run_id"] and decision["metrics"]["comparison"]["champion_version"] == 1
    # window.since: change, and no change detected: the newest window.batches (2) files
    assert decision["details"]["window"] == ["data/history.csv", "data/feedback/week-06.csv",
                                             "data/feedback/week-07.csv"]


@pytest.mark.parametrize(("old", "new", "needles"), [
    ("source_key: recsys.source", "source_key: recsys.sourse",
     ("retrain.source_key", "recsys.sourse", "recsys.source")),
    ("source_key: recsys.source", "source_key: data.source",   # unset in a recommender
     ("retrain.source_key", "data.source", "recsys.source")),
    ("compare: evaluation", "compare: eyeball", ("retrain.compare", "holdout, evaluation")),
    ('promote_if: {ndcg@10: "+0"}', 'promote_if: {ndcg@5: "+0"}',
     ("retrain.promote_if.ndcg@5", "evaluate.metrics", "ndcg@10")),
])
def test_bad_retrain_settings_are_config_errors_naming_the_setting(project, old, new, needles):
    config = project / "conveyor.yaml"
    config.write_text(config.read_text().replace(old, new))
    done, _ = retrain(project, "--force")
    assert_usage_error(done, *needles)
    store = open_store(project)
    try:
        assert RetrainDecisions(store).list() == []  # nothing recorded, nothing trained
    finally:
        store.close()


@pytest.mark.parametrize(("pipeline", "needles"), [
    ("pipeline:\n  evaluate:\n    model_name: other\n",
     ("retrain.compare", "'evaluate'", "'other'", "pipeline.evaluate.model_name")),
    ("pipeline:\n  register:\n    model_name: other\n",
     ("retrain.compare", "no stage of the pipeline registers 'shop'")),
])
def test_compare_by_evaluation_needs_an_evaluation_of_this_models_champion(project, pipeline,
                                                                           needles):
    config = project / "conveyor.yaml"
    config.write_text(config.read_text() + pipeline)
    feedback(project, 0.40, 5, 6, 7)
    done, _ = retrain(project)
    assert_usage_error(done, *needles)
    assert champion(project) == 1


def test_an_evaluation_without_a_champion_comparison_is_a_config_error(monkeypatch):
    """What the static checks cannot see: the challenger's evaluate stage did not score the
    champion at all. The decision is then blocked (recorded by the caller) and the command
    exits 2 naming retrain.compare."""
    from types import SimpleNamespace

    from conveyor import ConfigError, EvaluationResult, api
    from conveyor_retrain import evaluation
    from conveyor_retrain.settings import RetrainConfig

    scores = EvaluationResult(overall={"ndcg@10": 0.1}, metrics=("ndcg@10",)).to_dict()
    monkeypatch.setattr(api, "load_output", lambda *args, **kwargs: scores)
    champion = SimpleNamespace(version=1, gate={})
    with pytest.raises(ConfigError, match=r"retrain\.compare is 'evaluation'.*champion v1"):
        evaluation.compare(None, {}, RetrainConfig(compare="evaluation"), champion, "run-1",
                           "ndcg@10")
    # no champion yet: nothing to compare, the challenger goes through
    _, lines, better = evaluation.compare(None, {}, RetrainConfig(compare="evaluation"),
                                          None, "run-1", "ndcg@10")
    assert better and lines == ["no champion to compare with"]


def test_the_templates_retrain_block_uncommented_is_a_working_policy(tmp_path):
    subprocess.run([conveyor_executable(), "init", "shop", "--template", "recommender"],
                   cwd=tmp_path, check=True, capture_output=True)
    project = tmp_path / "shop"
    config = project / "conveyor.yaml"
    lines = config.read_text().splitlines()
    start = lines.index("# retrain:")
    config.write_text("\n".join(lines[:start] + [line[2:] for line in lines[start:]]) + "\n")
    Project(project).run(check=True)
    done, decision = retrain(project)
    assert done.returncode == 1, done.stderr            # no feedback yet: nothing to do
    assert decision["outcome"] == "no_action"
    done, decision = retrain(project, "--force")     # the history alone, compared by evaluation
    assert decision["outcome"] in ("promoted", "kept"), decision
    assert decision["details"]["window"] == ["data/interactions.csv"]


def test_a_feedback_file_gone_since_it_was_monitored_is_noted_and_left_out(project):
    feedback(project, 0.40, 5, 6, 7)
    (project / "data" / "feedback" / "week-06.csv").unlink()
    _, decision = retrain(project)
    assert decision["outcome"] in ("promoted", "kept"), decision
    assert decision["details"]["window"] == ["data/history.csv", "data/feedback/week-05.csv",
                                             "data/feedback/week-07.csv"]
    assert any("data/feedback/week-06.csv): no file to train on" in note
               for note in decision["details"]["notes"]), decision["details"]["notes"]


def test_retrain_overrides_apply_to_the_challenger_only_and_refit_learns_the_test_period(
        project):
    """retrain.overrides: [recsys.refit=true]: the challenger is judged as trained before its
    test period, and the version registered is trained again on all of the window, so a week
    of feedback reaches the served model (without it that week is only ever the test period)."""
    from conveyor import api

    config = project / "conveyor.yaml"
    config.write_text(config.read_text() + "  overrides: [recsys.refit=true]\n")
    feedback(project, 0.40, 5, 6, 7)
    _, decision = retrain(project)
    assert decision["outcome"] == "promoted", decision["reasons"]
    run = Project(project).show(decision["run_id"])
    metrics = run["metrics"]
    assert metrics["refit_rows"] == metrics["interactions"] == decision["details"]["train_rows"]
    assert metrics["train_rows"] < metrics["refit_rows"]  # evaluated without the test period
    # the newest week's interactions are in the model registered
    import pandas as pd

    newest = pd.read_csv(project / "data" / "feedback" / "week-07.csv")
    model = api.load_model(project, "shop", version=decision["challenger_version"]).model
    user = int(newest["user_id"].iloc[-1])
    assert int(newest["item_id"].iloc[-1]) in set(model.seen(user))
    # the project's own runs stay unrefit: the override was the challenger's only
    assert "recsys.refit=true" not in (project / "conveyor.yaml").read_text().split(
        "overrides:")[0]
    assert api.load_config(project).data["recsys"]["refit"] is False


def test_a_misspelt_retrain_override_stops_before_anything_is_recorded(project):
    config = project / "conveyor.yaml"
    config.write_text(config.read_text() + "  overrides: [recsys.refitt=true]\n")
    feedback(project, 0.40, 5, 6, 7)
    done = Project(project).cli("retrain")
    assert_usage_error(done, "retrain.overrides")
    store = open_store(project)
    try:
        assert RetrainDecisions(store).list(model_name="shop") == []
    finally:
        store.close()
