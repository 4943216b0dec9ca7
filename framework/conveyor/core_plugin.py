"""The core's own hook implementations, registered like any plugin (name `conveyor.core`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from conveyor.contributions import Codec
from conveyor.markers import hookimpl

DEFAULT_TARGET_PREFIXES = ("sklearn", "xgboost", "lightgbm", "catboost", "imblearn")


@hookimpl(trylast=True)
def conveyor_run_stage(stage: Any, context: Any) -> Mapping[str, Any] | None:
    outputs = stage.type.run(context)
    return {} if outputs is None else outputs


def _is_json(obj: Any) -> bool:
    return isinstance(obj, dict | list | str | int | float | bool) or obj is None


def _dump_json(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, sort_keys=True, default=str))


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text())


@hookimpl
def conveyor_codecs(register: Callable[[Codec], None]) -> None:
    register(Codec(name="json", suffix=".json", handles=_is_json, dump=_dump_json, load=_load_json,
                   priority=-10, inline=True))


@hookimpl
def conveyor_target_prefixes(register: Callable[[str], None]) -> None:
    for prefix in DEFAULT_TARGET_PREFIXES:
        register(prefix)


@hookimpl
def conveyor_stage_types(register: Callable[[Any], None]) -> None:
    from conveyor.register_stage import REGISTER
    from conveyor.validate_stage import VALIDATE

    register(REGISTER)
    register(VALIDATE)
