"""Executing a plan: cache decisions, stage hooks, artifacts and the run record."""

from __future__ import annotations

import contextlib
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor import collection
from conveyor.cache import Decision, decide, file_sha256, input_path
from conveyor.config import ProjectConfig, flatten
from conveyor.errors import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    ConveyorError,
    PluginError,
    StageFailed,
    StoreError,
)
from conveyor.lineage import git_state, package_versions
from conveyor.planner import PlannedStage, make_plan
from conveyor.plugins import PluginHost
from conveyor.progress import StageDisplay
from conveyor.stage_context import Inputs, RunInfo, StageContext, StoredOutputs
from conveyor.store import ArtifactRef, Registry, Store, codec_for, open_store
from conveyor.store.runs import Runs
from conveyor.stored import LoadedOnRead, answering_plugin, check_not_unwrapped, check_refs
from conveyor.targets import TargetImporter, project_importer
from conveyor.threads import choose as choose_threads
from conveyor.threads import limited as limited_threads
from conveyor.threads import meter as core_meter
from conveyor.threads import parse_threads
from conveyor.validation import check_schema, validate_frame
from conveyor.writer import OutputWriter


@dataclass
class RunResult:
    run_id: str
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def importer_for(config: ProjectConfig, host: PluginHost) -> TargetImporter:
    return project_importer(config.project_dir, host.contributions.target_prefixes,
                            config.get("security.allowed_targets", []))


class Runner:
    def __init__(self, host: PluginHost, config: ProjectConfig, *, display: StageDisplay,
                 force: bool = False, command: str = "run", invocation: str | None = None,
                 session: Any = None) -> None:
        self.host = host
        # The invocation's Session, handed to stages (StageContext.session); None for a bare host.
        self.session = session
        # The command's id when it runs several jobs (`conveyor run --multirun`); None else.
        self.invocation = invocation
        self.config = config
        self.display = display
        self.force = force
        self.command = command
        self.found = host.contributions
        self.codecs = {c.name: c for c in self.found.codecs}
        self.run_id: str | None = None  # set once the run is recorded, also when it then fails
        self.writer = OutputWriter()
        self._warm_codecs: list[Any] = []
        self.threads: str | int | None = None  # runner.threads, read by plan()

    def plan(self) -> tuple[list[PlannedStage], list[Decision], Store]:
        core_meter().prime()  # the window the first stage's free cores are measured over
        self.threads = parse_threads(self.config.get("runner.threads", "auto"), "runner.threads")
        plan = make_plan(self.config.data.get("pipeline") or {}, self.found,
                         self.host.disabled)
        store = open_store(self.config.project_dir, self.found.store_tables)
        decisions = decide(plan, store, self.config.project_dir, force=self.force,
                           file_version=lambda path: self.fingerprint(store, path))
        return plan, decisions, store

    def fingerprint(self, store: Store, path: Path) -> str:
        """A data file's version: the first plugin answering `conveyor_file_fingerprint`
        (e.g. DVC's md5), else the core's cached sha256."""
        digest, plugin = self.host.call_first("conveyor_file_fingerprint", path=path,
                                              project_dir=self.config.project_dir,
                                              verify=self.force)
        if digest is None:
            return file_sha256(store, path, verify=self.force)
        if not isinstance(digest, str) or not digest.strip():
            raise PluginError(f"plugin {self.host.describe(plugin or '?')} returned {digest!r} "
                              f"from conveyor_file_fingerprint for {path}; expected a digest "
                              "such as 'md5:3f2a...'")
        return digest

    def run(self) -> RunResult:
        plan, decisions, store = self.plan()
        self._plan = {stage.name: stage for stage in plan}
        # Only the codecs of plugins whose stage types run here are worth warming up: a project
        # without scikit-learn stages should not import skops behind the user's back.
        running = {self.found.provider.get(f"stage:{d.stage.uses}") for d in decisions
                   if d.runs}
        self._warm_codecs = [c for c in self.found.codecs
                             if self.found.provider.get(f"codec:{c.name}") in running]
        importer = importer_for(self.config, self.host)
        self._check(decisions, importer)
        collection.resume()  # the stage types' imports are done; the stages' own work is next
        store.mark_interrupted()
        store.artifacts.sweep_tmp()
        data_versions = {name: digest for d in decisions for name, digest in d.files.items()}
        commit, dirty = git_state(self.config.project_dir)
        run = RunInfo(new_run_id(), str(self.config.data.get("project")), self.config.project_dir,
                      self.config.data, self.config.hash, data_versions, command=self.command,
                      overrides=tuple(self._redactor().overrides(self.config.overrides)),
                      git_commit=commit, git_dirty=dirty)
        self._open_run(store, run)
        self.run_id = run.id
        from conveyor.store.heartbeat import Heartbeat

        heartbeat = Heartbeat(store, run.id, store.location.heartbeat_seconds).start()
        self.display.header(f"run {run.id} · {run.project} · {len(plan)} stages")
        outputs: dict[str, dict[str, tuple[Any, ArtifactRef | None]]] = {}
        metrics: dict[str, float] = {}
        verdicts: list[dict[str, Any]] = []
        previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt) \
            if _main_thread() else None
        status, error, exit_code = "completed", None, None
        self._on_success: list[tuple[str, Callable[[], str | None]]] = []
        try:
            self.host.call_each("conveyor_before_run", run=run, config=self.config.data)
            for decision in decisions:
                self.writer.raise_failures()
                metrics.update(self._stage(store, run, decision, outputs, importer))
                verdict = self._verdict(store, outputs[decision.stage.name])
                if verdict is not None and not decision.runs and "model" in verdict:
                    # A reused registration: tell the registry as it is now.
                    from conveyor.register_stage import replayed

                    verdict = replayed(Registry(store), verdict,
                                       decision.cached_from.run_id)
                if verdict is not None:
                    verdicts.append({**verdict, "stage": decision.stage.name})
            self.writer.drain()
            # Everything that can still fail the run comes before its effects on others.
            self.host.call_each("conveyor_finish_run", run=run)
            self._succeeded(verdicts)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ConveyorError) \
                else exc.message
            if isinstance(exc, PluginError):
                # A hook broke a run that had started: the run failed (1), not the set-up (2).
                exc.exit_code = EXIT_FAILED
            exit_code = (EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else
                         exc.exit_code if isinstance(exc, ConveyorError) else EXIT_INTERNAL)
            raise
        finally:
            heartbeat.stop()
            if status != "completed":
                # Record what did complete, so the next run resumes from there.
                with contextlib.suppress(BaseException):  # the run's own error is the one to report
                    self.writer.drain()
            if status != "completed" and self._on_success:
                # A stage whose effects waited for this run's success must run again next
                # time, rather than be reused from the cache without them.
                self._unsettle(store, run, [name for name, _ in self._on_success])
            # The status is final now: every plugin is told the truth, and nothing an after-run
            # hook does can change it (its error is a warning naming the plugin).
            cleanup_errors = self.host.call_each("conveyor_after_run", run=run,
                                                 status=status)
            for problem in cleanup_errors:
                print(f"warning: {problem}", file=sys.stderr)
            if exit_code is None:
                exit_code = (EXIT_FAILED if status != "completed"
                             or not all(v.get("ok") for v in verdicts) else 0)
            self._close_run(store, run, status, error, exit_code)
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)
            self.display.close()
        return RunResult(run.id, status, metrics, verdicts)

    def _unsettle(self, store: Store, run: RunInfo, stages: list[str]) -> None:
        with contextlib.suppress(BaseException):
            Runs(store).unsettle(run.id, stages)

    def _succeeded(self, verdicts: list[dict[str, Any]]) -> None:
        """Every stage and `conveyor_finish_run` succeeded: do what the stages deferred to this
        point (`StageContext.on_run_success`), in stage order."""
        while self._on_success:
            stage_name, action = self._on_success[0]
            message = action()
            # Done: should a later action fail, only the stages still waiting are unsettled.
            self._on_success.pop(0)
            if message is None:
                continue
            self.display.log(stage_name, message)
            for verdict in verdicts:
                if verdict.get("stage") == stage_name:
                    verdict["message"] = message

    def _verdict(self, store: Store, produced: dict[str, tuple[Any, ArtifactRef | None]]
                 ) -> dict[str, Any] | None:
        """A stage's `verdict` output ({"ok": bool, "message": str}): a gate or policy saying
        yes or no, reported by the CLI (and replayed when the stage is cached)."""
        if "verdict" not in produced:
            return None
        value, ref = produced["verdict"]
        if value is None and ref is not None:
            value = self._load(store, _resolve(ref, "verdict"))
        return value if isinstance(value, dict) and "ok" in value else None

    # --- one stage ---------------------------------------------------------------------------

    def _stage(self, store: Store, run: RunInfo, decision: Decision,
               outputs: dict[str, dict[str, tuple[Any, ArtifactRef | None]]],
               importer: TargetImporter) -> dict[str, float]:
        stage = decision.stage
        if not decision.runs:
            return self._reuse(store, run, decision, outputs)
        self.display.start(stage.name, decision.reason)
        started = time.time()
        clock = time.perf_counter()
        stage_metrics: dict[str, float] = {}

        def log_metrics(values: Mapping[str, float]) -> None:
            clean = {str(k): float(v) for k, v in values.items()}
            stage_metrics.update(clean)
            self.host.call_each("conveyor_log_metrics", run=run, stage=stage.name, metrics=clean,
                                cached=False)

        def validate(frame: Any, purpose: str, schema: str | None) -> Any:
            config = run.config if schema is None else \
                {**run.config, "data": {**(run.config.get("data") or {}), "schema": schema}}
            return validate_frame(self.host, frame, config=config, project_dir=run.project_dir,
                                  purpose=purpose, import_target=importer)

        context = StageContext(
            name=stage.name, settings=stage.settings, run=run,
            inputs=self._inputs(store, stage, outputs), registry=Registry(store),
            load_artifact=lambda ref: self._load(store, ref), import_target=importer,
            log_metrics=log_metrics, log=lambda message: self.display.log(stage.name, message),
            validate=validate, contract=lambda: self._contract(store, run, stage, outputs),
            schemas=_Schemas(self.host, run.project_dir, importer),
            stage_types=self.found.stage_types,
            on_run_success=lambda action: self._on_success.append((stage.name, action)),
            session=self.session, run_output=lambda name: self._run_output(store, outputs, name))
        try:
            threads = choose_threads(stage.threads, self.threads, stage.name)
            context.threads = threads.threads
            context.log(threads.line)
            self.host.call_each("conveyor_before_stage", run=run, stage=stage)
            with limited_threads(threads.threads):
                produced = self.host.pm.hook.conveyor_run_stage(run=run, stage=stage,
                                                                context=context)
            if isinstance(produced, StoredOutputs):
                self._check_inputs_unchanged(store, decision)
                self._check_stored(store, stage, produced)
                codecs = {}
            elif not isinstance(produced, Mapping):
                raise StageFailed(f"stage '{stage.name}' ({stage.uses}) returned "
                                  f"{type(produced).__name__}, not a mapping of outputs")
            else:
                check_not_unwrapped(produced, stage=stage, host=self.host)
                self._check_inputs_unchanged(store, decision)
                codecs = self._codecs_for(stage, produced)
        except BaseException as exc:
            duration = time.perf_counter() - clock
            self.display.finish(stage.name, "failed", duration)
            message = exc.message if isinstance(exc, ConveyorError) else f"{type(exc).__name__}: {exc}"
            wrapper = None if isinstance(exc, ConveyorError | KeyboardInterrupt) \
                else self._wrapper_that_raised(exc)
            if wrapper is not None:
                message = (f"plugin {self.host.describe(wrapper)} failed in its "
                           f"conveyor_run_stage wrapper around stage '{stage.name}': {message}")
            evidence = self._store_evidence(store, stage, exc)
            self._record_stage(store, run, decision, "failed", started, duration, evidence,
                               message, dict(stage_metrics))
            if not isinstance(exc, KeyboardInterrupt):
                for problem in self.host.call_each("conveyor_on_stage_error",
                                                   run=run, stage=stage, error=exc):
                    print(f"warning: {problem}", file=sys.stderr)
            if isinstance(exc, ConveyorError | KeyboardInterrupt):
                raise
            if wrapper is not None:
                raise PluginError(message) from exc
            raise StageFailed(f"stage '{stage.name}' ({stage.uses}) failed: {message}") from exc
        duration = time.perf_counter() - clock
        if isinstance(produced, StoredOutputs):
            self._record_stored(store, run, decision, produced, outputs, started, duration,
                                dict(stage_metrics))
            return stage_metrics
        produced = dict(produced)

        def store_outputs() -> dict[str, ArtifactRef]:
            return self._store_outputs(store, run, decision, produced, codecs, started, duration,
                                       dict(stage_metrics))

        if all(codec.inline for codec in codecs.values()):
            stored = Future()
            stored.set_result(store_outputs())
        else:
            stored = self.writer.submit(stage.name, store_outputs)
        self.writer.prepare(self._warm_codecs)
        outputs[stage.name] = {name: (produced[name], stored if name in codecs else None)
                               for name in produced}
        self.host.call_each("conveyor_after_stage", run=run, stage=stage,
                            outputs=produced, cached=False)
        self.display.finish(stage.name, "completed", duration)
        return stage_metrics

    def _contract(self, store: Store, run: RunInfo, stage: PlannedStage,
                  outputs: dict[str, dict[str, tuple[Any, ArtifactRef | None]]]) -> Any:
        """The model contract made up by the stages `stage` depends on (`StageContext.contract`)."""
        from conveyor.contract import RowTransform, assemble

        ancestors = self._upstream(stage.name)
        ordered = sorted(ancestors, key=lambda n: self._plan[n].position)
        parts, reference = [], {}
        schema_stage = None
        for name in ordered:
            produced = outputs.get(name, {})
            if "contract" in produced:
                value, ref = produced["contract"]
                part = value if value is not None or ref is None \
                    else self._load(store, _resolve(ref, "contract"))
                parts.append(part)
                if isinstance(part, Mapping) and part.get("schema"):
                    schema_stage = name
            for output in ("train", "test"):
                if output in produced and produced[output][1] is not None and \
                        output not in reference:
                    reference[output] = {"stage": name, "output": output}
        # Row transforms upstream of the stage that validated (its schema describes their
        # output) apply before validating a raw record; the others after.
        validated_after = self._upstream(schema_stage) if schema_stage else set()
        transforms = [RowTransform(name, self._plan[name].uses, dict(self._plan[name].settings),
                                   before_schema=name in validated_after)
                      for name in ordered if self._plan[name].type.row_transform is not None]
        return assemble(run.config, parts, transforms, reference)

    def _upstream(self, stage: str) -> set[str]:
        found: set[str] = set()
        pending = list(self._plan[stage].needs)
        while pending:
            name = pending.pop()
            if name not in found and name in self._plan:
                found.add(name)
                pending += self._plan[name].needs
        return found

    def _wrapper_that_raised(self, exc: BaseException) -> str | None:
        """The plugin whose `conveyor_run_stage` wrapper raised `exc`, or None when the stage
        itself did. Walking out from where it was raised, the first frame of a hook
        implementation decides: a wrapper's (its own code or what it called), or the
        implementation that ran the stage (an error of the stage passes through the wrappers
        too, but further out)."""
        import traceback

        owners = {impl.function.__code__: impl
                  for impl in self.host.pm.hook.conveyor_run_stage.get_hookimpls()
                  if hasattr(impl.function, "__code__")}
        for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):
            impl = owners.get(frame.f_code)
            if impl is not None:
                return impl.plugin_name if impl.wrapper or impl.hookwrapper else None
        return None

    def _store_outputs(self, store: Store, run: RunInfo, decision: Decision,
                       produced: dict[str, Any], codecs: dict[str, Any], started: float,
                       duration: float, metrics: dict[str, float]) -> dict[str, ArtifactRef]:
        """On the writer thread: store the outputs, then record the stage as completed."""
        stage = decision.stage
        try:
            stored = {name: store.artifacts.put(produced[name], codec)
                      for name, codec in codecs.items()}
        except Exception as exc:
            message = (f"storing the outputs of stage '{stage.name}' failed: "
                       f"{type(exc).__name__}: {exc}")
            self._record_stage(store, run, decision, "failed", started, duration, {}, message)
            raise StageFailed(message) from exc
        refs = {name: (stored[name].as_dict() if name in stored else {"ephemeral": True})
                for name in produced}
        self._record_stage(store, run, decision, "completed", started, duration, refs, None,
                           metrics)
        return stored

    def _check_stored(self, store: Store, stage: PlannedStage, produced: StoredOutputs) -> None:
        """Outputs a `conveyor_run_stage` implementation stored itself: declared, and each
        reference sound (`conveyor.stored.check_refs`)."""
        self._check_declared(stage, [*produced.refs, *produced.ephemeral])
        check_refs(produced, stage=stage, codecs=self.codecs, artifacts=store.artifacts,
                   who=answering_plugin(self.host, stage.uses))

    def _record_stored(self, store: Store, run: RunInfo, decision: Decision,
                       produced: StoredOutputs,
                       outputs: dict[str, dict[str, tuple[Any, ArtifactRef | None]]],
                       started: float, duration: float, metrics: dict[str, float]) -> None:
        """Record a stage whose outputs are already stored (`StoredOutputs`): their rows and
        the stage's, nothing stored again; downstream stages load them as cached outputs."""
        stage = decision.stage
        for ref in produced.refs.values():
            store.record_artifact(ref)
        refs: dict[str, Any] = {name: ref.as_dict() for name, ref in produced.refs.items()}
        refs.update({name: {"ephemeral": True} for name in produced.ephemeral})
        self._record_stage(store, run, decision, "completed", started, duration, refs, None,
                           metrics)
        outputs[stage.name] = {**{name: (None, ref) for name, ref in produced.refs.items()},
                               **{name: (value, None) for name, value in produced.ephemeral.items()}}
        loaded = LoadedOnRead({name: lambda r=ref: self._load(store, r)
                                for name, ref in produced.refs.items()}, produced.ephemeral)
        self.host.call_each("conveyor_after_stage", run=run, stage=stage, outputs=loaded,
                            cached=False)
        self.display.finish(stage.name, "completed", duration)

    def _store_evidence(self, store: Store, stage: PlannedStage,
                        exc: BaseException) -> dict[str, Any]:
        """Store what a failing stage handed over (`StageFailed.outputs`); best effort."""
        if not isinstance(exc, StageFailed) or not exc.outputs:
            return {}
        try:
            codecs = self._codecs_for(stage, exc.outputs)
            return {name: store.artifacts.put(exc.outputs[name], codec).as_dict()
                    for name, codec in codecs.items()}
        except Exception as problem:
            print(f"warning: the outputs of failed stage '{stage.name}' were not stored: "
                  f"{problem}", file=sys.stderr)
            return {}

    def _reuse(self, store: Store, run: RunInfo, decision: Decision,
               outputs: dict[str, dict[str, tuple[Any, ArtifactRef | None]]]) -> dict[str, float]:
        row = decision.cached_from
        refs = decision.outputs
        outputs[decision.stage.name] = {
            name: (None, None if value.get("ephemeral") else ArtifactRef.from_dict(value))
            for name, value in refs.items()}
        cached_metrics = Runs(store).metrics(row.run_id, stage=decision.stage.name)
        self._record_stage(store, run, decision, "completed", time.time(), 0.0, refs, None,
                           cached_metrics, cached=True)
        if cached_metrics:  # a tracker mirroring runs sees the metrics this run carries over
            self.host.call_each("conveyor_log_metrics", run=run, stage=decision.stage.name,
                                metrics=dict(cached_metrics), cached=True)
        self.host.call_each("conveyor_after_stage", run=run, stage=decision.stage,
                            outputs={}, cached=True)
        self.display.finish(decision.stage.name, "cached", 0.0, decision.reason)
        return cached_metrics

    def _inputs(self, store: Store, stage: PlannedStage,
                outputs: dict[str, dict[str, tuple[Any, ArtifactRef | None]]]) -> Inputs:
        entries: dict[str, tuple[str, Any]] = {}
        refs: dict[str, ArtifactRef] = {}
        for need in stage.needs:
            for name, (value, ref) in outputs.get(need, {}).items():
                if name in entries:
                    raise StageFailed(
                        f"stage '{stage.name}' needs both '{entries[name][0]}' and '{need}', and "
                        f"both produce an output named '{name}'")
                if value is not None or ref is None:
                    entries[name] = (need, lambda v=value: v)
                else:
                    entries[name] = (need, lambda r=ref, n=name: self._load(store, _resolve(r, n)))
                if ref is not None:
                    refs[name] = lambda r=ref, n=name: _resolve(r, n)
                    entries[f"{need}.{name}"] = entries[name]
        return Inputs(stage.name, entries, refs)

    def _run_output(self, store: Store,
                    outputs: dict[str, dict[str, tuple[Any, ArtifactRef | None]]],
                    name: str) -> Any:
        """StageContext.run_output: an output of this run by name, from memory when kept."""
        for produced in outputs.values():
            if name in produced:
                value, ref = produced[name]
                if value is not None or ref is None:
                    return value
                return self._load(store, _resolve(ref, name))
        return None

    def _check_inputs_unchanged(self, store: Store, decision: Decision) -> None:
        """The data files a stage read still have the version the run recorded; otherwise the
        file changed while the stage read it, and the run fails rather than record a version
        it did not read."""
        for name, digest in decision.files.items():
            path = input_path(self.config.project_dir, name)
            now = self.fingerprint(store, path) if path.is_file() else "deleted"
            if now != digest:
                raise StageFailed(
                    f"data file {name} changed while stage '{decision.stage.name}' read it: "
                    f"the run started with version {_short(digest)}, the file is now "
                    f"{_short(now)}", hint="run again once the file is no longer being written: "
                                           "the next run reads and records the new version")

    def _codecs_for(self, stage: PlannedStage, produced: Mapping[str, Any]) -> dict[str, Any]:
        """The codec for each output to store, chosen before anything is written."""
        self._check_declared(stage, produced)
        chosen = {}
        for name, value in produced.items():
            if name in stage.type.ephemeral_outputs:
                continue
            chosen[name] = codec_for(self.found.codecs, value, stage=stage.name, output=name)
        return chosen

    def _check_declared(self, stage: PlannedStage, names: Iterable[str]) -> None:
        """Every output name is one the stage type declares (when it declares any)."""
        declared = stage.type.outputs
        undeclared = [name for name in names if declared and name not in declared]
        if undeclared:
            provider = self.host.describe(self.found.provider.get(f"stage:{stage.uses}", "?"))
            raise PluginError(
                f"stage '{stage.name}' ({stage.uses}) returned output '{undeclared[0]}', which "
                f"stage type '{stage.uses}' of plugin {provider} does not declare; it declares: "
                f"{', '.join(declared)}",
                hint=f"add '{undeclared[0]}' to the StageType's outputs, or upgrade the plugin")

    def _load(self, store: Store, ref: Any) -> Any:
        if isinstance(ref, dict):
            ref = ArtifactRef.from_dict(ref)
        codec = self.codecs.get(ref.codec)
        if codec is None:
            raise StoreError(f"artifact {ref.sha256[:12]} was written by codec '{ref.codec}', "
                             f"which no installed plugin provides")
        return store.artifacts.load(ref, codec)

    def _check(self, decisions: list[Decision], importer: TargetImporter) -> None:
        from conveyor.contributions import CheckContext

        project_dir = self.config.project_dir

        def schema_check(schema: str) -> str:
            return check_schema(self.host, schema, project_dir=project_dir, import_target=importer)

        for decision in decisions:
            stage = decision.stage
            if decision.runs and stage.type.check is not None:
                try:
                    stage.type.check(stage.settings,
                                     CheckContext(stage.name, project_dir, importer, schema_check))
                except ConveyorError:
                    raise
                except Exception as exc:
                    provider = self.found.provider.get(f"stage:{stage.uses}", "?")
                    raise PluginError(f"checking stage '{stage.name}' crashed in plugin "
                                      f"{self.host.describe(provider)}: {type(exc).__name__}: {exc}"
                                      ) from exc

    # --- records -----------------------------------------------------------------------------

    def _open_run(self, store: Store, run: RunInfo) -> None:
        dists = sorted({i.distribution for i in self.host.info.values()} - {"conveyor", "(project)"})
        # Records hold the redacted config (conveyor.secrets); the stages got the resolved one.
        redactor = self._redactor()
        config = redactor.config(self.config.data)
        params = flatten({k: v for k, v in config.items() if k != "pipeline"})
        Runs(store).open(
            run.id, project=run.project, command=redactor.text(self.command),
            invocation=self.invocation,
            overrides=run.overrides, config=config,
            config_hash=self.config.hash, git_commit=run.git_commit, git_dirty=run.git_dirty,
            packages=package_versions(dists), params=params,
            data=[(name, digest, _size(self.config.project_dir / name))
                  for name, digest in run.data_versions.items()],
            plugins={info.name: {"distribution": info.distribution, "version": info.version,
                                 "origin": info.origin}
                     for info in self.host.plugins if info.origin != "core"})

    def _record_stage(self, store: Store, run: RunInfo, decision: Decision, status: str,
                      started: float, duration: float, refs: dict[str, Any], error: str | None,
                      metrics: dict[str, float] | None = None, cached: bool = False) -> None:
        stage = decision.stage
        redactor = self._redactor()
        settings = redactor.config(stage.settings, f"pipeline.{stage.name}") \
            if isinstance(stage.settings, Mapping) else stage.settings
        Runs(store).record_stage(
            run.id, name=stage.name, position=stage.position, type=stage.uses,
            type_version=stage.type.version, status=status, fingerprint=decision.fingerprint,
            cached=cached, reason=decision.reason, started_at=started, duration=duration,
            settings=settings, upstream=decision.upstream, files=decision.files, outputs=refs,
            error=redactor.text(error), metrics=metrics)

    def _close_run(self, store: Store, run: RunInfo, status: str, error: str | None,
                   exit_code: int) -> None:
        """`exit_code` is the one `conveyor run` exits with for this run: 0, 1 (a stage failed
        or a gate said no), 70 (a bug), 130 (interrupted)."""
        Runs(store).close(run.id, status=status, error=self._redactor().text(error),
                          exit_code=exit_code)

    def _redactor(self) -> Any:
        from conveyor.secrets import Redactor

        if self.config.redactor is None:  # a ProjectConfig made without check_config
            object.__setattr__(self.config, "redactor", Redactor.for_config(self.config.data))
        return self.config.redactor


@dataclass(frozen=True)
class _Schemas:
    """What `StageContext.schema_snapshot` and `infer_schema` ask the validation plugins."""

    host: PluginHost
    project_dir: Path
    importer: Any

    def snapshot(self, schema: str) -> Any:
        from conveyor.validation import schema_snapshot

        return schema_snapshot(self.host, schema, project_dir=self.project_dir,
                               import_target=self.importer)

    def infer(self, frame: Any, *, source: str | None, target: str | None,
              id_column: str | None) -> Any:
        from conveyor.validation import infer_schema

        return infer_schema(self.host, frame, source=source, target=target,
                            id_column=id_column, project_dir=self.project_dir)


def _resolve(ref: ArtifactRef | Future, name: str) -> ArtifactRef:
    """An output's stored reference; waits for the writer if it is still storing it."""
    return ref.result()[name] if isinstance(ref, Future) else ref


def _short(digest: str) -> str:
    algorithm, _, value = digest.rpartition(":")
    return f"{algorithm or 'sha256'}:{value[:12]}" if value != "deleted" else "deleted"


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
