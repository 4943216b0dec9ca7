"""The retraining policy's decision on monitored batches (conveyor-retrain's `policy`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from conveyor import ConfigError
from conveyor_retrain.policy import Change, decide, parse_when
from conveyor_retrain.settings import RetrainConfig, WindowConfig, settings_from


@dataclass
class Batch:
    id: str
    created_at: float
    status: str = "ok"
    drift_share: float | None = 0.0
    drifted_features: int = 0
    prediction_drift: float | None = 0.0
    performance: dict = field(default_factory=dict)
    model_version: int = 1
    labelled_rows: int = 100
    details: dict = field(default_factory=dict)


def batches(*specs):
    return [Batch(f"b{i}", float(i), **spec) for i, spec in enumerate(specs)]


POLICY = RetrainConfig(when={"drift.share": "> 0.3", "metrics": {"accuracy": "< 0.7"}})


def test_any_condition_triggers_and_the_reasons_say_which():
    verdict = decide(POLICY, batches({"drift_share": 0.1, "performance": {"accuracy": 0.65}}),
                     None)
    assert verdict.retrain and verdict.considered == ["b0"]
    assert "accuracy 0.65 breaches < 0.7" in verdict.reasons[0]


def test_all_needs_every_condition_and_missing_labels_do_not_count():
    policy = RetrainConfig(when=POLICY.when, mode="all")
    assert not decide(policy, batches({"drift_share": 0.5}), None).retrain  # no accuracy
    both = batches({"drift_share": 0.5, "performance": {"accuracy": 0.6}})
    assert decide(policy, both, None).retrain


def test_data_quality_figures_of_a_batch_can_trigger_a_retrain():
    policy = RetrainConfig(when={"quality": {"unexpected_share": "> 0.2"},
                                 "quality.invalid_share": "> 0.1"})
    assert set(parse_when(policy)) == {"quality.unexpected_share", "quality.invalid_share"}
    calm = batches({"details": {"quality": {"unexpected_share": 0.05, "invalid_share": 0.0}}})
    assert not decide(policy, calm, None).retrain
    odd = batches({"details": {"quality": {"unexpected_share": 0.35, "invalid_share": 0.0}}})
    verdict = decide(policy, odd, None)
    assert verdict.retrain and "quality.unexpected_share 0.35 breaches > 0.2" in \
        verdict.reasons[0]
    unmeasured = decide(policy, batches({}), None)  # a batch recorded before the figures
    assert not unmeasured.retrain and "not measured" in unmeasured.reasons[0]


def test_consecutive_breaches_skip_invalid_batches_and_restart_after_a_retrain():
    policy = RetrainConfig(when={"drift.share": "> 0.3"}, consecutive=2)
    seen = batches({"drift_share": 0.5}, {"status": "invalid", "drift_share": None},
                   {"drift_share": 0.6})
    assert decide(policy, seen, None).retrain  # the invalid batch neither breaks nor counts
    assert not decide(policy, seen, last_retrain_at=0.5).retrain  # only b2 since the retrain
    calm = batches({"drift_share": 0.5}, {"drift_share": 0.1})
    assert not decide(policy, calm, None).retrain


def test_cooldown_counts_batches_since_the_last_retrain():
    policy = RetrainConfig(when={"drift.share": "> 0.3"}, cooldown=2)
    seen = batches({"drift_share": 0.5}, {"drift_share": 0.5}, {"drift_share": 0.5})
    verdict = decide(policy, seen, last_retrain_at=1.5)
    assert not verdict.retrain and "cooldown: 1 of 2" in verdict.reasons[0]
    assert decide(policy, seen, last_retrain_at=0.5).retrain


def test_an_empty_policy_never_triggers():
    assert not decide(RetrainConfig(), batches({"drift_share": 1.0}), None).retrain


@pytest.mark.parametrize("when, message", [
    ({"drift.shares": "> 0.3"}, "not a quantity monitoring measures"),
    ({"drift.share": ">= champion - 0.1"}, "compares with the champion"),
    ({"drift.share": "> 0.3"}, "window.since must be one of"),
    ({"drift.share": "big"}, "cannot read the condition"),
])
def test_bad_policies_are_config_errors_naming_the_key(when, message):
    since = "sometime" if "window.since" in message else "last"
    with pytest.raises(ConfigError, match=message):
        parse_when(RetrainConfig(when=when, window=WindowConfig(since=since)))


def test_refresh_needs_a_window_since_the_change():
    with pytest.raises(ConfigError, match=r"refresh needs retrain\.window\.since: change"):
        parse_when(RetrainConfig(when={"drift.share": "> 0.3"}, refresh=True))


def test_a_metric_condition_relative_to_the_champion_uses_its_validation_score():
    policy = RetrainConfig(when={"metrics.roc_auc": "< champion - 0.05"})
    seen = batches({"performance": {"roc_auc": 0.70}, "model_version": 1},
                   {"performance": {"roc_auc": 0.70}, "model_version": 2})
    scores = {1: {"roc_auc": 0.80}, 2: {"roc_auc": 0.72}}
    # b1 was checked against v2 (0.72): 0.70 is within 0.05 of it
    assert not decide(policy, seen, None, champion_metrics=scores).retrain
    verdict = decide(policy, seen[:1], None, champion_metrics=scores)
    assert verdict.retrain and "breaches < 0.75" in verdict.reasons[0]
    assert verdict.change == Change("b0", 0.0)
    unknown = decide(policy, seen[:1], None, champion_metrics={})
    assert not unknown.retrain and "recorded no validation score" in unknown.reasons[0]


def test_refresh_retrains_on_each_labelled_batch_after_a_change_until_max_batches():
    policy = RetrainConfig(when={"drift.share": "> 0.3"}, refresh=True, cooldown=1,
                           window=WindowConfig(since="change", max_batches=3))
    seen = batches({"drift_share": 0.5}, {"drift_share": 0.1}, {"drift_share": 0.1},
                   {"drift_share": 0.1})
    change = Change("b0", 0.0)
    assert not decide(policy, seen[:2], 0.5).retrain  # no change known: nothing to refresh
    verdict = decide(policy, seen[:2], 0.5, change=change)
    assert verdict.retrain and verdict.refresh and verdict.change == change
    assert verdict.considered == ["b1"] and "refresh: 1 labelled batch" in verdict.reasons[-1]
    unlabelled = batches({"drift_share": 0.5}, {"drift_share": 0.1, "labelled_rows": 0})
    assert not decide(policy, unlabelled, 0.5, change=change).retrain
    late = decide(policy, seen, 2.5, change=change)  # 4 batches since the change > 3
    assert not late.retrain and "beyond retrain.window.max_batches (3)" in late.reasons[-1]


def test_settings_default_the_model_name_to_the_registry_name():
    settings = settings_from({"project": "p", "registry": {"model_name": "m"},
                              "retrain": {"window": {"batches": 3}}})
    assert settings.model_name == "m" and settings.window.batches == 3
