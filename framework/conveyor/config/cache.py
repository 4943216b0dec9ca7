"""A cache of Hydra's composition, so a run whose config files and overrides did not change
does not import or run Hydra (about 0.1-0.15 s of every `conveyor run`).

What is cached is the composed config *before* interpolations are resolved, so `${oc.env:...}`
and friends are still resolved afresh on every run. An entry is used only if every YAML file
that could take part in the composition (in the project, the config library and the plugins'
config folders) has the same size and mtime as when it was stored, and no new one appeared.
Configs that use resolvers only Hydra registers (`${now:...}`, `${hydra:...}`) are not cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CACHE_DIR = Path(".conveyor") / "compose"
KEEP = 64
RESOLVER = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*:")


def _key(project_dir: Path, overrides: Sequence[str], dirs: Sequence[Path]) -> str:
    from importlib import metadata

    body = {"overrides": list(overrides), "dirs": [str(d) for d in dirs],
            "project": str(project_dir), "conveyor": metadata.version("conveyor"),
            "hydra": metadata.version("hydra-core")}
    return hashlib.sha256(json.dumps(body).encode()).hexdigest()[:32]


def _yaml_files(folder: Path) -> dict[str, list[int]]:
    """Every YAML file below `folder` (hidden folders skipped) with its (size, mtime_ns)."""
    stamps: dict[str, list[int]] = {}
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif entry.name.endswith((".yaml", ".yml")):
                stat = entry.stat()
                stamps[entry.path] = [stat.st_size, stat.st_mtime_ns]
    return stamps


def _stamps(dirs: Sequence[Path]) -> dict[str, list[int]]:
    stamps: dict[str, list[int]] = {}
    for folder in dirs:
        stamps.update(_yaml_files(folder))
    return stamps


def lookup(project_dir: Path, overrides: Sequence[str],
           dirs: Sequence[Path]) -> tuple[dict[str, Any], dict[str, str]] | None:
    path = project_dir / CACHE_DIR / f"{_key(project_dir, overrides, dirs)}.json"
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if entry.get("files") != _stamps(dirs):
        return None
    return entry["config"], entry["choices"]


def store(project_dir: Path, overrides: Sequence[str], dirs: Sequence[Path],
          config: dict[str, Any], choices: dict[str, str]) -> None:
    text = json.dumps(config)
    if any(not name.startswith("oc.") for name in RESOLVER.findall(text)):
        return  # needs a resolver only Hydra registers
    folder = project_dir / CACHE_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        key = _key(project_dir, overrides, dirs)
        tmp = folder / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"config": config, "choices": choices, "files": _stamps(dirs)}))
        tmp.replace(folder / f"{key}.json")
        entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in entries[:-KEEP]:
            old.unlink(missing_ok=True)
    except OSError:
        pass  # a cache: failing to write it only costs time next run
