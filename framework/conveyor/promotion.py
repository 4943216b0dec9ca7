"""Promotion policy: when a registered version becomes its model's champion.

Three ways, one module, whoever calls (`conveyor run`, `conveyor.api`, the retrain plugin):

- `on_gate`: a version that passed its gate is promoted once its run has succeeded, and only
  over the champion it was compared with (compare-and-set: a run that finished meanwhile may
  have promoted another version; then it is not promoted, and the note says what to do).
- `best_of_sweep`: after a sweep, the best job's version (by the primary metric) is promoted
  if it passed its gate and beats the champion on the rows both were scored on.
- `over`: a challenger replaces a given champion (retrain), compare-and-set as well.

Each returns what happened as `Promotion`s (ok, message); callers print them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.gate import ConditionResult, failing, gate_results
from conveyor.metrics import greater_is_better
from conveyor.store.registry import CHAMPION, AliasMoved


@dataclass(frozen=True)
class Promotion:
    """What a promotion rule did with one version: `promoted` or not, and the line saying so."""

    name: str
    version: int
    promoted: bool
    message: str

    def __str__(self) -> str:
        return self.message


def moved_note(name: str, version: int, actual: int | None, expected: int | None) -> str:
    """Why a version that passed its gate was not promoted: the champion moved meanwhile."""
    against = f"v{expected}" if expected is not None else "no champion"
    return (f"not promoted: the champion changed to v{actual} during this run, which compared "
            f"it with {against}; `conveyor models promote {name} {version}` promotes it anyway, "
            f"`conveyor run --force` compares a new one with v{actual}")


def on_gate(registry: Any, name: str, version: int,
            results: Iterable[ConditionResult | str], champion_version: int | None
            ) -> Promotion:
    """Move the champion alias to `version`, which passed its gate, only over the champion it
    was compared with (`champion_version`, None for none)."""
    reasons = [str(r) for r in results]
    try:
        registry.set_alias(name, CHAMPION, version, action="gate", actor="conveyor",
                           reason="passed the gate: " + ("; ".join(reasons) or "no rules"),
                           expect=champion_version)
    except AliasMoved as moved:
        why = moved_note(name, version, moved.actual, champion_version)
        registry.note(name, version, why)
        return Promotion(name, version, False, f"{name} v{version} registered ({why})")
    return Promotion(name, version, True, f"{name} v{version} registered and promoted to "
                                          "champion")


def better(value: float, than: float, metric: str,
           directions: Mapping[str, str] | None = None) -> bool:
    """Is `value` strictly better than `than` on `metric`?"""
    return value > than if greater_is_better(metric, directions) else value < than


def best_of_sweep(registry: Any, run_id: str, primary: str, reason: str) -> list[Promotion]:
    """Promote the best run's versions if they passed their gate and beat the champion on the
    primary metric, as both were scored on the same rows during that run (those the champion
    never trained on); one that could not be compared with the champion is not promoted."""
    done = []
    for version in (v for v in registry.versions() if v.run_id == run_id):
        label = f"{version.name} v{version.version} (best run)"
        # Both on the rows the champion never trained on, when the run could compare them.
        comparison = version.gate.get("comparison") or {}
        champion = (comparison.get("champion") or version.gate.get("champion") or {}).get(primary)
        value = (comparison.get("challenger") or version.metrics).get(primary)
        directions = version.gate.get("directions")
        if version.decision != "passed":
            done.append(Promotion(version.name, version.version, False,
                                  f"{label} did not pass the gate: "
                                  + "; ".join(failing(gate_results(version.gate)))))
        elif comparison.get("unavailable"):
            done.append(Promotion(
                version.name, version.version, False,
                f"{label} not promoted: it could not be compared with champion "
                f"v{comparison.get('champion_version')}: {comparison['unavailable']} "
                f"(`conveyor models promote {version.name} {version.version} --force` "
                "overrides, recorded as forced)"))
        elif champion is not None and value is not None and not better(
                value, champion, primary, directions):
            done.append(Promotion(
                version.name, version.version, False,
                f"{label} not promoted: {primary} {value:.4g} does not beat the champion's "
                f"{champion:.4g} on the same test rows"))
        elif registry.aliases(version.name).get(CHAMPION) != version.version:
            registry.set_alias(version.name, CHAMPION, version.version, action="sweep",
                               actor="conveyor", reason=reason)
            done.append(Promotion(version.name, version.version, True,
                                  f"{version.name} v{version.version} promoted to champion "
                                  f"({reason})"))
    return done


def over(registry: Any, name: str, version: int, champion_version: int | None, *,
         action: str, actor: str, reason: str) -> int | None:
    """Make `version` champion over `champion_version` (compare-and-set: AliasMoved when the
    champion is another by now). Returns the previous champion."""
    return registry.set_alias(name, CHAMPION, version, action=action, actor=actor,
                              reason=reason, expect=champion_version)


__all__ = ["Promotion", "best_of_sweep", "better", "moved_note", "on_gate", "over"]
