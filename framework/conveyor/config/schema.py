"""The framework's own config sections, typed. Plugins add theirs via `conveyor_config_schemas`."""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any

from omegaconf import MISSING


@dataclass
class DataConfig:
    source: str | None = None  # csv / parquet path, or sklearn:load_<name>
    target: str | None = None
    schema: str | None = None  # a validation schema, read by the validation plugin
    id_column: str | None = None
    test_size: float = 0.2
    stratify: bool = True


@dataclass
class SliceGateConfig:
    column: str | None = None
    gate: dict[str, str] = field(default_factory=dict)
    min_rows: int = 30


@dataclass
class EvaluateConfig:
    metrics: list[str] = field(default_factory=list)
    primary: str | None = None  # the metric sweeps optimise; defaults to metrics[0]
    gate: dict[str, str] = field(default_factory=dict)
    slices: SliceGateConfig = field(default_factory=SliceGateConfig)
    # The champion is scored only on test rows it never trained on; with fewer than this,
    # relative gate conditions fail closed.
    champion_min_rows: int = 100
    # Paired bootstrap resamples for the interval of challenger - champion (0: no interval).
    bootstrap: int = 1000


@dataclass
class ValidateConfig:
    on_failure: str = "fail"  # fail | quarantine | warn: what invalid data does to a run
    max_invalid_fraction: float = 0.05  # quarantine: the largest share of rows it may drop


@dataclass
class PluginsConfig:
    disable: list[str] = field(default_factory=list)
    local: list[str] = field(default_factory=list)


@dataclass
class SecurityConfig:
    allowed_targets: list[str] = field(default_factory=list)
    # Secret keys (conveyor.secrets): regexes, each matched against a whole key segment, added
    # to the built-in ones (password, token, secret, api_key, key, ...) unless switched off.
    redact_keys: list[str] = field(default_factory=list)
    redact_builtin_keys: bool = True


@dataclass
class RegistryConfig:
    model_name: str | None = None  # defaults to the project name
    promote_on_gate: bool = True


@dataclass
class RunnerConfig:
    # Native thread pools (OpenMP, BLAS) of every stage: auto (the cores other processes leave
    # free) or a number; pipeline.<stage>.threads overrides it for one stage (conveyor.threads).
    threads: str = "auto"


@dataclass
class StoreConfig:
    # Where the project's store lives (conveyor.store.location): None is SQLite in
    # .conveyor/store.db, else an SQLAlchemy URL (postgresql+psycopg://user@host:5432/db).
    # CONVEYOR_STORE_URL / CONVEYOR_STORE_ARTIFACTS set them for every command of a team.
    # Read from the command line, the environment or conveyor.yaml's top-level store: block
    # only (commands like `runs list` compose no config): not from config groups.
    url: str | None = None
    # None is .conveyor/artifacts; else a local folder or an fsspec URL (s3://bucket/prefix).
    artifacts: str | None = None
    # How often a running run renews its lease (runs.heartbeat_at); a run whose lease is 3 x
    # older is shown interrupted from any machine.
    heartbeat_seconds: float = 10.0


CORE_SECTIONS: dict[str, tuple[Any, Any]] = {
    "project": (str, MISSING),
    "seed": (int, 0),
    "data": (DataConfig, field(default_factory=DataConfig)),
    "evaluate": (EvaluateConfig, field(default_factory=EvaluateConfig)),
    "validate": (ValidateConfig, field(default_factory=ValidateConfig)),
    "pipeline": (dict[str, Any], field(default_factory=dict)),
    "plugins": (PluginsConfig, field(default_factory=PluginsConfig)),
    "security": (SecurityConfig, field(default_factory=SecurityConfig)),
    "registry": (RegistryConfig, field(default_factory=RegistryConfig)),
    "env": (dict[str, Any], field(default_factory=dict)),
    "runner": (RunnerConfig, field(default_factory=RunnerConfig)),
    "store": (StoreConfig, field(default_factory=StoreConfig)),
}


def root_schema(plugin_sections: dict[str, type]) -> type:
    """The dataclass of a whole project config: core sections plus each plugin's."""
    fields = []
    for name, (kind, default) in CORE_SECTIONS.items():
        fields.append((name, kind, default))
    for name, kind in plugin_sections.items():
        fields.append((name, kind, field(default_factory=kind)))
    return make_dataclass("ProjectConfig", fields)
