"""Contracts as data: the evaluation result evaluate hands register, gate conditions checked as
`ConditionResult`s, the promotion policy in `conveyor.promotion`, and the bugs fixed with them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conveyor import ConfigError, EvaluationResult, StageFailed
from conveyor.gate import ConditionResult, evaluate_gate, failing, gate_results, parse_gate
from conveyor.store import Registry, open_store

# What an evaluate stage stored before EvaluationResult existed (and still stores).
STORED = {
    "overall": {"accuracy": 0.81, "roc_auc": 0.88}, "metrics": ["accuracy", "roc_auc"],
    "rows": 400, "directions": {"accuracy": "higher", "roc_auc": "higher"},
    "champion": {"accuracy": 0.8, "roc_auc": 0.87}, "champion_version": 3,
    "slices": {"north": {"accuracy": 0.9, "roc_auc": 0.91}}, "slice_column": "region",
    "comparison": {"champion_version": 3, "test_rows": 400, "excluded": 150, "rows": 250,
                   "champion": {"accuracy": 0.8, "roc_auc": 0.87},
                   "challenger": {"accuracy": 0.81, "roc_auc": 0.88},
                   "bootstrap": {"accuracy": [0.01, 0.0, 0.02, 0.01],
                                 "roc_auc": [0.01, 0.01, 0.0, 0.02]}}}


def test_an_evaluation_as_stored_today_reads_back_and_writes_the_same():
    result = EvaluationResult.from_dict(STORED, stage="evaluate")
    assert result.overall["accuracy"] == 0.81 and result.champion_version == 3
    assert result.comparison is not None and result.comparison.excluded == 150
    assert result.to_dict() == STORED
    assert set(result.comparison.intervals()) == {"accuracy", "roc_auc"}
    # older stages: no metrics list, no comparison (the champion on the same test set)
    old = EvaluationResult.from_dict({"overall": {"r2": 0.5}, "champion": {"r2": 0.4},
                                      "champion_version": 1})
    assert old.metrics == ("r2",) and old.gate_comparison().champion == {"r2": 0.4}
    unavailable = {**STORED, "comparison": {"champion_version": 3, "test_rows": 400,
                                            "unavailable": "champion v3 cannot be loaded"}}
    assert EvaluationResult.from_dict(unavailable).gate_comparison().unavailable


@pytest.mark.parametrize("bad, says", [
    ({"metrics": ["accuracy"]}, "no 'overall'"),
    ({"overall": {"accuracy": "high"}}, "'overall.accuracy' must be a number"),
    ({"overall": {}, "directions": {"accuracy": "up"}}, "'directions'"),
    ({"overall": {}, "slices": {"north": [1]}}, "'slices.north'"),
    ({"overall": {}, "comparison": {"rows": "many"}}, "'comparison.rows'"),
    ([0.8], "expected a mapping"),
])
def test_a_malformed_evaluation_names_the_stage_that_produced_it(bad, says):
    with pytest.raises(StageFailed) as caught:
        EvaluationResult.from_dict(bad, stage="my_evaluate")
    assert "stage 'my_evaluate' produced a malformed evaluation result" in caught.value.message
    assert says in caught.value.message


def test_condition_results_carry_the_figures_and_render_todays_text():
    gate = parse_gate({"roc_auc": ">= 0.8", "accuracy": "+0.005 at 95%"}, "evaluate.gate")
    comparison = EvaluationResult.from_dict(STORED).gate_comparison()
    _, results = evaluate_gate(gate, STORED["overall"], STORED["champion"],
                               comparison=comparison)
    absolute, relative = results
    assert (absolute.metric, absolute.op, absolute.threshold, absolute.value, absolute.met) == \
        ("roc_auc", ">=", 0.8, 0.88, True)
    assert str(absolute) == absolute.message == "roc_auc 0.88 meets >= 0.8 (>= 0.8)"
    assert relative.relative and relative.level == 0.95 and relative.champion == 0.8
    assert relative.interval is not None and relative.bound == relative.interval["low"]
    assert relative.message.startswith("accuracy difference's lower bound")
    assert failing(results) == [r.message for r in results if not r.met]
    assert ConditionResult.from_dict(relative.to_dict()) == relative


def test_failing_filters_by_met_not_by_words():
    met = ConditionResult("note", None, met=True, message="x misses nothing, it is a note")
    missed = ConditionResult("m", ">=", 1.0, 0.5, met=False, message="m below one")
    assert failing([met, missed]) == ["m below one"]


def test_gate_decisions_stored_as_text_stay_readable():
    old = {"reasons": ["accuracy 0.9 meets >= 0.8 (>= 0.8)",
                       "f1 0.6 misses >= 0.63 (>= champion - 0.02)",
                       "slice region=south: roc_auc 0.6 misses >= 0.7 (>= 0.7)"]}
    results = gate_results(old)
    assert [r.met for r in results] == [True, False, False]
    assert [r.metric for r in results] == ["accuracy", "f1", "roc_auc"]
    assert failing(results) == old["reasons"][1:] == failing(old["reasons"])
    new = {"reasons": ["ignored"], "conditions": [results[1].to_dict()]}
    assert gate_results(new) == [results[1]]


def test_a_relative_slice_condition_is_a_config_error_naming_its_key():
    from conveyor.register_stage import _check

    settings = {"gate": {}, "metrics": ["accuracy"],
                "slice_gate": {"accuracy": ">= champion - 0.01"}}
    with pytest.raises(ConfigError, match=r"evaluate\.slices\.gate\.accuracy"):
        _check(settings, None)
    with pytest.raises(ConfigError, match=r"evaluate\.slices\.gate\.accuracy"):
        _check({**settings, "slice_gate": {"accuracy": "+0.01"}}, None)
    _check({**settings, "slice_gate": {"accuracy": ">= 0.7"}}, None)


def _context(tmp_path, evaluation, pending):
    from conveyor.store import ArtifactRef

    registry = Registry(open_store(tmp_path))
    ref = ArtifactRef.from_dict({"sha256": "0" * 64, "codec": "pickle", "suffix": ".pkl",
                                "size": 1})
    inputs = SimpleNamespace(ref=lambda name: ref if name == "model" else None,
                             producer=lambda name: "evaluate")
    return SimpleNamespace(
        name="register", registry=registry, log=lambda message: None,
        settings={"model_name": "m", "gate": {"accuracy": ">= 0.5"}, "slice_gate": {},
                  "metrics": ["accuracy"], "promote": True},
        inputs=_Inputs(inputs, evaluation),
        run=SimpleNamespace(id="r1", config_hash="h", data_versions={}),
        contract=lambda: None, on_run_success=pending.append)


class _Inputs:
    def __init__(self, base, evaluation):
        self.ref, self.producer, self._evaluation = base.ref, base.producer, evaluation

    def __getitem__(self, name):
        return self._evaluation


def test_registration_does_not_say_promoted_before_the_run_completes(tmp_path):
    from conveyor.register_stage import _register

    pending: list = []
    out = _register(_context(tmp_path, {"overall": {"accuracy": 0.9}}, pending))
    assert out["registration"]["promoted"] is False
    assert out["registration"]["promotion"] == "pending"
    record = Registry(open_store(tmp_path)).get("m", 1)
    assert record.gate["reasons"] == ["accuracy 0.9 meets >= 0.5 (>= 0.5)"]
    assert record.gate["conditions"][0]["met"] is True
    # Deferred in order: the compiled form (conveyor.compiled), then the promotion.
    assert len(pending) == 2 and pending[-1]() == "m v1 registered and promoted to champion"


def test_a_malformed_evaluation_fails_register_naming_the_evaluate_stage(tmp_path):
    from conveyor.register_stage import _register

    with pytest.raises(StageFailed, match="stage 'evaluate' produced a malformed"):
        _register(_context(tmp_path, {"overall": {"accuracy": None}}, []))


def test_a_champion_moved_during_the_run_says_what_happened_and_what_to_do(tmp_path):
    from conveyor import promotion

    registry = Registry(open_store(tmp_path))
    for n in (1, 2):
        registry.register(name="m", run_id=f"r{n}", stage="register", artifact={}, metrics={},
                          gate={"reasons": []}, decision="passed", config_hash="h", data={})
    registry.set_alias("m", "champion", 1, action="gate", reason="first", expect=None)
    done = promotion.on_gate(registry, "m", 2, [], None)
    assert not done.promoted and "run again" not in done.message
    assert "the champion changed to v1" in done.message
    assert "`conveyor models promote m 2`" in done.message
    assert registry.aliases("m") == {"champion": 1}
    assert "conveyor models promote m 2" in registry.get("m", 2).gate["reasons"][-1]


def test_the_best_of_a_sweep_is_promoted_only_if_it_passed_and_beats_the_champion(tmp_path):
    from conveyor import promotion

    registry = Registry(open_store(tmp_path))
    registry.register(name="m", run_id="r1", stage="register", artifact={},
                      metrics={"accuracy": 0.8}, gate={}, decision="passed",
                      config_hash="h", data={})
    registry.set_alias("m", "champion", 1, action="gate", reason="first")
    registry.register(name="m", run_id="r2", stage="register", artifact={},
                      metrics={"accuracy": 0.79}, gate={"champion": {"accuracy": 0.8}},
                      decision="passed", config_hash="h", data={})
    registry.register(name="m", run_id="r3", stage="register", artifact={},
                      metrics={"accuracy": 0.9},
                      gate={"reasons": ["accuracy 0.9 misses >= 0.95 (>= 0.95)"]},
                      decision="rejected", config_hash="h", data={})
    registry.register(name="m", run_id="r4", stage="register", artifact={},
                      metrics={"accuracy": 0.85}, gate={"champion": {"accuracy": 0.8}},
                      decision="passed", config_hash="h", data={})
    [worse] = promotion.best_of_sweep(registry, "r2", "accuracy", "best")
    assert not worse.promoted and "does not beat the champion's 0.8" in worse.message
    [rejected] = promotion.best_of_sweep(registry, "r3", "accuracy", "best")
    assert not rejected.promoted and "misses >= 0.95" in rejected.message
    [best] = promotion.best_of_sweep(registry, "r4", "accuracy", "best of sweep")
    assert best.promoted and best.message == "m v4 promoted to champion (best of sweep)"
    assert registry.aliases("m")["champion"] == 4


def test_retrain_when_reads_a_metrics_direction_from_its_name_not_its_key():
    from conveyor_retrain.policy import breaches, parse_when
    from conveyor_retrain.settings import RetrainConfig

    # neg_log_loss: higher is better (scikit-learn's sign); "metrics.neg_log_loss" once read
    # as a loss, so a margin turned the wrong way.
    conditions = parse_when(RetrainConfig(when={"metrics": {"neg_log_loss": "-0.05"}}))
    batch = SimpleNamespace(performance={"neg_log_loss": -0.40}, model_version=1)
    hit, notes = breaches(batch, conditions, "any", {1: {"neg_log_loss": -0.30}})
    assert ">= -0.35" in notes[0] and "metrics.neg_log_loss -0.4" in notes[0]
    assert not hit  # -0.40 is worse than -0.35: the batch is not "at least as good"
