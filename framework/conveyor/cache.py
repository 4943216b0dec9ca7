"""Stage fingerprints and the decision, with its reason, to run a stage or reuse its result.

A stage's fingerprint covers its stage type and version, its resolved settings, the
fingerprints of the stages it needs, and the content of the files it reads. Nothing here
imports a heavy library: a fully cached run is decided from the store alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.config import flatten
from conveyor.planner import PlannedStage
from conveyor.store.artifacts import ArtifactRef, sha256_file
from conveyor.store.db import Store, dumps, loads
from conveyor.store.runs import Runs, StoredStage


@dataclass
class Decision:
    stage: PlannedStage
    fingerprint: str
    files: dict[str, str]
    upstream: dict[str, str]
    cached_from: StoredStage | None = None  # the stage being reused
    reason: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def runs(self) -> bool:
        return self.cached_from is None


def file_sha256(store: Store, path: Path, *, verify: bool = False) -> str:
    """The file's sha256, from a cache keyed on (size, mtime, inode) so unchanged files are not
    read again; with `verify`, read again whatever the cache says (and refresh it)."""
    stat = path.stat()
    key = str(path.resolve())
    known = store.file_hash(key)
    if not verify and known and known[:3] == (stat.st_size, stat.st_mtime_ns, stat.st_ino):
        return known[3]
    digest = sha256_file(path)
    store.remember_file_hash(key, stat.st_size, stat.st_mtime_ns, stat.st_ino, digest)
    return digest


def input_path(project_dir: Path, name: str) -> Path:
    """Where a stage's input file is: names are relative to the project folder."""
    return Path(name) if os.path.isabs(name) else project_dir / name


def decide(plan: list[PlannedStage], store: Store, project_dir: Path, force: bool = False,
           file_version: Callable[[Path], str] | None = None) -> list[Decision]:
    """Each stage's fingerprint and whether it runs. `file_version(path)` gives a data file's
    version (the `conveyor_file_fingerprint` hook); by default its cached sha256."""
    if file_version is None:
        def file_version(path: Path) -> str:
            return file_sha256(store, path)
    decisions: dict[str, Decision] = {}
    for stage in plan:
        files = {}
        if stage.type.input_files is not None:
            for name in stage.type.input_files(stage.settings):
                path = input_path(project_dir, name)
                if path.is_file():
                    files[str(name)] = file_version(path)
        upstream = {need: decisions[need].fingerprint for need in stage.needs}
        body = {"type": stage.uses, "version": stage.type.version, "settings": stage.settings,
                "upstream": upstream, "files": files}
        fingerprint = hashlib.sha256(
            json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
        decision = Decision(stage, fingerprint, files, upstream)
        if not force:
            _look_up(decision, store)
        else:
            decision.reason = "--force"
        if decision.runs and not decision.reason:
            decision.reason = _why_changed(decision, store)
        decisions[stage.name] = decision
    _rerun_producers_of_ephemeral(plan, decisions)
    return [decisions[stage.name] for stage in plan]


def _look_up(decision: Decision, store: Store) -> None:
    rows = Runs(store).completed_stages(decision.fingerprint, limit=5)
    for row in rows:
        outputs = loads(row.outputs, {})
        if all(value.get("ephemeral") or store.artifacts.exists(ArtifactRef.from_dict(value))
               for value in outputs.values()):
            decision.cached_from = row
            decision.outputs = outputs
            decision.reason = f"unchanged since run {row.run_id}"  # the run that computed it
            return
    if rows:
        decision.reason = "its cached outputs are missing from the store"


def _why_changed(decision: Decision, store: Store) -> str:
    stage = decision.stage
    before = Runs(store).last_completed_stage(stage.name)
    if before is None:
        return "no earlier result"
    if before.type != stage.uses:
        return f"stage type changed: {before.type} → {stage.uses}"
    if before.type_version != stage.type.version:
        return f"code of {stage.uses} changed: {before.type_version} → {stage.type.version}"
    old, new = flatten(loads(before.settings, {})), flatten(stage.settings)
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k, "∅") != new.get(k, "∅")]
    if changed:
        parts = [f"{k}: {_show(old.get(k, '∅'))} → {_show(new.get(k, '∅'))}" for k in changed[:3]]
        more = f" (+{len(changed) - 3} more)" if len(changed) > 3 else ""
        return "setting changed: " + "; ".join(parts) + more
    old_files = loads(before.files, {})
    for name, digest in decision.files.items():
        if old_files.get(name) != digest:
            return f"data file {name} changed"
    old_upstream = loads(before.upstream, {})
    changed_inputs = [n for n, fp in decision.upstream.items() if old_upstream.get(n) != fp]
    if changed_inputs:
        return "input from " + ", ".join(f"'{n}'" for n in changed_inputs) + " changed"
    return "no reusable earlier result"


def _show(value: Any) -> str:
    text = dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def _rerun_producers_of_ephemeral(plan: list[PlannedStage], decisions: dict[str, Decision]) -> None:
    """A stage that runs needs its inputs; in-memory-only outputs of cached producers are
    recomputed by running the producer again (and, in turn, its own producers)."""
    for stage in reversed(plan):
        decision = decisions[stage.name]
        if not decision.runs:
            continue
        for need in stage.needs:
            producer = decisions[need]
            ephemeral = [n for n, v in producer.outputs.items() if v.get("ephemeral")]
            if not producer.runs and ephemeral:
                producer.cached_from = None
                producer.reason = (f"its output '{ephemeral[0]}' is kept in memory only, and "
                                   f"'{stage.name}' needs it")
