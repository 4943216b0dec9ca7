"""What runs inside the Ray task: one stage type's `run(context)`, in a worker process.

The task gets a `StagePayload`: the run, the stage's settings, and its inputs as references to
the shared artifact store (values only for the outputs no codec stores). It loads the inputs
through the store itself (a local folder shared on one machine, object storage across
machines), runs the stage with its native threads sized to the task's CPUs, stores the
stage's outputs there too, and returns a `StageResult`: the outputs' references (values only
for ephemeral outputs), the log lines and printed output, the metrics, or the stage's
exception. It never writes the project's database: the driver records the run and the
artifacts (`conveyor.StoredOutputs`).
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

from conveyor import (
    ConveyorError,
    Inputs,
    RunInfo,
    Session,
    StageContext,
    StageFailed,
    StoreError,
)
from conveyor.store import ArtifactRef, ArtifactStore, codec_for

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
    # The outputs the task stored in the artifact store (references only: small), and those
    # the stage type declares ephemeral (never stored: these travel by Ray's object store).
    stored: dict[str, ArtifactRef] = field(default_factory=dict)
    ephemeral: dict[str, Any] = field(default_factory=dict)
    store_seconds: float = 0.0  # of `seconds`, the time spent storing the outputs
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
            _run(payload, result)
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


def _run(payload: StagePayload, result: StageResult) -> None:
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
        produced = stage_type.run(context)
    produced = {} if produced is None else produced
    if not isinstance(produced, Mapping):
        raise StageFailed(f"stage '{payload.stage}' ({payload.uses}) returned "
                          f"{type(produced).__name__}, not a mapping of outputs")
    _store_outputs(payload, session, artifacts, stage_type, produced, result)


def _store_outputs(payload: StagePayload, session: Session, artifacts: ArtifactStore,
                   stage_type: Any, produced: Mapping[str, Any], result: StageResult) -> None:
    """Store the stage's outputs where the driver reads them (the shared artifact store) and
    keep only their references for the driver, which records them (`conveyor.StoredOutputs`):
    a large output never travels back through Ray's object store. Ephemeral outputs (never
    stored) go back as values."""
    started = time.perf_counter()
    if artifacts is not None and artifacts.fs is None and \
            any(name not in stage_type.ephemeral_outputs for name in produced) and \
            not Path(payload.run.project_dir).is_dir():
        # Writing would create the driver's path on this node, where the driver never looks.
        raise StageFailed(
            f"stage '{payload.stage}' ran on a Ray node without the project folder "
            f"{payload.run.project_dir}, so it cannot store its outputs in the project's "
            f"local artifact store ({artifacts.location})",
            hint="set store.artifacts to storage every node reaches (s3://bucket/prefix), or "
                 "share the project folder at the same path on every node")
    for name, value in produced.items():
        if name in stage_type.ephemeral_outputs:
            result.ephemeral[name] = value
            continue
        codec = codec_for(session.host.codecs, value, stage=payload.stage, output=name)
        try:
            result.stored[name] = artifacts.put(value, codec)
        except ConveyorError:
            raise
        except Exception as exc:
            raise StoreError(f"storing output '{name}' of stage '{payload.stage}' in the Ray "
                             f"task failed: {type(exc).__name__}: {exc}") from None
    result.store_seconds = time.perf_counter() - started


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
    """The shared artifact store, without the database: the task loads its inputs and stores
    its outputs there, and the driver records the artifacts' rows. Object storage's credentials
    come from the worker's environment (AWS_* for s3); local scratch and caches go where
    `scratch_root` says."""
    return ArtifactStore(scratch_root(project_dir, url), None, url=url,
                         origin="store.artifacts of the run's driver")


def scratch_root(project_dir: Path, url: str | None) -> Path:
    """Where a task keeps its scratch files and its cache of remote artifacts: the project's
    `.conveyor/` when the project folder is on this node (the driver's machine, or a shared
    filesystem at the same path); else, with object storage, a node-local folder keyed by the
    project's path, so the driver's path is never created on another machine. (A local
    `store.artifacts` needs the project folder on every node anyway.)"""
    import hashlib
    import tempfile

    project = Path(project_dir)
    remote = bool(url) and "://" in str(url) and not str(url).startswith("file://")
    if project.is_dir() or not remote:
        return project / ".conveyor"
    key = hashlib.sha256(str(project).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "conveyor-ray" / f"{project.name}-{key}" / ".conveyor"


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
