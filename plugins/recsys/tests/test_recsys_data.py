"""The stages' data rules, in process: load's dedupe and ordering, the splits' cutoff, the
unseen users and items they count, and the model file's round trip."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from conveyor_recsys import stages


class Ctx(SimpleNamespace):
    def log_metrics(self, metrics):
        self.metrics.update(metrics)

    def log(self, message):
        self.messages.append(message)


def _ctx(settings, inputs=None, project_dir=None):
    return Ctx(settings=settings, inputs=inputs or {}, project_dir=project_dir, metrics={},
               messages=[], threads=1)


def _load(tmp_path, csv, **extra):
    (tmp_path / "i.csv").write_text(csv)
    settings = {"source": "i.csv", "user_column": "user_id", "item_column": "item_id",
                "timestamp_column": "timestamp", "event_column": "event",
                "weight_column": None, "event_weights": {}, **extra}
    ctx = _ctx(settings, project_dir=tmp_path)
    return stages._load(ctx)["interactions"], ctx


def test_duplicates_are_dropped_and_out_of_order_rows_sorted_and_counted(tmp_path):
    csv = ("user_id,item_id,timestamp,event\n"
           "u1,a,2024-01-03,view\n"
           "u1,a,2024-01-03,view\n"        # exact duplicate: dropped
           "u1,a,2024-01-03,purchase\n"    # same moment, other event: kept
           "u2,b,2024-01-01,view\n"        # earlier than the row before it: out of order
           "u2,c,2024-01-02,view\n"        # still before 01-03: out of order
           ",c,2024-01-04,view\n")         # no user: incomplete
    frame, ctx = _load(tmp_path, csv)
    assert ctx.metrics["duplicates_dropped"] == 1
    assert ctx.metrics["out_of_order"] == 2
    assert ctx.metrics["incomplete_dropped"] == 1
    assert ctx.metrics["interactions"] == 4
    assert frame["timestamp"].is_monotonic_increasing
    assert list(frame["item"]) == ["b", "c", "a", "a"]
    assert "1 duplicate" in ctx.messages[0] and "2 out-of-order" in ctx.messages[0]


def test_event_weights_multiply_the_weight(tmp_path):
    csv = "user_id,item_id,timestamp,event\nu1,a,2024-01-01,view\nu1,b,2024-01-02,purchase\n"
    frame, _ = _load(tmp_path, csv, event_weights={"purchase": 5.0})
    assert list(frame["weight"]) == [1.0, 5.0]


def test_a_missing_column_names_it_and_its_setting(tmp_path):
    import conveyor

    with pytest.raises(conveyor.StageFailed, match=r"'event' \(recsys.event_column\)"):
        _load(tmp_path, "user_id,item_id,timestamp\nu1,a,2024-01-01\n")


def _interactions(seed=0, rows=500):
    import numpy as np

    rng = np.random.default_rng(seed)
    stamps = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.uniform(0, 30 * 86400, rows),
                                                          unit="s")
    frame = pd.DataFrame({"user": rng.integers(0, 40, rows), "item": rng.integers(0, 30, rows),
                          "timestamp": stamps, "event": "view", "weight": 1.0})
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("settings", [{"test_days": 7.0, "test_fraction": 0.2},
                                      {"test_days": None, "test_fraction": 0.35}])
def test_no_interaction_after_the_cutoff_reaches_training(settings):
    frame = _interactions()
    ctx = _ctx({"method": "temporal", **settings}, {"interactions": frame})
    out = stages._split(ctx)
    cutoff = pd.Timestamp(out["split"]["cutoff"])
    assert out["train"]["timestamp"].max() <= cutoff < out["test"]["timestamp"].min()
    assert len(out["train"]) + len(out["test"]) == len(frame)
    if settings["test_days"]:
        assert cutoff == frame["timestamp"].max() - pd.Timedelta(days=7)


def test_leave_last_out_holds_out_each_users_latest_interaction():
    frame = _interactions(seed=1)
    out = stages._split(_ctx({"method": "leave_last_out", "test_days": None,
                              "test_fraction": 0.2}, {"interactions": frame}))
    train, test = out["train"], out["test"]
    assert test["user"].is_unique
    latest = frame.groupby("user")["timestamp"].max()
    for row in test.itertuples():
        assert row.timestamp == latest[row.user]
        assert (train.loc[train["user"] == row.user, "timestamp"] <= row.timestamp).all()


def test_unseen_users_and_items_are_counted_not_dropped():
    frame = pd.DataFrame({
        "user": ["a", "b", "a", "c", "b"], "item": ["x", "y", "z", "x", "w"],
        "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-10",
                                     "2024-01-11", "2024-01-12"]),
        "event": "view", "weight": 1.0})
    ctx = _ctx({"method": "temporal", "test_days": 5.0, "test_fraction": 0.2},
               {"interactions": frame})
    out = stages._split(ctx)
    assert len(out["test"]) == 3                        # nothing dropped
    assert out["split"]["test_users_unseen"] == 1       # c
    assert out["split"]["test_items_unseen"] == 2       # z, w
    assert ctx.metrics["test_rows_unseen_item"] == 2
    assert "1 user(s) and 2 item(s) unseen" in ctx.messages[0]
