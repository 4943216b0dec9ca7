"""The core stage type `conveyor.register`: record the trained model as a new version of the
model in the registry, with its lineage and the gate's decision; make it champion if it passes.

It needs a stage producing `model` (stored) and one producing `metrics`, a JSON mapping
{"overall": {...}, "champion": {...} | None, "slices": {value: {...}}, "slice_column": str}.
The version is recorded with its contract (`conveyor.ModelContract`, `StageContext.contract`):
the schema the data was validated against, target, id column, features, inference path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.contributions import CheckContext, StageType
from conveyor.errors import StageFailed
from conveyor.gate import evaluate_gate, parse_gate
from conveyor.stage_context import StageContext
from conveyor.store.registry import CHAMPION, AliasMoved


@dataclass
class RegisterSettings:
    model_name: str = "model"
    gate: dict[str, str] = field(default_factory=dict)
    slice_gate: dict[str, str] = field(default_factory=dict)
    promote: bool = True


def _check(settings: Mapping[str, Any], ctx: CheckContext) -> None:
    parse_gate(settings["gate"], "evaluate.gate")
    parse_gate(settings["slice_gate"], "evaluate.slices.gate")


def _register(ctx: StageContext) -> Mapping[str, Any]:
    settings = ctx.settings
    model_ref = ctx.inputs.ref("model")
    if model_ref is None:
        raise StageFailed(f"stage '{ctx.name}' needs a stored 'model' input; none of "
                          "the stages it needs produced one")
    evaluation = ctx.inputs["metrics"]
    metrics = evaluation.get("overall", {})
    passed, reasons = evaluate_gate(
        parse_gate(settings["gate"], "evaluate.gate"), metrics, evaluation.get("champion"),
        slice_gate=parse_gate(settings["slice_gate"], "evaluate.slices.gate"),
        slices=evaluation.get("slices"), slice_column=evaluation.get("slice_column"))
    decision = "passed" if passed else "rejected"
    name = settings["model_name"]
    version = ctx.registry.register(
        name=name, run_id=ctx.run.id, stage=ctx.name, artifact=model_ref.as_dict(),
        metrics=metrics, gate={"rules": dict(settings["gate"]), "reasons": reasons,
                               "champion": evaluation.get("champion"),
                               "champion_version": evaluation.get("champion_version")},
        decision=decision, config_hash=ctx.run.config_hash, data=dict(ctx.run.data_versions),
        contract=ctx.contract())
    promoted = passed and settings["promote"]
    if promoted:
        try:
            # Only over the champion this model was compared with: a run that finished
            # meanwhile may have promoted another version.
            ctx.registry.set_alias(name, CHAMPION, version, action="gate", actor="conveyor",
                                   reason="passed the gate: " + ("; ".join(reasons) or "no rules"),
                                   expect=evaluation.get("champion_version"))
        except AliasMoved as moved:
            promoted = False
            reasons.append(f"not promoted: the champion changed to v{moved.actual} during this "
                           f"run; run again to compare with it")
            ctx.registry.note(name, version, reasons[-1])
    if passed:
        message = f"{name} v{version} registered" + (
            " and promoted to champion" if promoted else
            f" ({reasons[-1]})" if settings["promote"] else "")
    else:
        message = f"{name} v{version} registered, not promoted: " + "; ".join(
            r for r in reasons if "misses" in r or "not computed" in r)
    ctx.log(message)
    return {"registration": {"model": name, "version": version, "decision": decision,
                             "promoted": promoted, "reasons": reasons},
            "verdict": {"ok": passed, "message": message}}


REGISTER = StageType(
    name="conveyor.register", run=_register, settings_schema=RegisterSettings, check=_check,
    description="register the model as a new version; promote it if it passes the gate")
