"""Finding, loading and checking `data.schema`: a Pandera YAML file, or a `DataFrameModel`
(or `DataFrameSchema`) by import path. Loaded schemas are cached per process (keyed on the
file's size and mtime), so a server validating every request reads the file once.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import conveyor

YAML_SUFFIXES = (".yaml", ".yml")
TOP_LEVEL_KEYS = {
    "schema_type", "version", "api", "dataframe_library", "columns", "index", "checks", "dtype",
    "coerce", "strict", "name", "ordered", "unique", "report_duplicates", "unique_column_names",
    "add_missing_columns", "title", "description", "metadata", "drop_invalid_rows", "multiindex",
}
HINT = ("see `conveyor schema infer DATA` for a schema to start from, and Pandera's YAML format: "
        "https://pandera.readthedocs.io/en/stable/dataframe_schemas.html")


def handles(schema: str) -> bool:
    """YAML files and Python import paths (`schemas.Customers`) are this plugin's."""
    if schema.lower().endswith(YAML_SUFFIXES):
        return True
    return "/" not in schema and "\\" not in schema and all(
        part.isidentifier() for part in schema.replace(":", ".").split("."))


@dataclass
class Loaded:
    schema: Any  # pandera DataFrameSchema, as written (expectations included)
    description: str
    variants: dict[tuple[str, str | None], Any]
    hard: Any = None  # the schema without its expectations (see `expectations`)
    expectations: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        from conveyor_pandera.expectations import split

        self.hard, self.expectations = split(self.schema)
        if self.expectations:
            self.description += f" ({len(self.expectations)} expectations)"


_CACHE: dict[tuple[str, str], tuple[tuple[int, int] | None, Loaded]] = {}


def load(schema: str, project_dir: Path, import_target: Any) -> Loaded:
    key = (schema, str(project_dir))
    path = project_dir / schema if schema.lower().endswith(YAML_SUFFIXES) else None
    stamp = None
    if path is not None:
        try:
            stat = path.stat()
        except OSError:
            raise conveyor.ConfigError(
                f"data.schema: schema file not found: {path}",
                hint="paths are relative to the project folder; write one with "
                     f"`conveyor schema infer DATA -o {schema}`") from None
        stamp = (stat.st_size, stat.st_mtime_ns)
    cached = _CACHE.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    loaded = _from_yaml(path, schema) if path is not None else \
        _from_import(schema, project_dir, import_target)
    _CACHE[key] = (stamp, loaded)
    return loaded


def pandera() -> Any:
    """`pandera.pandas`, with this plugin's checks registered (`min_rows` for data frames)."""
    import pandas as pd
    import pandera.pandas as pa

    if not hasattr(pa.Check, "min_rows"):
        from pandera.extensions import register_check_method

        @register_check_method(statistics=["min_value"], supported_types=pd.DataFrame)
        def min_rows(frame: Any, *, min_value: int) -> bool:
            """The frame has at least `min_value` rows (e.g. `checks: {min_rows: 100}`)."""
            return len(frame) >= min_value

    return pa


def _from_yaml(path: Path, name: str) -> Loaded:
    import yaml

    pa = pandera()
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        raise conveyor.ConfigError(f"data.schema: {where}: invalid YAML: "
                                   f"{getattr(exc, 'problem', None) or exc}",
                                   hint="check the indentation, quotes and brackets there") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise conveyor.ConfigError(f"data.schema: cannot read {path}: {exc}") from exc
    _check_structure(data, name, pa)
    from pandera.io.pandas_io import deserialize_schema

    try:
        schema = deserialize_schema(data)
    except Exception as exc:
        raise conveyor.ConfigError(f"data.schema: {name} is not a valid Pandera schema: "
                                   f"{type(exc).__name__}: {exc}", hint=HINT) from exc
    return Loaded(schema, f"pandera schema {name}, {len(schema.columns)} columns", {})


def _check_structure(data: Any, name: str, pa: Any) -> None:
    """Pandera's reader ignores unknown keys; a misspelt `nulable:` must not pass silently."""
    def bad(where: str, problem: str, close: list[str] | None = None) -> conveyor.ConfigError:
        return conveyor.ConfigError(
            f"data.schema: {name} is not a valid Pandera schema: {where}: {problem}"
            + (f"; did you mean '{close[0]}'?" if close else ""), hint=HINT)

    if not isinstance(data, dict):
        raise bad("the file", f"expected a mapping with 'columns:', found {type(data).__name__}")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise bad(f"'{key}'", "unknown key", difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, 1))
    columns = data.get("columns") or {}
    if not isinstance(columns, dict):
        raise bad("columns", "expected a mapping of column name to its rules")
    from pandera.engines import pandas_engine
    from pandera.io._flat_checks import COMPONENT_RESERVED_KEYS

    known = sorted(COMPONENT_RESERVED_KEYS | {"metadata"})
    checks = sorted(n for n in dir(pa.Check) if not n.startswith("_")
                    and callable(getattr(pa.Check, n)) and n.islower())
    for column, rules in columns.items():
        if rules is None:
            continue
        if not isinstance(rules, dict):
            raise bad(f"columns.{column}", "expected a mapping of rules (dtype, nullable, checks)")
        for key in rules:
            if key not in known and not (key in checks or hasattr(pa.Check, str(key))):
                raise bad(f"columns.{column}.{key}", "unknown key or check",
                          difflib.get_close_matches(str(key), known + checks, 1))
        if rules.get("dtype") is not None:
            try:
                pandas_engine.Engine.dtype(rules["dtype"])
            except Exception:
                raise bad(f"columns.{column}.dtype", f"unknown data type '{rules['dtype']}'"
                          " (e.g. int64, float64, str, bool, category, datetime64[ns])") from None
    frame_checks = data.get("checks")
    if isinstance(frame_checks, dict):
        for check in frame_checks:
            if not hasattr(pa.Check, str(check)):
                raise bad(f"checks.{check}", "unknown check",
                          difflib.get_close_matches(str(check), checks, 1))


def _from_import(path: str, project_dir: Path, import_target: Any) -> Loaded:
    import sys

    pa = pandera()
    # `schemas.Customers` is the project's schemas.py: importable while it is imported, and
    # the folder is off the import path again afterwards.
    added = str(project_dir) not in sys.path
    if added:
        sys.path.insert(0, str(project_dir))
    try:
        obj = import_target(path.replace(":", "."))
    finally:
        if added:
            sys.path.remove(str(project_dir))
    if isinstance(obj, type) and issubclass(obj, pa.DataFrameModel):
        try:
            schema = obj.to_schema()
        except Exception as exc:
            raise conveyor.ConfigError(f"data.schema: the DataFrameModel {path} is not valid: "
                                       f"{type(exc).__name__}: {exc}") from exc
        return Loaded(schema, f"pandera DataFrameModel {path}, {len(schema.columns)} columns", {})
    raise conveyor.ConfigError(f"data.schema: {path} is not a pandera DataFrameModel class",
                               hint="point data.schema at a YAML schema file or at a "
                                    "class deriving from pandera.pandas.DataFrameModel")


def for_purpose(loaded: Loaded, purpose: str, target: str | None) -> Any:
    """The schema's hard checks as they apply to a purpose: a monitoring batch or a serving
    request may lack the target column, and a request (a few rows) is not held to the
    row-count checks."""
    key = (purpose, target)
    if key not in loaded.variants:
        schema = loaded.hard  # expectations are counted apart (`expectations.count`)
        if purpose != "train":
            if target and target in schema.columns and schema.columns[target].required:
                schema = schema.update_column(target, required=False)
            if purpose == "request" and any(c.name == "min_rows" for c in schema.checks):
                import copy

                schema = copy.copy(schema)
                schema.checks = [c for c in schema.checks if c.name != "min_rows"]
        loaded.variants[key] = schema
    return loaded.variants[key]


def snapshot(schema: str, project_dir: Path, import_target: Any, validator: str) -> Any:
    """The schema's content for a model's contract (`conveyor_schema_snapshot`): a YAML file as
    it is, a DataFrameModel written out as Pandera YAML; with the file it describes and what
    wrote it, from its `metadata.conveyor`."""
    loaded = load(schema, project_dir, import_target)
    if schema.lower().endswith(YAML_SUFFIXES):
        text = (project_dir / schema).read_text()
    else:
        try:
            text = loaded.schema.to_yaml()
        except Exception as exc:
            raise conveyor.ConfigError(
                f"data.schema {schema} cannot be written out as Pandera YAML to record with the "
                f"model: {type(exc).__name__}: {exc}",
                hint="write the schema as a YAML file (`conveyor schema infer DATA -o FILE`)"
            ) from exc
    mine = ((loaded.schema.metadata or {}).get("conveyor") or {}) \
        if isinstance(loaded.schema.metadata, dict) else {}
    return conveyor.SchemaSnapshot(
        text=text, suffix=".yaml", describes=mine.get("describes"),
        written_by=mine.get("written_by"), columns=tuple(str(c) for c in loaded.schema.columns),
        validator=validator)


def check_overlap(loaded: Loaded, frame: Any, name: str) -> None:
    """A schema that names none of the data's columns was written for other data: say so
    (exit 2, naming the file) rather than list every column as missing."""
    columns = [c for c in loaded.schema.columns.values() if not c.regex]
    if not columns or len(loaded.schema.columns) != len(columns):
        return
    present = {str(c) for c in frame.columns}
    if not any(str(c.name) in present for c in columns):
        listed = ", ".join(str(c.name) for c in columns[:8])
        found = ", ".join(sorted(present)[:8]) or "none"
        raise conveyor.ConfigError(
            f"data.schema: {name} shares no column with the data: it lists {listed}"
            + ("..." if len(columns) > 8 else "") + f"; the data has {found}"
            + ("..." if len(present) > 8 else ""),
            hint="point data.schema at the schema of this data, or write one with "
                 "`conveyor schema infer DATA -o schema.yaml`")
