"""Running projects and reading their records from Python: the API for tools and plugins.

    from conveyor import api

    record = api.get_run(project_dir, "20250101-120000")      # a recorded run (prefix is enough)
    latest = api.list_runs(project_dir, status="completed", limit=5)   # newest first
    result = api.run(workspace, config=record.config, force=True, command="reproduce")
    print(result.metrics == record.metrics)

Every function takes the project as a folder or as a `conveyor.Session`. Given a session (a
command's, or one you opened), it uses that session's plugins, config and store: a command
that calls several functions loads its plugins once. Given a folder, it opens a session for
the call and closes it before returning.

Everything here goes through the same plugin host, planner, runner and store as the command
line. Heavy modules are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.errors import UsageError
from conveyor.session import Session

#: What every function takes: the project's folder, or a session of it (`conveyor.Session`).
Project = Session | Path | str
#: The aliases `parse_model_spec` reads after a model's name (`churn:challenger`).
MODEL_ALIASES = ("champion", "challenger")

__all__ = ["LoadedModel", "RunRecord", "RunResult", "RunSummary", "code_version", "get_run",
           "list_runs", "load_config", "load_model", "load_output", "model_contract",
           "parse_model_spec", "resolve_model", "run"]


@dataclass(frozen=True)
class RunResult:
    """What `run` returns: the new run's id, its status, metrics (by name, across stages) and
    the verdicts of gates and policies ({"ok": bool, "message": str})."""

    run_id: str
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RunRecord:
    """A run as the project store recorded it.

    `config` is the resolved config the run used (run it again with `run(config=...)`), as
    recorded: secrets redacted (`conveyor.secrets`), a value from `${oc.env:...}` resolved again
    from this process's environment (its interpolation when the variable is unset),
    `data` maps each data file it read to the version recorded (the `conveyor_file_fingerprint`
    digest, e.g. "md5:..." from DVC, or the core's bare sha256), `git_commit`/`git_dirty` the
    code version, `packages` the versions of the packages involved, `plugins` the plugins it
    ran with ({name: {"distribution", "version", "origin"}}, origin "entry point" or "local
    module"; empty for a run recorded before runs recorded them), `overrides` the command
    line's overrides and `invocation` the id shared by the jobs of one `--multirun` (None for
    a single run).
    """

    id: str
    project: str | None
    status: str
    command: str | None
    config: dict[str, Any]
    config_hash: str | None
    git_commit: str | None
    git_dirty: bool | None
    packages: dict[str, str]
    data: dict[str, str]
    metrics: dict[str, float]
    error: str | None
    plugins: dict[str, dict[str, str]] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    invocation: str | None = None


@dataclass(frozen=True)
class RunSummary:
    """A recorded run as `list_runs` lists it: `created_at` in Unix seconds, `duration` in
    seconds (None while running), `exit_code` what `conveyor run` exited with (None while
    running, or for runs recorded before it was kept), `metrics` by name across its stages
    (values that are not numbers left out and named in `problems`)."""

    id: str
    project: str | None
    status: str
    command: str | None
    created_at: float | None
    duration: float | None
    exit_code: int | None
    error: str | None
    git_commit: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadedModel:
    """A registered model version, loaded: `model` is the object the training stage stored (for
    conveyor-sklearn, the fitted scikit-learn Pipeline with its preprocessing), `version` its
    registry record (metrics, gate decision, lineage), `config` the resolved config of the run
    that trained it, and `contract` the `conveyor.ModelContract` recorded with the version (the
    schema content, target, id column and features the model was validated and trained with;
    None for a version registered before contracts were recorded: its `config` describes it).

    Loaded with `compiled=True`, `compiled_status` (a `conveyor.compiled.CompiledStatus`) says
    how the version is scored and why, and `compiled` is its `CompiledModel` (None when the
    Python model serves it): score with `compiled` when it is not None, else with `model`."""

    name: str
    number: int
    run_id: str
    model: Any
    version: Any  # conveyor.store.registry.ModelVersion
    config: dict[str, Any]
    sha256: str
    contract: Any = None  # conveyor.ModelContract | None
    project_dir: Path | None = None
    stage_types: Mapping[str, Any] = field(default_factory=dict, repr=False)
    compiled: Any = field(default=None, repr=False)  # conveyor.compiled.CompiledModel | None
    compiled_status: Any = None  # conveyor.compiled.CompiledStatus (with compiled=True)

    def transform(self, frame: Any, *, before_schema: bool | None = None) -> Any:
        """Raw records (a DataFrame) through the version's inference path, the row transforms
        recorded with it (`ModelContract.transform`); unchanged without any."""
        if self.contract is None or not self.contract.transforms:
            return frame
        return self.contract.transform(frame, self.stage_types, before_schema=before_schema)

    def data_config(self, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """`config` (default: the training run's) with the `data` section this version was
        validated with: its contract's schema (a file under .conveyor/contracts/), target and
        id column. Without a contract, the training run's `data` section."""
        base = dict(self.config if config is None else config)
        if self.contract is None:
            return {**base, "data": {**(base.get("data") or {}),
                                     **(self.config.get("data") or {})}}
        return self.contract.data_config(base, self.project_dir or Path.cwd())


def load_model(project: Project, name: str | None = None, *, version: int | None = None,
               alias: str = "champion", compiled: bool = False,
               threads: int | None = None) -> LoadedModel:
    """Load a registered model version from the project store, its sha256 checked first.

    `name` defaults to the only model of the project; `version` (a number) wins over `alias`.
    The object is loaded by the codec that stored it (a plugin's, e.g. skops), so a file whose
    content does not match the recorded sha256 is refused with StoreError before any
    deserialisation, and a model with no champion yet raises UsageError naming the fix.

    With `compiled=True` the version's compiled form is loaded too (`conveyor.compiled`): built,
    checked against the Python model on the version's test rows and recorded on first use when
    the version has no record yet; `LoadedModel.compiled` is None when the Python model serves
    it, and `compiled_status` says why. `threads` sets the compiled model's intra-op threads
    (default: `conveyor.compiled.inference_threads()`; a serving worker wants 1).
    """
    from conveyor.store import ArtifactRef, Registry

    with _session(project) as session:
        record = resolve_model(session, name, version=version, alias=alias)
        name = record.name
        store = session.store()
        try:
            contract = Registry(store).contract(name, record.version)
            ref = ArtifactRef.from_dict(record.artifact)
            codec = session.codec(ref.codec)
            if codec is None:
                raise UsageError(f"model '{name}' v{record.version} was stored with codec "
                                 f"'{ref.codec}', which no installed plugin provides")
            model = store.artifacts.load(ref, codec)
            run = get_run(session, record.run_id)
        finally:
            store.close()
        compiled_model, status = None, None
        if compiled:
            from conveyor.compiled import compile_version, threads_for_loading

            with threads_for_loading(threads):
                status, compiled_model = compile_version(session, record, model=model,
                                                         contract=contract)
        return LoadedModel(name=name, number=record.version, run_id=record.run_id, model=model,
                           version=record, config=run.config, sha256=ref.sha256,
                           contract=contract, project_dir=session.project_dir,
                           stage_types=dict(session.host.contributions.stage_types),
                           compiled=compiled_model, compiled_status=status)


def model_contract(project: Project, name: str | None = None, *, version: int | None = None,
                   alias: str = "champion") -> Any:
    """The `conveyor.ModelContract` recorded with a registered version (chosen as in
    `load_model`), without loading the model; None for a version registered before contracts
    were recorded. UsageError as in `resolve_model`."""
    from conveyor.store import Registry

    with _session(project) as session:
        record = resolve_model(session, name, version=version, alias=alias)
        store = session.store()
        try:
            return Registry(store).contract(record.name, record.version)
        finally:
            store.close()


def parse_model_spec(spec: str | None) -> tuple[str | None, int | None, str]:
    """A command's `--model NAME[:VERSION|:ALIAS]` as `(name, version, alias)`, the arguments
    of `resolve_model` and `load_model`: `churn` -> ("churn", None, "champion"), `churn:3`
    or `churn:v3` -> ("churn", 3, "champion"), `churn:challenger` -> ("churn", None,
    "challenger"), None -> (None, None, "champion"). UsageError for anything else."""
    import re

    if spec is None:
        return None, None, "champion"
    match = re.fullmatch(r"(?P<name>[^:\s]+)(?::(?P<version>[^:\s]+))?", spec)
    version = match and match["version"]
    if not match or (version is not None and version not in MODEL_ALIASES
                     and not re.fullmatch(r"v?\d+", version)):
        raise UsageError(
            f"--model {spec!r} is not NAME:VERSION",
            hint="e.g. --model churn:3 (a version number), churn:challenger, or churn for its "
                 "champion; see `conveyor models list`")
    if version is None or version in MODEL_ALIASES:
        return match["name"], None, version or "champion"
    return match["name"], int(version.lstrip("v")), "champion"


def resolve_model(project: Project, name: str | None = None, *, version: int | None = None,
                  alias: str = "champion") -> Any:
    """The registry record (`conveyor.store.registry.ModelVersion`) of the version `load_model`
    would load, without loading it: for commands that check their arguments before starting
    work. Raises UsageError naming the fix for an unknown model or version, an ambiguous
    `name=None`, or an alias not set yet."""
    from conveyor.store import Registry

    with _store(project) as store:
        registry = Registry(store)
        if name is None:
            names = sorted({v.name for v in registry.versions()})
            if not names:
                raise UsageError("this project has no registered model yet",
                                 hint="run `conveyor run` to train and register one")
            if len(names) > 1:
                raise UsageError("this project has several models: " + ", ".join(names),
                                 hint="name the one you mean")
            name = names[0]
        if version is not None:
            return registry.get(name, version)
        record = registry.alias(name, alias)
        if record is None:
            known = registry.versions(name)
            if not known:
                raise UsageError(f"no model named '{name}' in this project",
                                 hint="see `conveyor models list`")
            raise UsageError(
                f"model '{name}' has no {alias} yet ({len(known)} version(s) registered, "
                "none promoted)", hint=f"promote one with `conveyor models promote {name} VERSION`")
        return record


def load_output(project: Project, run_id: str, name: str, *, stage: str | None = None) -> Any:
    """A stored output of a recorded run (a stage's artifact, e.g. the `train` split), loaded by
    the codec that stored it after its sha256 is checked.

    `stage` narrows the search when several stages produced an output called `name`; without
    it the first stage of the run (in pipeline order) that did is used. Outputs reused from the
    cache count as the run's own. UsageError names what the run does have when there is no
    such output (or it was never stored, being ephemeral).
    """

    with _session(project) as session:
        return _load_output(session, run_id, name, stage)


def _load_output(session: Session, run_id: str, name: str, stage: str | None) -> Any:
    from conveyor.store import ArtifactRef, Runs

    run = get_run(session, run_id)
    store = session.store()
    try:
        found = None
        available = []
        for row in Runs(store).stages(run.id, status="completed"):
            outputs = row.json("outputs", {})
            available += [f"{row.name}.{key}" for key, value in outputs.items()
                          if isinstance(value, dict) and "sha256" in value]
            if found is None and name in outputs and (stage is None or row.name == stage) \
                    and "sha256" in (outputs[name] or {}):
                found = outputs[name]
        if found is None:
            where = f"stage '{stage}' of run {run.id}" if stage else f"run {run.id}"
            raise UsageError(f"{where} has no stored output '{name}'",
                             hint="stored outputs: " + (", ".join(available) or "none"))
        ref = ArtifactRef.from_dict(found)
        codec = session.codec(ref.codec)
        if codec is None:
            raise UsageError(f"output '{name}' of run {run.id} was stored with codec "
                             f"'{ref.codec}', which no installed plugin provides")
        return store.artifacts.load(ref, codec)
    finally:
        store.close()


def load_config(project: Project, overrides: Sequence[str] = ()) -> Any:
    """The project's composed, resolved and checked config (a `ProjectConfig`: `.data` is the
    plain mapping, `.get("a.b")` reads one key). Raises ConfigError for an invalid config.
    Given a session and no `overrides`, the session's config (with the session's overrides)."""
    if isinstance(project, Session) and not overrides:
        return project.config
    with _session(project) as session:
        return session.compose(overrides)


def run(project: Project, *, config: Mapping[str, Any] | None = None,
        overrides: Sequence[str] = (), force: bool = False, quiet: bool = True,
        command: str = "run", config_from: str | None = None) -> RunResult:
    """Run a project's pipeline and record the run in its store, as `conveyor run` does.

    Without `config`, the project's conveyor.yaml is composed with `overrides` (given a
    session and no overrides: the session's config). With `config`
    (an already resolved config, such as `RunRecord.config`), that config is used as it is,
    checked again against the installed plugins' schemas, and `overrides` must be empty. The
    plugins loaded are the ones the config's `plugins` section asks for, with the project
    folder as the home of local plugin modules. `force` runs every stage even when cached;
    `command` is recorded with the run. Raises the usual ConveyorError subclasses.
    `config_from` says where a given `config` came from ("the recorded config of run R, which
    trained churn v3"): a plugin or key of it that no longer loads is reported as coming from
    there, not from the project's conveyor.yaml.
    """
    from conveyor.progress import StageDisplay
    from conveyor.runner import Runner

    if config is not None and overrides:
        raise UsageError("api.run takes either a resolved config or overrides, not both")
    with _session(project) as session:
        if config is None:
            resolved = load_config(session, overrides)
        else:
            resolved = session.check(config, source=config_from)
        result = Runner(session.host, resolved, display=StageDisplay(quiet=quiet), force=force,
                        command=command, session=session).run()
    return RunResult(result.run_id, result.status, dict(result.metrics), list(result.verdicts))


def get_run(project: Project, run_id: str) -> RunRecord:
    """The recorded run whose id is `run_id` or starts with it. UsageError when there is no
    such run or the prefix is ambiguous."""
    from conveyor.store import Runs

    with _store(project) as store:
        runs = Runs(store)
        row = runs.find(run_id)
        data = runs.data(row.id)
        metrics = runs.metrics(row.id)
    return RunRecord(
        id=row.id, project=row.project, status=row.status, command=row.command,
        config=_resolved(row.json("config", {})), config_hash=row.config_hash,
        git_commit=row.git_commit, git_dirty=row.git_dirty, packages=row.json("packages", {}),
        plugins=row.json("plugins", {}), overrides=row.json("overrides", []),
        invocation=row.invocation,
        data=data, metrics=metrics, error=row.error)


def list_runs(project: Project, *, status: str | None = None, command: str | None = None,
              since: float | None = None, until: float | None = None,
              params: Mapping[str, Any] | None = None,
              metrics: Sequence[tuple[str, str, float]] = (), order: str = "created",
              descending: bool = True, limit: int | None = 20, offset: int = 0
              ) -> list[RunSummary]:
    """The project's recorded runs (`project`: its folder or a `Session`), newest first, as
    `RunSummary`s (`get_run` reads one in full). Every filter given must hold:

    * `status`: "completed", "failed", "interrupted", "running", ...;
    * `command`: what recorded it, e.g. "run" or "reproduce";
    * `since` / `until`: the run started at or after / before this Unix time;
    * `params`: {flattened config key: value}, e.g. {"model.params.max_depth": 3};
    * `metrics`: (name, op, number) tests, op one of = != > < >= <=, e.g.
      [("accuracy", ">=", 0.8)].

    `order` is "created", "status", "duration", "id" or "metric:NAME"; `limit` None for all.
    Runs whose process was killed are reported "interrupted", as `conveyor runs list` does.

        for run in api.list_runs(project_dir, status="completed", limit=5):
            print(run.id, run.metrics.get("accuracy"))
    """
    from conveyor.secrets import Redactor
    from conveyor.store import MetricTest, ParamTest, RunQuery, Runs, numeric_metrics

    param_tests = tuple(ParamTest(key, _stored_forms(value)) for key, value in
                        (params or {}).items())
    try:
        metric_tests = tuple(MetricTest(str(key), op, float(value))
                             for key, op, value in metrics)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"metrics filters are (name, op, number) with op one of "
                         f"= != > < >= <=: {exc}") from exc
    query = RunQuery(status=status, command=command, since=since, until=until,
                     params=param_tests, metrics=metric_tests)
    with _store(project) as store:
        store.mark_interrupted()
        repo = Runs(store)
        try:
            rows = repo.list(query, order=order, descending=descending, limit=limit,
                             offset=offset)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        values = repo.metrics_of([r.id for r in rows])
    result = []
    for row in rows:
        redactor = Redactor.for_record(row.json("config", {}))
        problems: list[str] = []
        numbers = numeric_metrics(values.get(row.id, {}), problems)
        result.append(RunSummary(
            id=row.id, project=row.project, status=row.status,
            command=redactor.text(row.command), created_at=row.created_at,
            duration=row.duration, exit_code=row.exit_code, error=redactor.text(row.error),
            git_commit=row.git_commit, metrics=numbers, problems=tuple(problems)))
    return result


def _stored_forms(value: Any) -> tuple[str, ...]:
    """How a param value may be stored: JSON text; a string also as typed (as the UI's search
    box matches it)."""
    forms = [json.dumps(value, sort_keys=True, default=str)]
    if isinstance(value, str):
        forms.append(value)
    return tuple(dict.fromkeys(forms))


def code_version(project: Project) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding the project, as runs record it; (None, None)
    outside git."""
    from conveyor.lineage import git_state

    with _session(project) as session:
        return git_state(session.project_dir)


@contextmanager
def _store(project: Project) -> Iterator[Any]:
    """The project's store (`conveyor.store.Store`), open for the block."""
    with _session(project) as session:
        store = session.store()
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _session(project: Project) -> Iterator[Session]:
    """The session to work in: `project` itself when it is one, else one opened (and closed)
    for this call."""
    if isinstance(project, Session):
        yield project
        return
    with Session(Path(project).resolve()) as session:
        yield session


def _resolved(config: Any) -> Any:
    """A recorded config with the interpolations it was recorded with (secrets from
    `${oc.env:...}`, conveyor.secrets) resolved again; as recorded when one cannot be."""
    if not isinstance(config, dict) or "${" not in json.dumps(config):
        return config
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(OmegaConf.create(config), resolve=True)
    except Exception:
        return config
