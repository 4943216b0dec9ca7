"""The hook contract between Conveyor and its plugins: this module is the plugin author's manual.

Conventions (as in pluggy and pytest):

* Hooks are called with keyword arguments only. An implementation may accept any subset of a
  spec's arguments, so a spec can gain arguments without breaking existing plugins.
* Extension hooks hand the plugin a ``register`` callback instead of collecting return values:
  the core validates and de-duplicates what is registered and names the plugin on conflict.
* Every hook is called through pluggy's own hook callers (``host.hook.NAME(**kwargs)``), so
  pluggy's tracing (``pm.trace``, ``pm.add_hookcall_monitoring``) sees every call, and any
  hook may be wrapped with ``@conveyor.hookimpl(wrapper=True)`` (``result = yield`` runs the
  other implementations; the wrapper may time, trace, retry, replace the result or raise).
  Old-style ``hookwrapper=True`` is refused except on ``conveyor_run_stage``.
* Each hook's docstring ends with its result rule, one of:

  - ``Result: first non-None answer wins.`` (a ``firstresult`` hook: implementations are
    called in pluggy's order, the plugin registered last first, ``tryfirst``/``trylast``
    adjusting it, until one returns something other than None);
  - ``Result: ignored; every implementation runs.`` (an exception stops the others);
  - ``Cleanup: every implementation runs even if one raises.`` (the errors are reported by
    name as warnings, the hooks in ``CLEANUP_HOOKS``);
  - ``Result: none; call register(...) for each contribution.`` (the extension hooks).

* Extension hooks (the ``register`` ones) are called together, once per command, when it first
  needs what plugins contribute (nearly every command does, ``conveyor --help`` included): keep
  them cheap, and import heavy libraries inside the functions you register.
* An exception raised inside a hook names the plugin and the hook (a ``conveyor.PluginError``);
  outside cleanup hooks it fails the command (a run: exit 1). Raise a
  ``conveyor.ConveyorError`` subclass (``ConfigError``, ``StageFailed``, ...) for a message
  meant for the user: its text, hint and exit code are kept, with the plugin's name added
  (first-result hooks pass it on unchanged).
* Misspelt hook names fail when the plugin loads, with the closest hook name as a hint.
* The arguments are public types: ``run`` a ``conveyor.RunInfo``, ``stage`` a
  ``conveyor.Stage``, ``context`` a ``conveyor.StageContext``, ``alert`` a ``conveyor.Alert``,
  ``host`` a ``conveyor.Host``, ``session`` a ``conveyor.Session``; the ``register``
  callbacks take the dataclasses of ``conveyor.contributions`` (``conveyor.StageType``, ...).

Implement hooks with ``@conveyor.hookimpl`` in a module or class registered through the
``conveyor`` entry-point group (or listed in ``plugins.local`` of a project). A plugin's
distribution declares the Conveyor versions it supports in its dependencies
(``dependencies = ["conveyor>=0.1,<0.2"]``); Conveyor refuses to load it under other versions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.markers import hookspec

if TYPE_CHECKING:
    from conveyor.alerts import Alert
    from conveyor.compiled import CompiledArtifact
    from conveyor.feedback import FeedbackResult, FeedbackSettings
    from conveyor.host import Host
    from conveyor.session import Session
    from conveyor.stage_context import RunInfo, Stage, StageContext

#: Cleanup hooks: every implementation runs even if one raises; the errors are collected (each
#: naming its plugin) and reported as warnings, never raised.
CLEANUP_HOOKS = frozenset({"conveyor_on_stage_error", "conveyor_after_run", "conveyor_alert"})

#: Hooks whose implementations Conveyor calls unguarded: the runner tells a stage's own failure
#: from a wrapper's and reports each itself.
UNGUARDED_HOOKS = frozenset({"conveyor_run_stage"})

# --- Extension points: what a plugin adds -------------------------------------------------------


@hookspec
def conveyor_stage_types(register: Callable[..., None]) -> None:
    """Contribute stage types that pipelines can ``uses:``.

    Call ``register(StageType(name=..., run=...))`` once per stage type. Names are dotted and
    start with the plugin's own prefix, its entry point's name and a dot (``sklearn.train``
    for the entry point ``sklearn``; ``conveyor.`` is the core's): a plugin registering
    another name is refused when it loads, naming it. The project's own modules
    (``plugins.local``) are not held to a prefix. A name another
    plugin registered too is an error naming both plugins. ``outputs`` declares the names of
    the outputs the stage type produces, each with a one-line description (shown by
    ``conveyor plugins list --json`` and docs/reference/stage-types.md); when declared, a stage
    producing another output fails, naming the plugin. ``run(context)`` gets a ``conveyor.StageContext`` (its
    settings, inputs, ``log_metrics``, ``log``) and returns a mapping of named outputs;
    ``settings_schema`` (a dataclass) types the stage's settings and ``check`` validates them
    before anything runs. A stage type that transforms rows before training (derives features)
    declares itself a row transform with ``row_transform=fn(frame, settings)``: registered
    versions record it in their inference path (``conveyor.ModelContract.transforms``), and
    ``predict``, ``monitor`` and ``serve`` apply it to raw records. Called once per command,
    with the other extension hooks.

    Result: none; call register(...) for each contribution.
    """


@hookspec
def conveyor_config_dirs(register: Callable[..., None]) -> None:
    """Contribute folders to Hydra's config search path, for config groups the plugin ships.

    Call ``register(path)`` with an absolute path (e.g. ``Path(__file__).parent / "conf"``),
    which must exist. A file ``conf/model/random_forest.yaml`` makes ``model=random_forest`` a
    valid choice, in a project's ``defaults`` list or on the command line; its content becomes
    the ``model`` section (type that section with ``conveyor_config_schemas``). Ship the YAML
    files as package data. Called once per command, with the other extension hooks.

    Result: none; call register(...) for each contribution.
    """


@hookspec
def conveyor_config_schemas(register: Callable[..., None]) -> None:
    """Type a top-level config section the plugin owns.

    Call ``register(ConfigSchema(section="model", schema=ModelConfig))`` with a dataclass whose
    fields all have defaults. Unknown keys and wrong types in that section then stop a run
    before anything executes (exit 2, naming the key, its file and line). What types cannot
    say (a URL's form, a range) goes in ``ConfigSchema(..., check=fn)``: ``fn(section, where)``
    runs on every command that loads the config, before anything executes, and raises
    ``ConfigError`` naming the key and ``where(key)`` (where it was set). A section two plugins
    register is an error naming both. Called once per command, with the other extension hooks.

    Result: none; call register(...) for each contribution.
    """


@hookspec
def conveyor_cli_commands(register: Callable[..., None]) -> None:
    """Add ``conveyor`` subcommands: call ``register(CliCommand(name, help, configure, run))``.

    ``configure(parser)`` adds argparse arguments; ``run(args, app)`` does the work and returns
    an exit code (None is 0). ``app`` is the command's ``conveyor.Session``: ``app.project_dir``
    is the project folder (a ``UsageError`` when the command runs outside a project),
    ``app.host`` the loaded plugins (a ``conveyor.Host``). Raise a ``ConveyorError`` subclass
    for user errors. A name the core or another plugin uses is an error naming the plugin.
    Called once per command, with the other extension hooks.

    Result: none; call register(...) for each contribution.
    """


@hookspec
def conveyor_codecs(register: Callable[..., None]) -> None:
    """Add artifact serialisers: call ``register(Codec(name, suffix, handles, dump, load))``.

    The runner stores each stage output with the highest-priority codec whose ``handles(obj)``
    is true, and loads it back with the codec named in the store. Codecs must not execute
    code found in the file when loading (no pickle). Called once per command, with the other
    extension hooks.

    Result: none; call register(...) for each contribution.
    """


@hookspec
def conveyor_project_templates(register: Callable[..., None]) -> None:
    """Add ``conveyor init --template`` choices: call ``register(ProjectTemplate(...))``.

    ``create(destination, project_name)`` writes the project's files into an empty folder;
    ``conveyor init`` then calls ``conveyor_after_init``. Called once per command, with the
    other extension hooks.

    Result: none; call register(...) for each contribution.
    """


@hookspec
def conveyor_target_prefixes(register: Callable[..., None]) -> None:
    """Allow ``_target_`` import paths: ``register("xgboost")`` allows the estimator classes
    (classes with ``fit`` and ``get_params``) of a package; ``register("mylib.models.Special")``
    allows that exact class, estimator or not.

    Only targets under an allowed entry are ever imported (the project adds its own with
    ``security.allowed_targets``), never a function or a private name (see
    ``conveyor.targets``). Called once per command, with the other extension hooks.

    Result: none; call register(...) for each contribution.
    """


@hookspec
def conveyor_store_tables(register: Callable[..., None]) -> None:
    """Keep tables of the plugin's own in the project store: call
    ``register(TableSet(owner, version, create, upgrades))`` (``conveyor.store.TableSet``).

    ``create`` makes the tables at ``version`` (write it with ``IF NOT EXISTS``), ``upgrades``
    maps each later version to the statements taking the one before to it. Opening the store
    applies what a store lacks, in order and in one transaction, and records the owner's
    version in its ``meta`` table; a plugin's repository also calls
    ``Store.ensure_tables`` itself. Read and write the tables only from the plugin's own
    records module: SQL anywhere else fails Conveyor's layering test. Called once per command,
    with the other extension hooks.

    Result: none; call register(...) for each contribution.
    """


# --- Validation: one schema for training data, monitoring batches and serving requests -------
#
# ``data.schema`` names a schema in whatever form a validation plugin understands (a file, an
# import path). The core never reads it: it asks these two first-result hooks, so any plugin can
# answer, and serving, monitoring and training all validate through `conveyor.validation`.


@hookspec(firstresult=True)
def conveyor_check_schema(schema: str, project_dir: Path, import_target: Callable[[str], Any]
                          ) -> str | None:
    """Check ``data.schema`` before anything runs. First result.

    Return a short description of the schema (``"pandera schema, 8 columns"``) when your plugin
    handles it, or None when it does not (another plugin may). Raise ``ConfigError`` when it is
    yours but unusable (the file is missing, not valid YAML, not a valid schema): the run then
    stops with exit 2 before any stage runs. ``import_target`` imports a dotted path under the
    project's `_target_` allowlist; use it for schemas given as an import path.

    Result: first non-None answer wins.
    """


@hookspec(firstresult=True)
def conveyor_validate_frame(frame: Any, schema: str, purpose: str, project_dir: Path,
                            target: str | None, import_target: Callable[[str], Any]) -> Any:
    """Validate a DataFrame against ``data.schema``. First result.

    ``schema`` is the ``data.schema`` string, relative paths to ``project_dir``. ``purpose`` is
    "train" (the training data: the whole schema applies), "batch" (a monitoring batch: the
    ``target`` column, ``data.target``, may be absent) or "request" (a serving request of a few
    rows: the target may be absent and checks on the row count do not apply).

    Return a ``conveyor.ValidationReport``: ``ok``, the failures (every failing check, not just
    the first), the invalid row positions with their reasons, the full failure cases, and, when
    ok, the validated frame (converted only where the schema asks for it). Return None when your
    plugin does not handle this schema. Raise ``ConfigError`` for an unusable schema.
    Checks the schema marks as expectations (what data was seen to hold, such as observed
    ranges; conveyor-pandera: ``raise_warning: true``) never fail it: report the values outside
    them in the report's ``expectations`` and ``unexpected_rows``.

    Result: first non-None answer wins.
    """


@hookspec(firstresult=True)
def conveyor_describe_schema(schema: str, project_dir: Path, target: str | None,
                             import_target: Callable[[str], Any]) -> Any:
    """Describe ``data.schema`` field by field, for checking requests early. First result.

    Return a ``conveyor.validation.SchemaDescription``: each column's type, nullability and the
    rules that can be checked on a single record (ranges, allowed values, uniqueness within a
    request), and, in ``unchecked``, every rule the description leaves out. A server builds its
    request model from it (conveyor-bentoml) and still validates through
    ``conveyor_validate_frame`` whatever ``unchecked`` lists. ``target`` is ``data.target``
    (not required in a request). Return None when your plugin does not handle this schema.

    Result: first non-None answer wins.
    """


@hookspec(firstresult=True)
def conveyor_schema_snapshot(schema: str, project_dir: Path,
                             import_target: Callable[[str], Any]) -> Any:
    """The content of ``data.schema``, to record with a model version. First result.

    Return a ``conveyor.SchemaSnapshot``: ``text``, the schema written out whole in a form your
    plugin validates again when given it as a file with ``suffix`` (so a schema given as an
    import path is exported, e.g. as YAML); ``columns`` it lists; and, when the schema says so,
    ``describes`` (the data file it was written for, relative to the project) and
    ``written_by`` (``"conveyor init"`` for a template's schema of its own sample data,
    ``"conveyor schema infer"``). ``origin`` is filled in by the core. Return None when your
    plugin does not handle this schema.

    Every version registered by a run that validated against ``data.schema`` records this
    snapshot (``conveyor.ModelContract``), and ``predict``, ``monitor`` and ``serve`` validate
    with it, not with the project's current schema file. A schema that ``describes`` another
    data file than the run's ``data.source``, and whose columns the data lacks, is not applied
    (see ``conveyor.validate``).

    Result: first non-None answer wins.
    """


@hookspec(firstresult=True)
def conveyor_infer_schema(frame: Any, source: str | None, target: str | None,
                          id_column: str | None, project_dir: Path) -> Any:
    """Infer the schema a model trained on ``frame`` needs, when no ``data.schema`` is set.
    First result.

    Called by the ``conveyor.validate`` stage on the training data (a pandas DataFrame, read
    from ``source``; ``target`` and ``id_column`` are ``data.target`` and ``data.id_column``).
    Return a ``conveyor.SchemaSnapshot`` (``origin`` None; ``describes`` the source) whose rules
    are what a model cannot score without: the columns and their types. Observed ranges and
    categories are at most expectations (counted, never refused): new data may go beyond them,
    and that is drift to measure, not a broken contract. The run says in one line that it inferred the
    schema, records it as the version's contract, and ``predict``, ``monitor`` and ``serve``
    validate with it. Return None to let another plugin answer (with none, the version records
    no schema and inference is not validated).

    Result: first non-None answer wins.
    """


# --- Project set-up -----------------------------------------------------------------------------


@hookspec
def conveyor_after_init(project_dir: Path, template: str) -> None:
    """Called by ``conveyor init`` once the template has written the new project.

    ``project_dir`` is the project's final folder (absolute) and ``template`` the name of the
    template that made it. Every plugin's implementation is called: add what the plugin needs
    to a new project (a data-versioning repository, a schema file, ...), and print a line
    saying what was done if the user should know. An exception aborts ``conveyor init``: the
    half-made project folder is removed and the error names the plugin.

    Result: ignored; every implementation runs.
    """


# --- Data files ---------------------------------------------------------------------------------


@hookspec(firstresult=True)
def conveyor_file_fingerprint(path: Path, project_dir: Path, verify: bool) -> str | None:
    """The version of a data file a stage reads (a stage type's ``input_files``). First result.

    Return a digest of the file's content as ``"ALGORITHM:HEX"`` (``"md5:3f2a..."``), or None
    to let the next plugin answer; when none does, the core uses its own sha256, cached by
    (size, mtime, inode). ``path`` is absolute, ``project_dir`` the project's folder.
    ``verify`` is True when the user asked for the content to be read again (``conveyor run
    --force``): answer from the file's bytes, not from metadata, since an edit that keeps the
    size and restores the modification time looks unchanged to any metadata cache.

    The digest enters the fingerprint of every stage reading the file, is recorded with the run
    (``data_inputs``; ``RunInfo.data_versions``) and is shown by ``conveyor runs show`` and
    ``compare``. Two calls for the same content must return the same digest, and the answer
    should not re-read an unchanged file: a fully cached run calls this for every data file and
    must stay fast whatever the data's size (look the digest up by file metadata, as the core
    does, and import nothing heavy on that path).

    The runner calls it again after each stage that read the file: a different answer means the
    file changed while the run read it, and the stage fails rather than record a version it did
    not read.

    Result: first non-None answer wins.
    """


# --- Lifecycle: around a run and each stage ---------------------------------------------------


@hookspec
def conveyor_before_run(run: RunInfo, config: Mapping[str, Any]) -> None:
    """Called once per run, once the plan is made, before the first stage.

    ``run`` is the ``conveyor.RunInfo`` (``id``, ``project``, ``project_dir``, ``config``,
    ``config_hash``, ``data_versions``); ``config`` is the resolved config as plain mappings.
    The run is already recorded (status "running", with its data versions); an exception here
    fails it (exit 1) before any stage runs. Start a tracker's run here.

    Result: ignored; every implementation runs.
    """


@hookspec
def conveyor_before_stage(run: RunInfo, stage: Stage) -> None:
    """Called before each stage executes (not for stages taken from the cache).

    ``stage`` is the ``conveyor.Stage``: ``name``, ``uses``, ``needs``, resolved ``settings``,
    ``position``, ``threads`` and its ``type`` (the ``StageType``). An exception fails the
    stage and the run (exit 1), naming the plugin; ``conveyor_on_stage_error`` and
    ``conveyor_after_run`` are still called.

    Result: ignored; every implementation runs.
    """


@hookspec(firstresult=True)
def conveyor_run_stage(run: RunInfo, stage: Stage, context: StageContext
                       ) -> Mapping[str, Any] | None:
    """Execute one stage and return its outputs (a mapping of name to object). First result.

    Called for each stage that is not taken from the cache, after ``conveyor_before_stage``.
    ``context`` is the ``conveyor.StageContext`` the stage type's ``run`` receives. The core's
    own implementation (``trylast``) calls the stage type's ``run(context)``; an implementation
    returning a mapping first replaces it (remote execution, say).

    Wrap it (``@hookimpl(wrapper=True)``) to add timing, tracing or retries around every other
    implementation: ``outputs = yield`` gives the result
    (or raises the stage's exception, which the wrapper may catch and retry or re-raise) and
    ``return outputs`` passes it on, changed or not. An exception the wrapper raises itself
    (or from code it calls) fails the run (exit 1) naming the plugin and the stage; the stage's
    own exception passing through a wrapper stays the stage's failure.

    Result: first non-None answer wins.
    """


@hookspec
def conveyor_after_stage(run: RunInfo, stage: Stage, outputs: Mapping[str, Any],
                         cached: bool) -> None:
    """Called after each stage completed, or was taken from the cache (``cached`` is True).

    ``outputs`` maps the stage's output names to the objects it produced; it is empty for a
    cached stage (its outputs stay in the store until a stage needs them). An exception fails
    the run (exit 1), naming the plugin.

    Result: ignored; every implementation runs.
    """


@hookspec
def conveyor_on_stage_error(run: RunInfo, stage: Stage, error: BaseException) -> None:
    """Called when a stage raised ``error`` (its exception), before the run fails.

    The stage is already recorded as failed. Every plugin's implementation runs even if one
    raises; such an exception is printed as a warning and does not replace the stage's error.

    Cleanup: every implementation runs even if one raises.
    """


@hookspec
def conveyor_finish_run(run: RunInfo) -> None:
    """Called once every stage of a run has completed, before the run has any effect on others
    (the champion alias moves, see ``StageContext.on_run_success``) and before its status is
    recorded.

    The last word on whether the run succeeded: raise to fail it (exit 1, naming the plugin);
    then nothing deferred happens, the plugins after it are not called, and
    ``conveyor_after_run`` is told "failed". Put here what
    must succeed for the run to count (an upload the team relies on, a check across stages).

    .. versionadded:: 0.1 (issue 14: a run failed by an after-run hook had already promoted
       its model)

    Result: ignored; every implementation runs.
    """


@hookspec
def conveyor_after_run(run: RunInfo, status: str) -> None:
    """Called once at the end of every run with its final ``status``: "completed", "failed" or
    "interrupted", before the status is recorded.

    Every plugin's implementation runs even if one raises: put cleanup and notifications here
    (close a tracker's run, mirror it). The status is final when this is called, so every plugin
    is told the truth: an exception here is printed as a warning naming the plugin and does not
    change the run's status or exit code (to fail the run, raise in ``conveyor_finish_run``).

    .. versionchanged:: 0.1 an exception here no longer turns a completed run into a failed one

    Cleanup: every implementation runs even if one raises.
    """


# --- Tracking -----------------------------------------------------------------------------------


@hookspec
def conveyor_log_metrics(run: RunInfo, stage: str, metrics: Mapping[str, float],
                         cached: bool) -> None:
    """Called whenever a stage logs metrics (``context.log_metrics``), with the stage's name,
    and once for each stage taken from the cache with the metrics its earlier run logged
    (``cached`` is True then): every run reports every stage's metrics.

    ``metrics`` maps names to floats; Conveyor records them with the stage in the project
    store. Implement it to mirror metrics to an external tracker (MLflow, W&B, ...). An
    exception fails the stage (exit 1), naming the plugin.

    Result: ignored; every implementation runs.
    """


# --- Monitoring ---------------------------------------------------------------------------------


@hookspec
def conveyor_drift_detectors(register: Callable[..., None]) -> None:
    """Contribute drift tests that ``monitor.drift.numeric`` / ``.categorical`` can select.

    Call ``register(DriftDetector(name=..., kinds=frozenset({"numeric"}), test=...,
    default_threshold=...))`` once per detector. ``test(distributions, threshold)`` receives a
    ``conveyor.FeatureDistributions`` (the reference's and the batch's counts over the same
    bins, never raw rows) and returns a ``conveyor.DriftResult``. Names are unique across
    plugins; the monitoring plugin's built-ins (psi, ks, chi2, js) come through this same hook.
    A detector whose ``test`` raises fails the monitoring of that batch, naming the plugin.

    Result: none; call register(...) for each contribution.
    """


@hookspec
def conveyor_alert(alert: Alert, project_dir: Path, config: Mapping[str, Any]) -> None:
    """Called when monitoring or retraining has something to tell people.

    ``alert`` is a ``conveyor.Alert``: ``kind`` ("drift", "performance", "retrain_decision",
    "promotion"), ``severity`` ("info", "warning", "critical"), a one-line ``message``, the
    ``model`` ("name:version") and JSON-able ``details``. ``config`` is the resolved config of
    the command that fired it (its overrides included): read your settings there rather than
    composing the project again. Every plugin's implementation is
    called; one that raises is reported by name (on stderr) and the others still run, and the
    command that fired the alert carries on: deliver best-effort, with your own timeouts.
    Fire alerts with ``conveyor.alerts.fire``.

    Cleanup: every implementation runs even if one raises.
    """


@hookspec(firstresult=True)
def conveyor_monitor_batch(project_dir: Path, data: Path, labels: Path | None,
                           model: str | None, quiet: bool, host: Host, session: Session
                           ) -> Any:
    """Monitor one batch file against a registered model and record the result in the store.

    Called by tools that process batches unattended (``conveyor watch`` of conveyor-retrain)
    so that they need not know which monitoring plugin is installed. ``data`` is a batch file
    (CSV, TSV or Parquet); ``labels`` an optional file of ground truth joined on the project's
    ``data.id_column`` (a ``data.target`` column in the batch serves as well); ``model`` is
    ``"NAME"`` or ``"NAME:VERSION"`` (None: the champion of the project's only model).
    ``quiet`` asks for no progress output. ``session`` is the caller's ``conveyor.Session``
    (the command's: its plugins, config and store); ``host`` is ``session.host``, kept for
    plugins written before sessions: call validation, drift detector and alert hooks through
    it, and ``conveyor.api`` functions with the session.

    Return the recorded ``conveyor_monitor.records.BatchRecord`` -- also for a batch that failed
    validation (status "invalid") or had too little data ("insufficient"): those are results,
    not errors. Raise a ``conveyor.ConveyorError`` for what stops monitoring altogether (no
    champion, an unreadable file). Return None to leave the batch to another plugin.
    First result wins; conveyor-monitor implements it.

    Result: first non-None answer wins.
    """


@hookspec(firstresult=True)
def conveyor_join_feedback(session: Session, model_name: str | None, events: Path, source: str,
                           settings: FeedbackSettings) -> FeedbackResult | None:
    """Join a file of delayed feedback to what a model served, and score it per period.

    Called by ``conveyor feedback --data FILE`` (conveyor-monitor) and ``conveyor watch
    --feedback DIR`` (conveyor-retrain). ``events`` is the file (CSV, TSV or Parquet: purchases
    and clicks for a recommender, ground-truth labels for a classifier or regressor), ``source``
    its path relative to the project (as recorded), ``model_name`` the registered model whose
    prediction log (``conveyor.predictions``) holds what was served (None: the project's only
    model), ``settings`` the ``feedback`` config section (``conveyor.feedback.FeedbackSettings``:
    period, window, relevant events, join kind). ``session`` is the caller's
    ``conveyor.Session`` (its config, store and plugins).

    Return a ``conveyor.feedback.FeedbackResult``: one ``FeedbackPeriod`` per period of the
    serving time that the file covers (empty periods included, status "insufficient"), with
    the online metrics keyed like the offline evaluation's, the matched and unmatched event
    counts (feedback that matches nothing is counted, never dropped silently) and drift
    figures; the caller records each period as a monitored batch. Raise a
    ``conveyor.ConveyorError`` for a file that cannot be joined (a missing column, no
    prediction log), naming the file and the setting. Return None when the project's model is
    not yours (conveyor-recsys answers for recommenders; conveyor-monitor's own implementation,
    ``trylast``, for classifiers and regressors).

    Result: first non-None answer wins.
    """


@hookspec(firstresult=True)
def conveyor_compile_model(model: Any, features: list[str], kinds: Mapping[str, str]
                           ) -> CompiledArtifact | None:
    """Compile a registered version's model for fast inference (``conveyor.compiled``).

    Called once per version: when ``conveyor.register`` records it (after the run succeeds)
    or when ``api.load_model(..., compiled=True)`` first meets a version without a record.
    ``model`` is the object the training stage stored (for conveyor-sklearn, the fitted
    Pipeline); ``features`` and ``kinds`` come from the version's ``conveyor.ModelContract``
    (feature -> "number" or "text"; empty for a version without a contract: read them from
    the model).

    Return a ``conveyor.compiled.CompiledArtifact``: the ``CompiledModel`` (``form``,
    ``features``, ``kinds``, ``classes``, a thread-safe ``predict_columns``), the name of the
    codec that stores it, and the converter and runtime versions. Build its runtime with
    ``conveyor.compiled.inference_threads()`` threads. Do not check it yourself: the core runs
    the parity gate on the version's test rows and serves the Python model when it fails.
    Raise ``conveyor.compiled.NotCompilable("no ONNX converter for step 'x' (MyStep)")`` for a
    model you know but cannot compile (the message is the reason recorded and shown); return
    None for a model that is not yours.

    Result: first non-None answer wins.
    """
