"""`conveyor feedback` for recommenders through the real CLI: the simulator's following week
joined to logged slates by user and time window or by request id, the bad input of real feeds
(duplicates, late rows, unknown users and request ids, empty periods), drift, the policy.

The project is the recommender template retrained on the retail simulator (seed 7, a price
shock from week 5, messy delivery: not the defaults the plugin was built with); slates are
written to the prediction log in the agreed shape with `PredictionLogWriter`, as
`POST /recommend` logs them; the last test serves them for real.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conveyor.testing import Project, assert_usage_error, conveyor_executable, copy_project, serving

WORLD = {"users": 300, "items": 120, "weeks": 6, "change_week": 5, "change": "price_shock",
         "seed": 7, "messy": True}
STAMP = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture(scope="module")
def _trained(tmp_path_factory) -> Path:
    from conveyor_recsys.simulate import RetailWorld, simulate

    root = tmp_path_factory.mktemp("feedback")
    subprocess.run([conveyor_executable(), "init", "shop", "--template", "recommender"],
                   cwd=root, check=True, capture_output=True, text=True)
    project = root / "shop"
    sim = simulate(RetailWorld(**WORLD))
    sim.weeks(1, 4).drop(columns=["week"]).to_csv(project / "data" / "interactions.csv",
                                                  index=False, date_format=STAMP)
    sim.write_weeks(project / "events", [5, 6])
    sim.users.to_csv(project / "data" / "users.csv", index=False)
    sim.items.to_csv(project / "data" / "items.csv", index=False)
    Project(project).run(check=True)
    return project


@pytest.fixture
def shop(tmp_path: Path, _trained: Path) -> Project:
    return copy_project(_trained, tmp_path / "shop")


def serve_slates(project: Project, week: int, *, share: float = 0.8, spread: float = 1.0,
                 version: int | None = None, start: float | None = None
                 ) -> dict[int, dict[str, Any]]:
    """Log a slate for the first `share` of the week's users (sorted by id), served from the
    week's first midnight (or `start`, epoch seconds) on, one every `spread` seconds, by the
    champion (or `version`)."""
    import pandas as pd
    from conveyor import api
    from conveyor.predictions import PredictionLogWriter

    loaded = api.load_model(project.path, version=version)
    events = pd.read_csv(project.path / "events" / f"week-{week:02d}.csv")
    users = sorted(int(u) for u in events["user_id"].unique())
    users = users[:int(len(users) * share)]
    if start is None:
        start = pd.Timestamp(events["timestamp"].min()).floor("D").timestamp()
    served = {}
    with PredictionLogWriter(project.path, loaded.name) as writer:
        for n, user in enumerate(users):
            slate = loaded.model.recommend(user, 10)
            rid = f"w{week}-{n}"
            writer.append([{"user_id": user, "k": 10, "exclude_seen": True,
                            "fallback": slate.fallback, "scores": [s for _, s in slate]}],
                          [[item for item, _ in slate]], model_version=loaded.number,
                          request_id=rid, timestamp=start + n * spread)
            served[user] = {"request_id": rid, "items": [item for item, _ in slate],
                            "at": start + n * spread,
                            "seen": set(loaded.model.seen(user))}
    return served


def feedback(project: Project, *args: str, check: bool = True) -> dict[str, Any]:
    result = project.cli("feedback", *args, "--json")
    if check:
        assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def expected_scores(project: Project, week: int, served: dict[int, dict[str, Any]]
                    ) -> dict[str, Any]:
    """Hit rate and NDCG@10 computed here, from the clean simulator: a slate's relevant items
    are its user's purchases of the week, less what the user had in training."""
    import math

    from conveyor_recsys.simulate import RetailWorld, simulate

    clean = simulate(RetailWorld(**{**WORLD, "messy": False}))
    relevant = clean.relevant(week)
    bought = clean.week(week)
    bought = bought[bought["event"] == "purchase"]
    hits, ndcgs = [], []
    for user, slate in served.items():
        wanted = relevant.get(user, set()) - slate["seen"]
        if not wanted:
            continue
        gains = [1.0 / math.log2(i + 2) for i, item in enumerate(slate["items"])
                 if item in wanted]
        ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(wanted), 10)))
        hits.append(1.0 if gains else 0.0)
        ndcgs.append(sum(gains) / ideal)
    purchases = len(bought)  # rows: an item bought twice in a week is two events
    unmatched = int((~bought["user_id"].isin(list(served))).sum())
    return {"hit_rate@10": sum(hits) / len(hits), "ndcg@10": sum(ndcgs) / len(ndcgs),
            "evaluated": len(hits), "purchases": purchases, "unmatched": unmatched}


def test_user_window_join_scores_the_week_as_computed_by_hand(shop):
    import pandas as pd

    served = serve_slates(shop, 5)
    out = feedback(shop, "--data", "events/week-05.csv", "feedback.events=[purchase]")
    expected = expected_scores(shop, 5, served)
    assert out["join"] == "user_window" and out["kind"] == "recommender" and out["k"] == 10
    [batch] = out["batches"]
    assert batch["source"] == "events/week-05.csv" and batch["model_version"] == 1
    assert batch["rows"] == len(served)
    assert batch["labelled_rows"] == expected["evaluated"]
    assert batch["performance"]["hit_rate@10"] == pytest.approx(expected["hit_rate@10"])
    assert batch["performance"]["ndcg@10"] == pytest.approx(expected["ndcg@10"])
    assert 0 < batch["performance"]["hit_rate@10"] < 1
    events = out["events"]
    # the messy delivery: exact copies dropped, late rows sorted, each counted
    raw = pd.read_csv(shop.path / "events" / "week-05.csv")
    assert events["duplicates"] == int(raw.duplicated().sum()) > 0
    assert events["out_of_order"] > 0
    views = raw.drop_duplicates()["event"].eq("view").sum()
    assert events["irrelevant"] == views  # not feedback here, counted
    # purchases of users without a slate are counted, not dropped
    assert events["unmatched"] == expected["unmatched"] > 0
    assert events["matched"] + events["unmatched"] == expected["purchases"]
    assert any("matched no slate" in note for note in out["notes"])
    feedback_details = batch["details"]["feedback"]
    assert feedback_details["start"] == "2026-02-02T00:00:00Z"
    assert feedback_details["end"] == "2026-02-09T00:00:00Z"


def test_the_same_file_is_recorded_once(shop):
    serve_slates(shop, 5)
    first = feedback(shop, "--data", "events/week-05.csv")
    again = shop.cli("feedback", "--data", "events/week-05.csv")
    assert "recorded before" in again.stdout, again.stdout
    listed = json.loads(shop.cli("monitor", "--list", "--json", check=True).stdout)
    assert [b["id"] for b in listed] == [b["id"] for b in first["batches"]]


def test_request_id_join_counts_unknown_request_ids(shop):
    import pandas as pd

    served = serve_slates(shop, 5, share=1.0)
    path = shop.path / "events" / "week-05.csv"
    events = pd.read_csv(path)
    events["request_id"] = events["user_id"].map(lambda u: served[int(u)]["request_id"])
    purchases = events["event"] == "purchase"
    unknown = events.index[purchases][:7]
    events.loc[unknown, "request_id"] = "no-such-request"
    events.loc[events.index[purchases][10:15], "request_id"] = None  # these join by user
    events.to_csv(shop.path / "events" / "with-ids.csv", index=False)
    out = feedback(shop, "--data", "events/with-ids.csv")
    assert out["join"] == "request_id"
    assert out["events"]["unmatched"] == 7
    assert any("unknown request id" in note for note in out["notes"])
    events.to_csv(shop.path / "events" / "with-ids.tsv", index=False, sep="\t")  # new content
    by_window = feedback(shop, "--data", "events/with-ids.tsv", "feedback.join=user_window")
    assert by_window["join"] == "user_window" and by_window["events"]["unmatched"] == 0


def test_by_request_id_the_slates_serving_period_is_scored_whatever_the_events_clock(shop):
    """A replay (or a feed on another clock) delivers events whose own times lie months from
    the serving time: joined by request id, the periods the slates were served in are scored
    (found by the recommender story, whose weeks of 2026-02 are served in December)."""
    import pandas as pd

    december = pd.Timestamp("2026-12-02T09:00:00", tz="UTC").timestamp()
    served = serve_slates(shop, 5, share=1.0, start=december)
    events = pd.read_csv(shop.path / "events" / "week-05.csv")
    events["request_id"] = events["user_id"].map(lambda u: served[int(u)]["request_id"])
    events.to_csv(shop.path / "events" / "replayed.csv", index=False)
    out = feedback(shop, "--data", "events/replayed.csv", "feedback.events=[purchase]")
    expected = expected_scores(shop, 5, served)
    assert out["join"] == "request_id" and out["events"]["unmatched"] == 0
    [batch] = out["batches"]
    assert batch["details"]["feedback"]["start"] == "2026-11-30T00:00:00Z"  # that Monday
    assert batch["labelled_rows"] == expected["evaluated"]
    assert batch["performance"]["hit_rate@10"] == pytest.approx(expected["hit_rate@10"])
    assert batch["performance"]["ndcg@10"] == pytest.approx(expected["ndcg@10"])


def test_days_without_slates_are_insufficient_periods(shop):
    serve_slates(shop, 5, share=1.0)  # all slates on the week's first day (a second apart)
    out = feedback(shop, "--data", "events/week-05.csv", "feedback.period=D",
                   "feedback.min_rows=5")
    batches = out["batches"]
    assert len(batches) == 7
    assert [b["details"]["feedback"]["start"][:10] for b in batches] == [
        f"2026-02-{day:02d}" for day in range(2, 9)]
    assert batches[0]["status"] in ("ok", "drift") and batches[0]["rows"] > 0
    for empty in batches[1:]:
        assert empty["status"] == "insufficient" and empty["rows"] == 0
        assert "no slate was served in this period" in empty["details"]["feedback"]["notes"]


def test_a_short_window_leaves_late_purchases_unmatched(shop):
    serve_slates(shop, 5, share=1.0)
    import pandas as pd

    wide = feedback(shop, "--data", "events/week-05.csv")
    # the same events in another file (the same content would be recognised and not joined)
    pd.read_csv(shop.path / "events" / "week-05.csv").to_csv(
        shop.path / "events" / "week-05.tsv", index=False, sep="\t")
    narrow = feedback(shop, "--data", "events/week-05.tsv", "feedback.window=1h")
    assert narrow["events"]["unmatched"] > wide["events"]["unmatched"]
    assert narrow["events"]["matched"] + narrow["events"]["unmatched"] == \
        wide["events"]["matched"] + wide["events"]["unmatched"]


def test_drift_figures_in_the_batch_the_report_and_the_policy(shop):
    from conveyor.store import open_store
    from conveyor_monitor.records import Monitoring
    from conveyor_retrain import policy
    from conveyor_retrain.settings import RetrainConfig

    serve_slates(shop, 6)
    out = feedback(shop, "--data", "events/week-06.csv", "recsys.user_features=data/users.csv",
                   "recsys.item_features=data/items.csv", "feedback.popularity_threshold=0.9")
    [batch] = out["batches"]
    drift = batch["details"]["drift"]
    assert 0 < drift["popularity"] < 1
    assert 0 < drift["new_items"] < 1 and 0 < drift["new_users"] < 1  # new arrivals each week
    features = batch["feature_results"]
    assert {"user.segment", "user.price_sensitivity", "item.category", "item.price"} <= \
        set(features)
    assert features["item.price"]["method"] == "psi"
    assert features["user.segment"]["method"] == "chi2"
    assert batch["features"] == len(features)
    report = json.loads((shop.path / batch["report_json"]).read_text())
    assert report["recommender_drift"]["popularity"] == pytest.approx(drift["popularity"])
    html = (shop.path / batch["report_html"]).read_text()
    assert "Recommender drift" in html and "popularity shift" in html
    assert "item.price" in html
    # the retraining policy reads the online metric and the drift figures
    store = open_store(shop.path)
    try:
        batches = Monitoring(store).batches(model_name="shop")
    finally:
        store.close()
    champion = json.loads(shop.cli("models", "list", "--json", check=True).stdout)[0]
    settings = RetrainConfig(when={"metrics": {"hit_rate@10": "< champion - 0.05"}})
    verdict = policy.decide(settings, batches, None,
                            champion_metrics={1: champion["metrics"]})
    online = batch["performance"]["hit_rate@10"]
    assert verdict.retrain == (online < champion["metrics"]["hit_rate@10"] - 0.05)
    assert "metrics.hit_rate@10" in verdict.reasons[0]
    settings = RetrainConfig(when={"drift": {"popularity": "> 0.01", "new_items": "> 0.0"}})
    verdict = policy.decide(settings, batches, None)
    assert verdict.retrain and "drift.popularity" in verdict.reasons[0]


def test_monitor_min_rows_zero_is_taken_as_configured(shop):
    import pandas as pd

    serve_slates(shop, 6)
    events = pd.read_csv(shop.path / "events" / "week-06.csv")
    events.head(60).to_csv(shop.path / "few.csv", index=False)  # fewer than 200 values
    args = ("--data", "few.csv", "recsys.item_features=data/items.csv")
    [batch] = feedback(shop, *args, "monitor.min_rows=0")["batches"]
    price = batch["feature_results"]["item.price"]
    assert price["insufficient"] == "" and price["score"] is not None
    # another file (the same one is recorded once, by content)
    events.head(59).to_csv(shop.path / "few-again.csv", index=False)
    [batch] = feedback(shop, "--data", "few-again.csv", "recsys.item_features=data/items.csv",
                       "monitor.min_rows=100")["batches"]
    assert "monitor.min_rows=100" in batch["feature_results"]["item.price"]["insufficient"]


def test_bad_input_is_a_clear_usage_error(shop):
    import pandas as pd

    no_log = shop.cli("feedback", "--data", "events/week-05.csv")
    assert_usage_error(no_log, "no slate was logged for model 'shop'")
    serve_slates(shop, 5, share=0.1)
    events = pd.read_csv(shop.path / "events" / "week-05.csv")
    events.drop(columns=["item_id"]).to_csv(shop.path / "no-item.csv", index=False)
    assert_usage_error(shop.cli("feedback", "--data", "no-item.csv"),
                       "no-item.csv has no column 'item_id' (recsys.item_column)")
    assert_usage_error(shop.cli("feedback", "--data", "missing.csv"), "missing.csv: no such file")
    assert_usage_error(shop.cli("feedback", "--data", "events/week-05.csv",
                                "feedback.window=soon"), "feedback.window is 'soon'")
    assert_usage_error(shop.cli("feedback", "--data", "events/week-05.csv",
                                "feedback.period=fortnight"), "feedback.period is 'fortnight'")
    assert_usage_error(shop.cli("feedback", "--data", "events/week-05.csv",
                                "feedback.join=request_id"), "no 'request_id' values")
    # the load stage's reader (conveyor_recsys.interactions): no readable time is refused
    events.assign(timestamp="soon").to_csv(shop.path / "no-time.csv", index=False)
    assert_usage_error(shop.cli("feedback", "--data", "no-time.csv"),
                       "column 'timestamp' (recsys.timestamp_column) is a timestamp")
    # feedback.events names events the file cannot tell apart: not every event silently
    events.drop(columns=["event"]).to_csv(shop.path / "no-event.csv", index=False)
    assert_usage_error(shop.cli("feedback", "--data", "no-event.csv",
                                "feedback.events=[purchase]"),
                       "feedback.events", "no event column 'event' (recsys.event_column)")
    # a feature table with a repeated key: refused as training refuses it, naming the setting
    users = pd.read_csv(shop.path / "data" / "users.csv")
    pd.concat([users, users.head(2)]).to_csv(shop.path / "data" / "users-twice.csv",
                                              index=False)
    assert_usage_error(shop.cli("feedback", "--data", "events/week-05.csv",
                                "recsys.user_features=data/users-twice.csv"),
                       "recsys.user_features", "repeats 2 key(s)")
    listed = json.loads(shop.cli("monitor", "--list", "--json", check=True).stdout)
    assert listed == []  # nothing half-recorded


def test_watch_joins_each_feedback_file_once_then_applies_the_policy(shop):
    serve_slates(shop, 5)
    serve_slates(shop, 6)
    config = shop.path / "conveyor.yaml"
    config.write_text(config.read_text() + "retrain:\n  when:\n    drift.popularity: '> 0.99'\n")
    result = shop.cli("watch", "--feedback", "events", "--once", "--json")
    assert result.returncode == 0, result.stderr
    handled = json.loads(result.stdout)
    assert [(h["file"], h["kind"], h["outcome"]) for h in handled] == [
        ("events/week-05.csv", "feedback", "no_action"),
        ("events/week-06.csv", "feedback", "no_action")]
    assert "retrain no_action" in result.stderr
    listed = json.loads(shop.cli("monitor", "--list", "--json", check=True).stdout)
    assert [b["source"] for b in listed] == ["events/week-05.csv", "events/week-06.csv"]
    again = shop.cli("watch", "--feedback", "events", "--once", "--json")
    assert json.loads(again.stdout) == []
    assert_usage_error(shop.cli("watch", "--once"), "--inbox DIR", "--feedback DIR")


# --- end to end: a real `conveyor serve` answers POST /recommend and logs the slates ------------


@pytest.mark.slow
def test_slates_served_over_http_then_joined_with_the_next_week(shop):
    import pandas as pd

    httpx = pytest.importorskip("httpx")
    events = pd.read_csv(shop.path / "events" / "week-05.csv")
    users = sorted(int(u) for u in events["user_id"].unique())[:60]
    answers = []
    started = time.time()
    with serving(shop.path) as url:  # stopped on exit: the slate log flushed
        for user in users:
            reply = httpx.post(f"{url}/recommend", json={"user_id": user, "k": 10}, timeout=30)
            if reply.status_code == 404:
                pytest.skip("this build's service has no POST /recommend yet")
            assert reply.status_code == 200, reply.text
            answers.append(reply.json())
    assert all(len(a["items"]) == 10 and a["items"][0]["position"] == 1 for a in answers)
    # the following week, moved to start a minute before the slates were served (so that the
    # file's first period holds them, whatever the day and time the test runs)
    stamps = pd.to_datetime(events["timestamp"], utc=True)
    shift = pd.Timestamp(started - 60, unit="s", tz="UTC") - stamps.min()
    events["timestamp"] = (stamps + shift).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    events.to_csv(shop.path / "events" / "served-week.csv", index=False)
    result = shop.cli("feedback", "--data", "events/served-week.csv", "feedback.min_rows=5",
                      "--json")
    assert result.returncode in (0, 1), result.stderr
    out = json.loads(result.stdout)
    assert out["join"] == "user_window"
    scored = [b for b in out["batches"] if b["rows"]]
    assert sum(b["rows"] for b in scored) == len(answers)
    assert out["events"]["matched"] > 0 and out["events"]["unmatched"] > 0
    assert any("hit_rate@10" in b["performance"] for b in scored)


@pytest.mark.slow
def test_without_a_change_online_hit_rate_matches_offline_and_with_one_it_drops(tmp_path):
    """The default (every event is feedback) measures what the offline evaluation measured:
    a week like the training weeks scores about the champion's hit rate, a week after the
    season changed scores much lower and shows the popularity shift."""
    from conveyor_recsys.simulate import RetailWorld, simulate

    figures = {}
    for change in (None, 5):
        root = tmp_path / f"change-{change}"
        root.mkdir()
        subprocess.run([conveyor_executable(), "init", "shop", "--template", "recommender"],
                       cwd=root, check=True, capture_output=True)
        project = Project(root / "shop")
        sim = simulate(RetailWorld(users=800, items=200, weeks=5, change_week=change, seed=11))
        sim.weeks(1, 4).drop(columns=["week"]).to_csv(
            project.path / "data" / "interactions.csv", index=False, date_format=STAMP)
        sim.write_weeks(project.path / "events", [5])
        project.run(check=True)
        champion = json.loads(project.cli("models", "list", "--json", check=True).stdout)[0]
        serve_slates(project, 5, share=1.0)
        [batch] = feedback(project, "--data", "events/week-05.csv")["batches"]
        figures[change] = (champion["metrics"]["hit_rate@10"],
                           batch["performance"]["hit_rate@10"],
                           batch["details"]["drift"]["popularity"])
    offline, online, popularity = figures[None]
    assert abs(online - offline) < 0.05, figures
    _, changed, shifted = figures[5]
    assert changed < offline - 0.05 and shifted > popularity + 0.1, figures


def test_conveyor_retrain_reads_the_feedback_batches_and_retrains_on_the_events(shop):
    serve_slates(shop, 5)
    [batch] = feedback(shop, "--data", "events/week-05.csv")["batches"]
    online = batch["performance"]["hit_rate@10"]
    config = shop.path / "conveyor.yaml"
    # a condition the batch breaches whatever its figure: the point is the wiring
    config.write_text(config.read_text() + (
        "retrain:\n  source_key: recsys.source\n  compare: evaluation\n"
        "  when: {metrics.hit_rate@10: '< champion + 0.5'}\n"
        "  window: {include_history: true}\n  min_rows: 100\n"))
    result = shop.cli("retrain", "--json")
    assert result.returncode in (0, 1), result.stderr
    decision = json.loads(result.stdout)
    assert decision["batches"] == [batch["id"]]
    assert decision["reasons"][0].startswith(
        f"batch {batch['id']} breaches: metrics.hit_rate@10 {online:.4g} breaches")
    # the challenger trained on the history and the events file the batch names, once
    assert decision["details"]["window"] == ["data/interactions.csv", "events/week-05.csv"]
    assert decision["outcome"] in ("promoted", "rejected")
