"""The core stage type `conveyor.register`: record the trained model as a new version of the
model in the registry, with its lineage and the gate's decision; make it champion if it passes.

It needs a stage producing `model` (stored) and one producing `metrics`, a JSON mapping
{"overall": {...}, "champion": {...} | None, "champion_version": int | None,
 "directions": {metric: "higher" | "lower"}, "slices": {value: {...}}, "slice_column": str,
 "comparison": {"champion_version", "rows", "test_rows", "excluded", "champion": {...},
                "challenger": {...}, "bootstrap": {metric: [differences]}, "unavailable": str}}
where `comparison` scores champion and challenger on the same rows (those the champion never
trained on) and `unavailable` says why they could not be compared: relative conditions then
fail closed. A stored `training_rows` input (a frame with a `fingerprint` column, one per
training row) is kept with the version, so later comparisons leave those rows out.
The version is recorded with its contract (`conveyor.ModelContract`, `StageContext.contract`):
the schema the data was validated against, target, id column, features, inference path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.contributions import CheckContext, StageType
from conveyor.errors import StageFailed, UsageError
from conveyor.gate import Comparison, evaluate_gate, failing, parse_gate, shortfall_after
from conveyor.stage_context import StageContext
from conveyor.store.registry import CHAMPION, AliasMoved


@dataclass
class RegisterSettings:
    model_name: str = "model"
    gate: dict[str, str] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=list)  # evaluate.metrics: what the gate may name
    slice_gate: dict[str, str] = field(default_factory=dict)
    promote: bool = True


def _check(settings: Mapping[str, Any], ctx: CheckContext) -> None:
    parse_gate(settings["gate"], "evaluate.gate", known=settings.get("metrics"))
    parse_gate(settings["slice_gate"], "evaluate.slices.gate", known=settings.get("metrics"))


def _register(ctx: StageContext) -> Mapping[str, Any]:
    settings = ctx.settings
    name = settings["model_name"]
    model_ref = ctx.inputs.ref("model")
    if model_ref is None:
        raise StageFailed(f"stage '{ctx.name}' needs a stored 'model' input; none of "
                          "the stages it needs produced one")
    evaluation = ctx.inputs["metrics"]
    metrics = evaluation.get("overall", {})
    directions = evaluation.get("directions") or {}
    champion_version = evaluation.get("champion_version")
    shortfall: dict[str, float] = {}
    if champion_version is not None:
        try:
            shortfall = ctx.registry.get(name, champion_version).gate.get("shortfall") or {}
        except UsageError:
            shortfall = {}
    comparison = Comparison.from_evaluation(evaluation, shortfall)
    passed, reasons = evaluate_gate(
        parse_gate(settings["gate"], "evaluate.gate"), metrics, evaluation.get("champion"),
        slice_gate=parse_gate(settings["slice_gate"], "evaluate.slices.gate"),
        slices=evaluation.get("slices"), slice_column=evaluation.get("slice_column"),
        directions=directions, comparison=comparison)
    decision = "passed" if passed else "rejected"
    record: dict[str, Any] = {
        "rules": dict(settings["gate"]), "reasons": reasons,
        "champion": evaluation.get("champion"), "champion_version": champion_version,
        "directions": directions, "comparison": summarise(comparison, evaluation),
        "shortfall": shortfall_after(comparison, directions)}
    training_rows = ctx.inputs.ref("training_rows")
    if training_rows is not None:
        record["training_rows"] = training_rows.as_dict()
    version = ctx.registry.register(
        name=name, run_id=ctx.run.id, stage=ctx.name, artifact=model_ref.as_dict(),
        metrics=metrics, gate=record, decision=decision, config_hash=ctx.run.config_hash,
        data=dict(ctx.run.data_versions), contract=ctx.contract())
    promoted = passed and settings["promote"]
    if promoted:
        # Promotion waits for the whole run: a stage after this one, or a plugin's
        # conveyor_finish_run, that fails the run must leave the champion as it was.
        ctx.on_run_success(lambda: _promote(ctx.registry, name, version, reasons,
                                            champion_version))
    if passed:
        message = f"{name} v{version} registered" + (
            ", to be promoted to champion once the run completes" if promoted else "")
    else:
        message = f"{name} v{version} registered, not promoted: " + "; ".join(failing(reasons))
    ctx.log(message)
    return {"registration": {"model": name, "version": version, "decision": decision,
                             "promoted": promoted, "reasons": reasons},
            "verdict": {"ok": passed, "message": message, "model": name, "version": version}}


def _promote(registry: Any, name: str, version: int, reasons: list[str],
             champion_version: int | None) -> str:
    """Move the champion alias to `version`, only over the champion it was compared with (a
    run that finished meanwhile may have promoted another version). Returns the verdict."""
    try:
        registry.set_alias(name, CHAMPION, version, action="gate", actor="conveyor",
                           reason="passed the gate: " + ("; ".join(reasons) or "no rules"),
                           expect=champion_version)
    except AliasMoved as moved:
        why = (f"not promoted: the champion changed to v{moved.actual} during this run; run "
               "again to compare with it")
        registry.note(name, version, why)
        return f"{name} v{version} registered ({why})"
    return f"{name} v{version} registered and promoted to champion"


def summarise(comparison: Comparison | None, evaluation: Mapping[str, Any]
              ) -> dict[str, Any] | None:
    """What the registry keeps of a comparison: the rows, both models' scores, and the paired
    difference with its 95% interval per metric (the bootstrap itself is not kept)."""
    if comparison is None:
        return None
    section = evaluation.get("comparison") or {}
    summary: dict[str, Any] = {
        "champion_version": comparison.version, "rows": comparison.rows,
        "test_rows": section.get("test_rows"), "excluded": section.get("excluded"),
        "champion": dict(comparison.champion), "challenger": dict(comparison.challenger),
        "unavailable": comparison.unavailable, "intervals": {}}
    for metric in comparison.champion:
        interval = comparison.interval(metric, 0.95)
        if interval is not None:
            summary["intervals"][metric] = interval
    return summary


def replayed(registry: Any, verdict: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """A cached register stage's verdict, told as the registry is now: the version it
    registered back then, and who is champion today (not the old run's message)."""
    name, version = verdict["model"], verdict["version"]
    try:
        record = registry.get(name, version)
    except UsageError:
        return {**verdict, "message": f"nothing changed since run {run_id}, whose {name} "
                                      f"v{version} is no longer in the registry"}
    champion = registry.aliases(name).get(CHAMPION)
    status = ("is the champion" if champion == version else
              f"is not the champion (v{champion} is)" if champion is not None else
              "is not the champion (there is none)")
    gate = "passed" if record.decision == "passed" else "was rejected by"
    return {**verdict, "message": f"nothing changed since run {run_id}: {name} v{version} "
                                  f"(registered then; it {gate} the gate) {status}"}


REGISTER = StageType(
    name="conveyor.register", run=_register, settings_schema=RegisterSettings, check=_check,
    description="register the model as a new version; promote it if it passes the gate")
