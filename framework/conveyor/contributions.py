"""What plugins contribute through the register callbacks of the extension hooks.

Each contribution is a small frozen dataclass: the core checks what it is handed (duplicate
names, wrong types) and names the contributing plugin when something is off.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.stage_context import StageContext
    from conveyor.store.tables import TableSet


@dataclass(frozen=True)
class StageType:
    """A kind of stage a pipeline can `uses:`.

    `run(ctx)` does the work and returns a mapping of named outputs (artifacts) or None.
    `version` enters every fingerprint: bump it when the stage's behaviour changes so cached
    results are recomputed (empty means the contributing distribution's version).
    `settings_schema` is a dataclass that types the stage's settings (unknown keys are errors).
    `input_files(settings)` names files whose content enters the fingerprint (data sources).
    `ephemeral_outputs` are passed in memory but never stored (cheap to recompute, e.g. a frame
    loaded from a file); a downstream stage that needs one re-runs its producer.
    `check(settings, ctx)` validates settings before anything runs (raise ConfigError); it is
    called only for stages that will actually run, so it may import heavy libraries.
    `row_transform(frame, settings)`, when given, declares the stage a row transform: it
    transforms rows before training (derives features, say), row for row, and returns the new
    frame; the stage's `run` must produce the same as its `data` output (typically
    `{"data": row_transform(ctx.inputs["data"], ctx.settings)}`). The `conveyor.register`
    stage records the row transforms upstream of it with the version (its inference path), and
    `predict`, `monitor` and `serve` apply them, in order, to raw records before scoring, so
    training and serving cannot skew. It must not depend on other rows than the one it
    transforms (a request has a few) and should be fast.
    `outputs` documents the outputs `run` returns: their names, each with a one-line
    description (`conveyor plugins list --json`, docs/reference/stage-types.md). When given,
    a stage returning a name not among them fails, naming the plugin; empty means undeclared.
    The name starts with the registering plugin's prefix, its entry point's name and a dot
    (`conveyor.hookspecs.conveyor_stage_types`).
    """

    name: str
    run: Callable[[StageContext], Mapping[str, Any] | None]
    description: str = ""
    version: str = ""
    settings_schema: type | None = None
    input_files: Callable[[Mapping[str, Any]], Iterable[str]] | None = None
    ephemeral_outputs: frozenset[str] = frozenset()
    check: Callable[[Mapping[str, Any], CheckContext], None] | None = None
    row_transform: Callable[[Any, Mapping[str, Any]], Any] | None = None
    outputs: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class CheckContext:
    """What a stage type's `check` may consult.

    `check_schema(schema)` asks the validation plugins whether a `data.schema` is usable and
    returns its description (see `conveyor.validation.check_schema`)."""

    stage: str
    project_dir: Path
    import_target: Callable[[str], Any]
    check_schema: Callable[[str], str] | None = None


@dataclass(frozen=True)
class Codec:
    """Serialises one kind of artifact to a file and back, without running arbitrary code.

    `dump` runs on a background thread, so the next stage starts at once, unless the codec is
    `inline` (small values such as JSON: written at once, so the stage is recorded at once).
    `prepare()`, if given, imports what `dump` needs; the runner calls it early on a background
    thread so the import overlaps with the stages' work.
    """

    name: str
    suffix: str
    handles: Callable[[Any], bool]
    dump: Callable[[Any, Path], None]
    load: Callable[[Path], Any]
    priority: int = 0
    prepare: Callable[[], None] | None = None
    inline: bool = False


@dataclass(frozen=True)
class CliCommand:
    """A `conveyor NAME ...` subcommand.

    `configure(parser)` adds arguments; `run(args, app)` does the work and returns an exit code
    (None means 0). Raise a ConveyorError subclass for user errors. A `description` written over
    several lines (with examples, say) is printed by `--help` as written; one line is wrapped.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Any], int | None]
    description: str = ""


@dataclass(frozen=True)
class ProjectTemplate:
    """A starting point for `conveyor init NAME --template TEMPLATE`.

    `create(destination, project_name)` writes the project's files into an empty folder.
    """

    name: str
    description: str
    create: Callable[[Path, str], None]


@dataclass(frozen=True)
class ConfigSchema:
    """Types one top-level config section (`model`, `monitor`, ...) with a dataclass.

    `check(section, where)`, when given, checks what types cannot say (a URL's form, a range)
    on every command that loads the config, before anything runs: `section` is the section
    read (an instance of `schema`), `where(key)` describes where a dotted key was set
    (`" (set in conveyor.yaml:12)"`, `" (set in the command line ('k=v'))"` or `""`) for the
    message of the `ConfigError` (exit 2) it raises."""

    section: str
    schema: type
    description: str = ""
    check: Callable[[Any, Callable[[str], str]], None] | None = None

    def read(self, config: Mapping[str, Any] | None) -> Any:
        """This section of a resolved config (`RunInfo.config`, `api.load_config(...).data`)
        as an instance of `schema`, nested dataclasses included: defaults where keys are
        absent, values converted to the declared types. A value that does not fit raises
        ConfigError naming the key."""
        from omegaconf import OmegaConf  # here, not at import: plugins load on every command
        from omegaconf.errors import OmegaConfBaseException

        from conveyor.errors import ConfigError

        section = (config or {}).get(self.section) or {}
        try:
            merged = OmegaConf.merge(OmegaConf.structured(self.schema), section)
            return OmegaConf.to_object(merged)
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", None)
            where = f"{self.section}.{key}" if key else self.section
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"invalid value for config key '{where}': {first}") from exc


NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass(frozen=True)
class FeatureDistributions:
    """One feature's reference and current distributions, as a drift detector sees them.

    Both sides are counted over the same bins (1-D numpy integer arrays of equal length):

    * numeric features: `reference`/`current` count rows per bin of the reference's quantile
      bins (`monitor.bins` of them, equal reference mass); `edges` are their inner edges, bin
      ``i`` being ``(edges[i-1], edges[i]]``, the first bin open to -inf and the last to +inf.
      `grid_edges`, `grid_reference`, `grid_current` are the same over a fine grid of
      reference quantiles (up to 10,000, plus each edge's left neighbour so ties get a bin of
      their own), for tests on the distribution functions (KS): the reference's cumulative
      share at ``grid_edges[i]`` is exact, and a statistic on the grid is within
      `grid_error` (the largest reference share between two grid edges) of the same
      statistic on the raw values.
    * categorical features: one bin per category in `labels` (the reference's categories, then
      categories seen only in the current batch); `edges` and the grid are None.

    Missing values are not in the bins; they are counted in `reference_missing` and
    `current_missing`. A detector is only called when both sides have at least
    `monitor.min_rows` non-missing values: below that, the feature is "insufficient data".
    """

    feature: str
    kind: str  # NUMERIC or CATEGORICAL
    reference: Any
    current: Any
    edges: Any = None
    labels: tuple[str, ...] = ()
    grid_edges: Any = None
    grid_reference: Any = None
    grid_current: Any = None
    grid_error: float = 0.0
    reference_missing: int = 0
    current_missing: int = 0

    @property
    def reference_rows(self) -> int:
        return int(self.reference.sum())

    @property
    def current_rows(self) -> int:
        return int(self.current.sum())


@dataclass(frozen=True)
class DriftResult:
    """A detector's verdict on one feature.

    `score` is the number compared with the threshold (a distance, or a p-value when
    `DriftDetector.p_value` is true); `drifted` the verdict. `statistic` is the test statistic
    when the score is a p-value. `insufficient` says why no verdict could be reached ("all 3
    values are missing"); the feature is then neither drifted nor fine, and raises no alarm.
    """

    score: float | None
    drifted: bool
    statistic: float | None = None
    insufficient: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DriftDetector:
    """A test for drift between a feature's reference and current distributions.

    `name` is what `monitor.drift.numeric` / `monitor.drift.categorical` select and what
    `monitor.thresholds` is keyed by (``psi``, ``ks``, ``chi2``, ``js`` are built in).
    `kinds` are the feature kinds it handles ("numeric", "categorical").
    `test(distributions, threshold)` gets a `FeatureDistributions` and the configured threshold
    (`default_threshold` when the project sets none) and returns a `DriftResult`. It must not
    keep state between calls and should be fast: it runs once per feature per batch, on counts,
    never on raw rows. `p_value` says the score is a p-value (drift when below the threshold)
    rather than a distance (drift when at or above it); reports draw the threshold accordingly.
    """

    name: str
    kinds: frozenset[str]
    test: Callable[[FeatureDistributions, float], DriftResult]
    default_threshold: float
    p_value: bool = False
    description: str = ""


@dataclass
class Contributions:
    """Everything the registered plugins contributed, keyed by name, with the plugin behind it."""

    stage_types: dict[str, StageType] = field(default_factory=dict)
    codecs: list[Codec] = field(default_factory=list)
    cli_commands: dict[str, CliCommand] = field(default_factory=dict)
    templates: dict[str, ProjectTemplate] = field(default_factory=dict)
    config_schemas: dict[str, ConfigSchema] = field(default_factory=dict)
    config_dirs: list[Path] = field(default_factory=list)
    target_prefixes: list[str] = field(default_factory=list)
    drift_detectors: dict[str, DriftDetector] = field(default_factory=dict)
    store_tables: list[TableSet] = field(default_factory=list)
    provider: dict[str, str] = field(default_factory=dict)
