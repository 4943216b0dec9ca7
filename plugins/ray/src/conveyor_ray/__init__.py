"""conveyor-ray: chosen stages run as Ray tasks; sweeps run on a Ray cluster.

A stage named under `ray.stages` (`conveyor_ray.config`) runs through this plugin's
`conveyor_run_stage`: its stage type's `run(context)` executes in a Ray task with the
resources given there, on the cluster at `ray.address`, its inputs loaded from and its outputs
stored in the shared artifact store (`conveyor_ray.worker`), the outputs' references, log
lines, metrics and failure reported back to the driver, which records the run as for a local
stage (`conveyor_ray.driver`, through `conveyor.StoredOutputs`).
`conveyor run --multirun hydra/launcher=ray_cluster` runs each sweep job on the cluster
(hydra-ray-launcher; see the README), after checking the cluster answers (`conveyor_ray.sweep`).
`conveyor_ray.testing.ray_head` starts a local cluster.

Hooks: `conveyor_config_schemas` (the `ray` section), `conveyor_config_dirs` (the
`hydra/launcher=ray_cluster` preset), `conveyor_target_prefixes` (the preset's Hydra callback,
`conveyor_ray.sweep.CheckClusterAddress`, by its exact path, which lets the core's check of
`hydra.callbacks` accept it when conveyor.yaml's defaults choose the preset),
`conveyor_run_stage` (for the first stage a run executes, whichever it is, it checks
`ray.stages` and connects, so a bad `ray.address` stops the run before any stage runs, exit 2;
then it runs the stages named there). Ray itself is
imported only when a run uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import conveyor
from conveyor import RunInfo, Stage, StageContext

from conveyor_ray.config import RayConfig, address_origin, check_stages, ray_config

CHECK_CALLBACK = "conveyor_ray.sweep.CheckClusterAddress"

SCHEMA = conveyor.ConfigSchema(section="ray", schema=RayConfig)


@conveyor.hookimpl
def conveyor_config_dirs(register: Callable[[Path], None]) -> None:
    register(Path(__file__).parent / "conf")  # hydra/launcher=ray_cluster


@conveyor.hookimpl
def conveyor_target_prefixes(register: Callable[[str], None]) -> None:
    # The preset's Hydra callback (hydra.callbacks), allowed by its exact class path: so the
    # preset may also be chosen in conveyor.yaml's defaults, which the core's check reads.
    register(CHECK_CALLBACK)


@conveyor.hookimpl
def conveyor_config_schemas(register: Callable[[conveyor.ConfigSchema], None]) -> None:
    register(SCHEMA)


_checked_runs: set[str] = set()
# The commands whose pipeline is the project's own: there, a stage named under `ray.stages`
# that the pipeline lacks is a mistake (a typo) to refuse. Other commands (`predict`, say) run
# a pipeline of their own, which does not have the project's stages: for them, the names they
# lack are not theirs, and a command with none of them runs without Ray at all.
PROJECT_PIPELINE_COMMANDS = ("run", "retrain", "reproduce")


@conveyor.hookimpl
def conveyor_run_stage(run: RunInfo, stage: Stage, context: StageContext
                       ) -> Mapping[str, Any] | None:
    settings = ray_config(run.config)
    pipeline = run.config.get("pipeline") or {}
    if run.command not in PROJECT_PIPELINE_COMMANDS:
        settings = replace(settings, stages={name: resources for name, resources
                                             in settings.stages.items() if name in pipeline})
    if not settings.stages:
        return None
    if run.id not in _checked_runs:
        # Here rather than in conveyor_before_run: an error of this unguarded hook keeps its
        # exit code (2, the user's config), and no stage has run yet.
        check_stages(settings, pipeline)
        from conveyor_ray.cluster import connect

        connect(settings.address, origin=address_origin(run.overrides, settings.address))
        _checked_runs.add(run.id)
    resources = settings.stages.get(stage.name)
    if resources is None:
        return None
    from conveyor_ray.driver import run_on_ray

    return run_on_ray(run, stage, context, resources, forward_env=settings.forward_env)
