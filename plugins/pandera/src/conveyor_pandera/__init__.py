"""Conveyor's Pandera plugin: validates `data.schema` (Pandera YAML, or a DataFrameModel by
import path) for the validate stage, monitoring batches and serving requests alike, through the
core's validation hooks; `conveyor schema infer`; a schema in every `conveyor init` project.

Pandera and pandas are imported only inside the hooks, so `conveyor --help` and fully cached runs
never pay for them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import conveyor

from conveyor_pandera import infer

__version__ = "0.1.0"


@functools.cache
def _validator() -> str:
    from importlib.metadata import version

    return f"pandera {version('pandera')}"


@conveyor.hookimpl
def conveyor_check_schema(schema: str, project_dir: Path,
                          import_target: Callable[[str], Any]) -> str | None:
    from conveyor_pandera import schemas

    if not schemas.handles(schema):
        return None
    return schemas.load(schema, project_dir, import_target).description


@conveyor.hookimpl
def conveyor_validate_frame(frame: Any, schema: str, purpose: str, project_dir: Path,
                            target: str | None, import_target: Callable[[str], Any]
                            ) -> conveyor.ValidationReport | None:
    import dataclasses

    from conveyor_pandera import expectations, fast, report, schemas

    if not schemas.handles(schema):
        return None
    loaded = schemas.load(schema, project_dir, import_target)
    applied = schemas.for_purpose(loaded, purpose, target)
    if purpose == "train":
        schemas.check_overlap(loaded, frame, schema)
    if fast.passes(applied, frame):
        result = conveyor.ValidationReport(ok=True, rows=len(frame), schema=schema,
                                           validator=_validator(), data=frame)
    else:
        result = report.detailed(applied, frame, schema, _validator())
    if loaded.expectations:
        found, rows = expectations.count(
            loaded.expectations, result.data if result.data is not None else frame)
        if found:
            result = dataclasses.replace(result, expectations=found, unexpected_rows=rows)
    return result


@conveyor.hookimpl
def conveyor_describe_schema(schema: str, project_dir: Path, target: str | None,
                             import_target: Callable[[str], Any]) -> Any:
    from conveyor_pandera import describe, schemas

    if not schemas.handles(schema):
        return None
    loaded = schemas.load(schema, project_dir, import_target)
    return describe.describe(loaded.schema, schema, target, _validator())


@conveyor.hookimpl
def conveyor_schema_snapshot(schema: str, project_dir: Path,
                             import_target: Callable[[str], Any]) -> Any:
    from conveyor_pandera import schemas

    if not schemas.handles(schema):
        return None
    return schemas.snapshot(schema, project_dir, import_target, _validator())


@conveyor.hookimpl
def conveyor_infer_schema(frame: Any, source: str | None, target: str | None,
                          id_column: str | None, project_dir: Path) -> Any:
    text = infer.infer_contract(frame, source=source, target=target, id_column=id_column)
    return conveyor.SchemaSnapshot(text=text, suffix=".yaml", describes=source,
                                   written_by="inferred by the run",
                                   columns=tuple(str(c) for c in frame.columns),
                                   validator=_validator())


@conveyor.hookimpl
def conveyor_cli_commands(register: Callable[[conveyor.CliCommand], None]) -> None:
    register(infer.SCHEMA)


@conveyor.hookimpl
def conveyor_after_init(project_dir: Path) -> None:
    infer.add_schema_to_project(project_dir)
