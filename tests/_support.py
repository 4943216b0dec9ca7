"""Helpers shared by the bad-input and fault tests: assertions on the user contract, small
projects made of project-local plugin modules (fast: no scikit-learn), fake installed plugins."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path
from typing import Any

import yaml
from conveyor.testing import (  # noqa: F401
    Project,
    assert_run_failed,
    assert_usage_error,
    store_rows,
)


def recorded_runs(project: Project) -> list[dict[str, Any]]:
    """The runs table, read directly (no CLI), on either backend: empty when no store was ever
    made."""
    return store_rows(project.path, "SELECT * FROM runs ORDER BY created_at")


def artifact_files(project: Project) -> list[Path]:
    folder = project.path / ".conveyor" / "artifacts"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def assert_artifacts_whole(project: Project) -> None:
    """Every file under .conveyor/artifacts has the sha256 its name says."""
    for path in artifact_files(project):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert path.name.startswith(digest), f"{path} is not whole (sha256 {digest[:12]})"


def line_of(path: Path, text: str) -> int:
    """1-based number of the first line of `path` containing `text`."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


# --- small projects of project-local plugin modules --------------------------------------------

# Stage types for fault tests. Each behaviour is switched by a file in the project folder, so a
# test can "fix the cause" between two runs without touching the config (and the cache keys).
STAGES_MODULE = '''
import time

import conveyor


def _produce(ctx):
    return {"value": {"n": 1}}


def _flaky(ctx):
    if (ctx.project_dir / "BREAK").exists():
        raise ValueError("flaky stage broke on purpose")
    return {"result": {"n": ctx.inputs["value"]["n"] + 1}}


def _slow(ctx):
    (ctx.project_dir / "slow-stage-started").write_text(ctx.run.id)
    if (ctx.project_dir / "SLOW").exists():
        time.sleep(120)
    return {"slow": {"done": True}}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("faults.produce", _produce))
    register(conveyor.StageType("faults.flaky", _flaky))
    register(conveyor.StageType("faults.slow", _slow))
'''

CLEANUP_MODULE = '''
import conveyor


@conveyor.hookimpl
def conveyor_after_run(run, status):
    (run.project_dir / "after-run.marker").write_text(status)
'''

DEFAULT_PIPELINE = {
    "first": {"uses": "faults.produce"},
    "second": {"uses": "faults.flaky", "needs": ["first"]},
}


def local_project(folder: Path, *, pipeline: dict[str, Any] | None = None,
                  local: list[str] | None = None, modules: dict[str, str] | None = None,
                  extra: dict[str, Any] | None = None) -> Project:
    """A project with no scikit-learn stage: pipeline stages come from local plugin modules."""
    folder.mkdir(parents=True, exist_ok=True)
    modules = {"faultstages": STAGES_MODULE, "cleanup": CLEANUP_MODULE, **(modules or {})}
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
    config = {"defaults": ["conveyor/defaults", "_self_"], "project": "faults",
              "plugins": {"local": local if local is not None else ["faultstages", "cleanup"]},
              "pipeline": pipeline if pipeline is not None else DEFAULT_PIPELINE, **(extra or {})}
    (folder / "conveyor.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return Project(folder)


def fake_distribution(site: Path, name: str, module: str, source: str,
                      version: str = "0.1", requires: tuple[str, ...] = ()) -> dict[str, str]:
    """An 'installed' plugin without pip: a dist-info with a `conveyor` entry point and its
    module in `site`. Returns the environment that puts `site` on the subprocess's path.
    `requires` are its Requires-Dist lines (e.g. "conveyor>=0.1,<0.2")."""
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"  # as pip names it
    info.mkdir()
    requires_dist = "".join(f"Requires-Dist: {line}\n" for line in requires)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires_dist}")
    (info / "entry_points.txt").write_text(f"[conveyor]\n{name} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    return {"PYTHONPATH": str(site)}
