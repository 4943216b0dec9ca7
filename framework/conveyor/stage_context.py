"""What a running stage sees: its settings, its inputs, the project, and the run's store."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import StageFailed

if TYPE_CHECKING:
    from conveyor.contributions import StageType
    from conveyor.store import ArtifactRef, Registry
    from conveyor.validation import ValidationReport


@dataclass(frozen=True)
class RunInfo:
    """The run, as hooks see it: its id, project, resolved `config` (secrets resolved: do not
    store it as it is; `conveyor.secrets` redacts), the config's hash, the version of each data
    file it reads, the `command` that started it ("run", "retrain", "predict", "reproduce"),
    the command line's `overrides` (secrets redacted), and the code version (`git_commit`,
    `git_dirty`; None outside git)."""

    id: str
    project: str
    project_dir: Path
    config: Mapping[str, Any]
    config_hash: str
    data_versions: Mapping[str, str]
    command: str = "run"
    overrides: tuple[str, ...] = ()
    git_commit: str | None = None
    git_dirty: bool | None = None


@dataclass(frozen=True)
class Stage:
    """One stage of the planned pipeline, as the lifecycle hooks see it (``stage=``).

    ``name`` is its key under ``pipeline:``, ``uses`` the stage type's name and ``type`` that
    `conveyor.StageType`; ``needs`` the stages it depends on; ``settings`` its resolved
    settings (typed by the stage type's ``settings_schema``; the reserved keys ``uses``,
    ``needs`` and ``threads`` are not among them; do not change them); ``position`` its place
    in the run's order (from 0); ``threads`` its ``pipeline.<name>.threads`` ("auto", a number
    or None when unset).
    """

    name: str
    uses: str
    needs: tuple[str, ...]
    settings: Mapping[str, Any]
    type: StageType
    position: int
    threads: str | int | None = None


class Inputs(Mapping[str, Any]):
    """The outputs of the stages this one `needs`, by output name, loaded on first access."""

    def __init__(self, stage: str, entries: dict[str, tuple[str, Callable[[], Any]]],
                 refs: dict[str, Any]) -> None:
        self._stage = stage
        self._entries = entries
        self._refs = refs
        self._values: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            if name not in self._entries:
                raise StageFailed(
                    f"stage '{self._stage}' asked for input '{name}', which none of the stages it "
                    f"needs produced; available: {', '.join(self._entries) or 'none'}",
                    hint=f"add the stage producing '{name}' to pipeline.{self._stage}.needs")
            self._values[name] = self._entries[name][1]()
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def producer(self, name: str) -> str:
        """The name of the stage that produced the input `name` (for messages that say where
        a malformed input came from)."""
        return self._entries[name][0]

    def ref(self, name: str) -> ArtifactRef | None:
        """The stored artifact behind an input, if it is stored (None for in-memory ones).
        Waits until the producing stage's outputs are written."""
        ref = self._refs.get(name)
        return ref() if callable(ref) else ref


class StoredOutputs(Mapping[str, "ArtifactRef"]):
    """A stage's outputs already written to the run's artifact store: what a
    `conveyor_run_stage` implementation returns when the stage ran elsewhere and stored its
    outputs there itself (conveyor-ray's task puts them through `ArtifactStore.put` and hands
    back only their `ArtifactRef`s, so a large output never travels back to `conveyor run`).

    `refs` maps output names to their references; `ephemeral` holds the outputs the stage type
    declares ephemeral (`StageType.ephemeral_outputs`: passed in memory, never stored). The
    runner records the references as the stage's outputs without storing anything again, after
    checking each one: a declared output name, a codec an installed plugin provides (with that
    codec's suffix), and an artifact present in the store with the recorded size. A reference
    failing a check fails the stage (exit 1) naming the plugin that returned it. Downstream
    stages load the outputs lazily, as they load a cached stage's; `conveyor_after_stage`
    receives a mapping that loads each output when it is read. As a mapping, this is
    name -> `ArtifactRef` (the stored outputs only)."""

    def __init__(self, refs: Mapping[str, ArtifactRef],
                 ephemeral: Mapping[str, Any] | None = None) -> None:
        self.refs: dict[str, ArtifactRef] = dict(refs)
        self.ephemeral: dict[str, Any] = dict(ephemeral or {})
        both = sorted(set(self.refs) & set(self.ephemeral))
        if both:
            raise ValueError(f"output '{both[0]}' is both stored and passed in memory")

    def __getitem__(self, name: str) -> ArtifactRef:
        return self.refs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.refs)

    def __len__(self) -> int:
        return len(self.refs)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={ref.sha256[:12]}" for name, ref in self.refs.items())
        return f"StoredOutputs({shown}{', ' if shown and self.ephemeral else ''}" \
               f"{', '.join(f'{n}=<in memory>' for n in self.ephemeral)})"


class StageContext:
    """Handed to `StageType.run`. Attributes are read-only by convention."""

    def __init__(self, *, name: str, settings: Mapping[str, Any], run: RunInfo, inputs: Inputs,
                 registry: Registry, load_artifact: Callable[[Any], Any],
                 import_target: Callable[[str], Any], log_metrics: Callable[[Mapping], None],
                 log: Callable[[str], None],
                 validate: Callable[[Any, str, str | None], ValidationReport] | None = None,
                 contract: Callable[[], Any] | None = None,
                 schemas: Any = None, stage_types: Mapping[str, Any] | None = None,
                 on_run_success: Callable[[Callable[[], str | None]], None] | None = None,
                 session: Any = None, run_output: Callable[[str], Any] | None = None
                 ) -> None:
        self.name = name
        self.settings = settings
        self.run = run
        self.inputs = inputs
        self.registry = registry
        self.import_target = import_target
        self._load_artifact = load_artifact
        self._log_metrics = log_metrics
        self._log = log
        self._validate = validate
        self._on_run_success = on_run_success
        # The native threads this stage runs with (conveyor.threads): pools the stage starts
        # itself (n_jobs, torch.set_num_threads) should follow it. Set by the runner.
        self.threads: int | None = None
        self._contract = contract
        self._schemas = schemas
        #: The installed stage types by name (`conveyor.StageType`), e.g. for
        #: `ModelContract.transform`, which applies a model's inference path.
        self.stage_types: Mapping[str, Any] = stage_types or {}
        #: The invocation's `conveyor.Session` (its plugin host, store and codecs) when the
        #: stage runs in the runner's process; None where it runs elsewhere (a Ray worker).
        #: Use it rather than open another session: one plugin host per command.
        self.session: Any = session
        self._run_output = run_output

    @property
    def config(self) -> Mapping[str, Any]:
        return self.run.config

    @property
    def project_dir(self) -> Path:
        return self.run.project_dir

    @property
    def seed(self) -> int:
        return int(self.run.config.get("seed", 0))

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Record metrics of this stage in the store (and pass them to tracker plugins)."""
        self._log_metrics(metrics)

    def log(self, message: str) -> None:
        """A progress message shown under the stage's line (secret values redacted)."""
        from conveyor.secrets import scrub

        self._log(scrub(message))

    def load_artifact(self, ref: Any) -> Any:
        """Load a stored artifact (an ArtifactRef or its dict form), checking its sha256."""
        return self._load_artifact(ref)

    def run_output(self, name: str) -> Any:
        """The value of the output `name` that a stage of this run produced (kept in memory,
        or loaded from the store), or None when no stage of this run produced one, whether or
        not this stage needs that stage. For work deferred with `on_run_success` that reads what
        the run made, such as the registered model's test rows."""
        return None if self._run_output is None else self._run_output(name)

    def on_run_success(self, action: Callable[[], str | None]) -> None:
        """Run `action` once the whole run has succeeded (every stage after this one, and every
        plugin's `conveyor_finish_run`), just before the run is recorded completed; never if
        the run fails or is interrupted. For effects other processes act on, such as moving
        the champion alias: a run that fails later must not have made them. The text `action`
        returns, if any, becomes this stage's verdict message (see `conveyor run`'s summary).
        An exception in `action` fails the run."""
        if self._on_run_success is None:
            raise StageFailed(f"stage '{self.name}' cannot defer work: no run to wait for")
        self._on_run_success(action)

    def validate(self, frame: Any, purpose: str = "train", *,
                 schema: str | None = None) -> ValidationReport:
        """Validate a frame against the project's `data.schema` (or `schema`) through the
        installed validation plugin; `purpose` is "train", "batch" or "request" (see
        `conveyor.validation.validate_frame`). With no schema set the report is ok and its
        `checked` is False."""
        if self._validate is None:
            raise StageFailed(f"stage '{self.name}' cannot validate: no validator was given")
        return self._validate(frame, purpose, schema)

    def contract(self) -> Any:
        """The model contract this stage's upstream stages make up (a `conveyor.ModelContract`):
        the run's `data` section, overridden by the `contract` outputs of the stages this one
        depends on, directly or not, in pipeline order, and the row transforms among them (the
        inference path). The `conveyor.register` stage records it with the version."""
        if self._contract is None:
            from conveyor.contract import assemble

            return assemble(self.run.config, [], [], {})
        return self._contract()

    def schema_snapshot(self, schema: str) -> Any:
        """The content of a `data.schema` (a `conveyor.SchemaSnapshot`, or None when no
        installed plugin writes it out): `conveyor.validation.schema_snapshot`."""
        return None if self._schemas is None else self._schemas.snapshot(schema)

    def infer_schema(self, frame: Any, *, source: str | None, target: str | None,
                     id_column: str | None) -> Any:
        """A schema inferred from `frame` by the validation plugin (a `conveyor.SchemaSnapshot`,
        or None when none infers): `conveyor.validation.infer_schema`."""
        return None if self._schemas is None else self._schemas.infer(
            frame, source=source, target=target, id_column=id_column)
