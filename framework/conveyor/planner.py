"""From the `pipeline:` mapping to an ordered, checked list of stages."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from conveyor.contributions import Contributions, StageType
from conveyor.errors import ConfigError
from conveyor.host import PluginInfo
from conveyor.plugins import provider_hint, switched_off_provider
from conveyor.stage_context import Stage
from conveyor.threads import parse_threads

# `threads` sizes the stage's native thread pools (conveyor.threads): how it runs, not what it
# computes, so it stays out of the settings and the fingerprint.
RESERVED = ("uses", "needs", "threads")


#: A planned stage is the public `conveyor.Stage` the lifecycle hooks receive.
PlannedStage = Stage


def make_plan(pipeline: dict[str, Any], found: Contributions,
              switched_off: Sequence[PluginInfo] = ()) -> list[PlannedStage]:
    """The pipeline's stages in running order, each with its stage type and typed settings.
    `switched_off` (the plugins `plugins.disable` names) lets an unknown stage type name the
    plugin it belongs to."""
    if not pipeline:
        raise ConfigError("the pipeline is empty: there is nothing to run",
                          hint="add a preset to the defaults list (`- pipeline: train`) or "
                               "define stages under `pipeline:`")
    specs: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {}
    threads: dict[str, str | int | None] = {}
    for name, spec in pipeline.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("uses"), str):
            raise ConfigError(f"pipeline.{name} must be a mapping with a 'uses: STAGE_TYPE' entry")
        needs = spec.get("needs") or ()
        needs = (needs,) if isinstance(needs, str) else tuple(needs)
        settings = {k: v for k, v in spec.items() if k not in RESERVED}
        specs[name] = (spec["uses"], needs, settings)
        threads[name] = parse_threads(spec.get("threads"), f"pipeline.{name}.threads")

    for name, (_, needs, _) in specs.items():
        for need in needs:
            if need not in specs:
                close = difflib.get_close_matches(need, list(specs), n=1)
                raise ConfigError(
                    f"stage '{name}' needs '{need}', which is not a stage of the pipeline "
                    f"(pipeline.{name}.needs)"
                    + (f"; did you mean '{close[0]}'?" if close else ""),
                    hint="stages: " + ", ".join(specs))

    order = _topological(specs)
    plan = []
    for position, name in enumerate(order):
        uses, needs, settings = specs[name]
        stage_type = _stage_type(name, uses, found, switched_off)
        settings = _typed_settings(name, stage_type, settings)
        plan.append(PlannedStage(name, uses, needs, settings, stage_type, position,
                                 threads[name]))
    return plan


def _topological(specs: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]]) -> list[str]:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    order: list[str] = []

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name):], name]
            raise ConfigError("the pipeline has a cycle: " + " -> ".join(cycle),
                              hint="remove one of these `needs:` entries")
        state[name] = 1
        for need in specs[name][1]:
            visit(need, [*path, name])
        state[name] = 2
        order.append(name)

    for name in specs:
        visit(name, [])
    return order


def _stage_type(stage: str, uses: str, found: Contributions,
                switched_off: Sequence[PluginInfo] = ()) -> StageType:
    if uses in found.stage_types:
        return found.stage_types[uses]
    available = ", ".join(sorted(found.stage_types)) or "none"
    provider = provider_hint(uses)
    if provider:
        hint = f"'{uses}' is provided by {provider}: pip install {provider}"
    elif "." in uses:
        hint = (f"'{uses}' belongs to a plugin named '{uses.split('.', 1)[0]}' (a stage type "
                "starts with its plugin's name), which is not loaded: is it installed? see "
                "`conveyor plugins list`")
    else:
        hint = "is the plugin that provides it installed? see `conveyor plugins list`"
    close = difflib.get_close_matches(uses, list(found.stage_types), n=1)
    if close:
        hint = f"did you mean '{close[0]}'?"
    # A plugin's stage types carry its name as their prefix: one switched off is named.
    off = switched_off_provider(uses, switched_off)
    if off is not None:
        hint = (f"'{uses}' is provided by plugin '{off.name}' ({off.distribution}), which "
                "plugins.disable switches off")
    raise ConfigError(f"stage '{stage}' uses unknown stage type '{uses}' (pipeline.{stage}.uses); "
                      f"available stage types: {available}", hint=hint)


def _typed_settings(stage: str, stage_type: StageType, settings: dict[str, Any]) -> dict[str, Any]:
    if stage_type.settings_schema is None:
        return settings
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(stage_type.settings_schema),
                                 OmegaConf.create(settings))
        return OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    except ConfigKeyError as exc:
        key = f"pipeline.{stage}.{exc.full_key}"
        from dataclasses import fields

        valid = [f.name for f in fields(stage_type.settings_schema)]
        close = difflib.get_close_matches(str(exc.key), valid, n=1)
        raise ConfigError(f"unknown setting '{key}' for stage type '{stage_type.name}'"
                          + (f"; did you mean '{close[0]}'?" if close else ""),
                          hint="its settings: " + ", ".join(valid)) from exc
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid setting in pipeline.{stage}: "
                          f"{str(exc).splitlines()[0]}") from exc
