"""The driver's side of a stage on Ray: the task submitted, its result reported as a local
stage's would be (log lines under the stage, metrics recorded by the runner, the stage's own
exception as its failure), its outputs handed to the runner as the references the task stored
(`conveyor.StoredOutputs`), which the runner records without storing them again."""

from __future__ import annotations

import math
from typing import Any

from conveyor import ConveyorError, RunInfo, Stage, StageContext, StageFailed, StoredOutputs

from conveyor_ray.config import RayStageConfig
from conveyor_ray.worker import StageInput, StagePayload, StageResult, execute


def run_on_ray(run: RunInfo, stage: Stage, context: StageContext,
               resources: RayStageConfig, *, forward_env: list[str] = ()) -> StoredOutputs:
    import os

    import ray

    threads = max(1, math.floor(resources.num_cpus)) if resources.num_cpus >= 1 else 1
    payload = _payload(run, stage, context, threads)
    options: dict[str, Any] = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus,
                               "max_retries": 0, "name": f"conveyor:{run.id}:{stage.name}"}
    if resources.memory is not None:
        options["memory"] = resources.memory
    forwarded = {name: os.environ[name] for name in forward_env if name in os.environ}
    if forwarded:
        options["runtime_env"] = {"env_vars": forwarded}
    task = ray.remote(execute).options(**options)
    pending = task.remote(payload)
    try:
        result: StageResult = ray.get(pending)
    except KeyboardInterrupt:
        # Ctrl-C stops the stage on the cluster too: the task would otherwise keep its CPUs
        # (and write its outputs) until it ends, however long after the run gave up.
        ray.cancel(pending, force=True)
        raise
    except ray.exceptions.RayError as exc:  # the worker died (memory, node lost) or Ray broke
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StageFailed(f"stage '{stage.name}' ({stage.uses}) failed on Ray: "
                          f"{type(exc).__name__}: {first}") from None
    shown = ", ".join(f"{k} {v:g}" for k, v in sorted(result.resources.items()))
    stored = f", {result.store_seconds:.2f} s of it storing outputs" if result.stored else ""
    context.log(f"on Ray node {result.node} ({shown or 'no resources'}) · "
                f"{result.seconds:.2f} s in the task{stored}")
    for line in result.lines:
        context.log(line)
    for values in result.metrics:
        context.log_metrics(values)
    if result.error_text is not None:
        if isinstance(result.error, Exception):  # the stage's own, type and message
            raise result.error from None
        where = f" (at {result.error_where})" if result.error_where else ""
        raise StageFailed(f"stage '{stage.name}' ({stage.uses}) failed on Ray: "
                          f"{result.error_text}{where}")
    # The task stored the outputs in the shared artifact store; the runner records them.
    return StoredOutputs(result.stored, ephemeral=result.ephemeral)


def _payload(run: RunInfo, stage: Stage, context: StageContext, threads: int) -> StagePayload:
    inputs = []
    for name in context.inputs:
        ref = context.inputs.ref(name)
        producer = context.inputs.producer(name)
        if ref is not None:
            inputs.append(StageInput(name, producer, ref=ref.as_dict()))
        else:
            inputs.append(StageInput(name, producer, value=context.inputs[name]))
    contract, contract_error = None, None
    try:
        contract = context.contract()
    except ConveyorError as exc:
        contract_error = exc.message
    except Exception as exc:
        contract_error = f"{type(exc).__name__}: {exc}"
    from conveyor.store.location import resolve

    # `store.artifacts` as this command resolved it (command line > environment >
    # conveyor.yaml): the task opens the same artifact store wherever it runs.
    url = resolve(run.project_dir).artifacts
    return StagePayload(run=run, stage=stage.name, uses=stage.uses,
                        settings=_plain(stage.settings), inputs=inputs, threads=threads,
                        import_target=context.import_target,
                        artifacts_url=url if isinstance(url, str) else None,
                        contract=contract, contract_error=contract_error)


def _plain(settings: Any) -> Any:
    """Settings as plain containers (an OmegaConf node pickles, but slowly and heavily)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(settings, DictConfig | ListConfig):
            return OmegaConf.to_container(settings, resolve=True)
    except ImportError:
        pass
    return settings
