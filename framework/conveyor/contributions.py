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
    """

    name: str
    run: Callable[[StageContext], Mapping[str, Any] | None]
    description: str = ""
    version: str = ""
    settings_schema: type | None = None
    input_files: Callable[[Mapping[str, Any]], Iterable[str]] | None = None
    ephemeral_outputs: frozenset[str] = frozenset()
    check: Callable[[Mapping[str, Any], CheckContext], None] | None = None


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
    """Types one top-level config section (`model`, `monitor`, ...) with a dataclass."""

    section: str
    schema: type
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
    provider: dict[str, str] = field(default_factory=dict)
