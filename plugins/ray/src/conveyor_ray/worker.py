"""What runs inside the Ray task: one stage type's `run(context)`, in a worker process.

The task gets a `StagePayload`: the run, the stage's settings, and its inputs as references to
the shared artifact store (values only for the outputs no codec stores). It loads the inputs
through the store itself (a local folder shared on one machine, object storage across
machines), runs the stage with its native threads sized to the task's CPUs, and returns a
`StageResult`: the outputs, the log lines and printed output, the metrics, or the stage's
exception. It never writes the project's database: the driver records the run.
"""

from __future__ import annotations

import contextlib
import io
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor import Inputs, RunInfo, Session, StageContext, StageFailed
from conveyor.store import ArtifactRef, ArtifactStore

_sessions: dict[tuple[Any, ...], Session] = {}  # a worker loads plugins once per selection


@dataclass
class StageInput:
    name: str
    producer: str
    ref: dict[str, Any] | None = None  # stored: loaded from the artifact store by the task
    value: Any = None  # not stored (an ephemeral output): passed by Ray's object store


@dataclass
class StagePayload:
    run: RunInfo
    stage: str
    uses: str
    settings: Mapping[str, Any]
    inputs: list[StageInput]
    threads: int
    import_target: Any  # the driver's importer of `_target_` paths (its allowlist with it)
    artifacts_url: str | None = None  # the driver's artifact store; None: the project's folder
    contract: Any = None  # the model contract the driver assembled for the stage (or None)
    contract_error: str | None = None


@dataclass
class StageResult:
    outputs: Mapping[str, Any] | None = None
    lines: list[str] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    error: BaseException | None = None  # the stage's own exception, when it pickles
    error_text: str | None = None  # "Type: message", always set on failure
    error_where: str | None = None  # the innermost frame of the stage's traceback
    node: str = ""
    resources: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def execute(payload: StagePayload) -> StageResult:
    """The Ray task's body. Catches everything: the driver reports it as the stage's own."""
    import ray

    started = time.perf_counter()
    result = StageResult()
    context = ray.get_runtime_context()
    result.node = context.get_node_id()[:8]
    with contextlib.suppress(Exception):
        result.resources = {k: float(v) for k, v in context.get_assigned_resources().items()}
        import ray.util

        result.node = ray.util.get_node_ip_address()
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            result.outputs = _run(payload, result)
    except BaseException as exc:  # the stage's failure goes back as data, not a RayTaskError
        result.error_text = f"{type(exc).__name__}: {exc}"
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            result.error_where = f"{last.filename}:{last.lineno} in {last.name}"
        try:
            from ray import cloudpickle

            cloudpickle.dumps(exc)
            result.error = exc.with_traceback(None)
        except Exception:
            result.error = None
    result.lines += [line for line in printed.getvalue().splitlines() if line.strip()]
    result.seconds = time.perf_counter() - started
    return result


def _run(payload: StagePayload, result: StageResult) -> Any:
    from conveyor.threads import limited

    run = payload.run
    session = _session(run)
    host = session.host
    stage_type = host.stage_types.get(payload.uses)
    if stage_type is None:
        raise StageFailed(f"stage '{payload.stage}' uses '{payload.uses}', which the Ray "
                          "worker's Python does not have installed",
                          hint="install the same plugins on every node of the cluster")
    artifacts = _artifact_store(run.project_dir, payload.artifacts_url)

    def load(ref: Any) -> Any:
        ref = ArtifactRef.from_dict(ref) if isinstance(ref, dict) else ref
        codec = session.codec(ref.codec)
        if codec is None:
            raise StageFailed(f"artifact {ref.sha256[:12]} was written by codec '{ref.codec}', "
                              "which the Ray worker's Python does not have installed")
        return artifacts.load(ref, codec)

    entries: dict[str, tuple[str, Any]] = {}
    refs: dict[str, ArtifactRef] = {}
    for item in payload.inputs:
        if item.ref is not None:
            ref = ArtifactRef.from_dict(item.ref)
            entries[item.name] = (item.producer, lambda r=ref: load(r))
            refs[item.name] = ref
        else:
            entries[item.name] = (item.producer, lambda v=item.value: v)
    importer = payload.import_target

    def validate(frame: Any, purpose: str, schema: str | None) -> Any:
        from conveyor.validation import validate_frame

        config = run.config if schema is None else \
            {**run.config, "data": {**(run.config.get("data") or {}), "schema": schema}}
        return validate_frame(host, frame, config=config, project_dir=run.project_dir,
                              purpose=purpose, import_target=importer)

    def contract() -> Any:
        if payload.contract_error is not None:
            raise StageFailed(payload.contract_error)
        return payload.contract

    context = StageContext(
        name=payload.stage, settings=payload.settings, run=run,
        inputs=Inputs(payload.stage, entries, refs), registry=_DriverOnly(payload.stage),
        load_artifact=load, import_target=importer,
        log_metrics=lambda values: result.metrics.append(
            {str(k): float(v) for k, v in values.items()}),
        log=result.lines.append, validate=validate, contract=contract,
        stage_types=host.stage_types)
    context.threads = payload.threads
    with limited(payload.threads):
        return stage_type.run(context)


def _session(run: RunInfo) -> Session:
    """A session of the run's project with the plugins its config selects, made once per
    worker process."""
    plugins = run.config.get("plugins") or {}
    key = (str(run.project_dir), tuple(plugins.get("disable") or ()),
           tuple(plugins.get("local") or ()))
    if key not in _sessions:
        session = Session(run.project_dir)
        session.use_plugins({"plugins": dict(plugins)}, source="the run's config")
        _sessions[key] = session
    return _sessions[key]


def _artifact_store(project_dir: Path, url: str | None) -> ArtifactStore:
    """The shared artifact store, read without the database (loading needs no row; the task
    stores nothing itself). Local scratch and caches go to the project's `.conveyor/`; object
    storage's credentials come from the worker's environment (AWS_* for s3)."""
    root = Path(project_dir) / ".conveyor"
    return ArtifactStore(root, None, url=url,  # type: ignore[arg-type]
                         origin="store.artifacts of the run's driver")


class _DriverOnly:
    """The model registry in a Ray task: the driver's alone (the task never writes the
    database), so a stage that needs it runs locally."""

    def __init__(self, stage: str) -> None:
        self._stage = stage

    def __getattr__(self, name: str) -> Any:
        raise StageFailed(f"stage '{self._stage}' runs on Ray (ray.stages.{self._stage}) and "
                          f"used the model registry (registry.{name}), which only stages run "
                          "by `conveyor run` itself may use",
                          hint=f"remove '{self._stage}' from ray.stages")
