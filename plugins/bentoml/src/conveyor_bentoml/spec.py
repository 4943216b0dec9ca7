"""What `conveyor serve` hands to the BentoML worker processes: a small JSON file named by the
environment variable CONVEYOR_SERVE_SPEC (or `serve_spec.json` inside a built Bento)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "CONVEYOR_SERVE_SPEC"
BUNDLED = "serve_spec.json"


@dataclass(frozen=True)
class ServeSpec:
    project_dir: str      # the project whose store holds the model (a copy of it in a Bento)
    model_name: str
    features: list[str]   # the columns the model takes, in order
    schema: dict[str, Any] | None  # conveyor.validation.SchemaDescription.to_dict()
    settings: dict[str, Any]       # the resolved `serve` section
    hot_swap: bool = True
    version: int | None = None     # a fixed version (a Bento's); None: the champion

    def dump(self, path: Path) -> Path:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=1, default=str))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path) -> ServeSpec:
        return cls(**json.loads(Path(path).read_text()))


def current() -> ServeSpec:
    """The spec of this server: from CONVEYOR_SERVE_SPEC, else the one bundled next to the
    service in a Bento (its project path relative to the Bento's source folder)."""
    named = os.environ.get(ENV)
    bundled = Path(named) if named else Path.cwd() / BUNDLED
    if not bundled.is_file():
        raise RuntimeError(f"no serving spec: set {ENV} (conveyor serve does) or serve a Bento "
                           "made by `conveyor build`")
    spec = ServeSpec.load(bundled)
    project = Path(spec.project_dir)
    if not project.is_absolute():
        spec = ServeSpec(**{**spec.__dict__, "project_dir": str(bundled.parent / project)})
    return spec
