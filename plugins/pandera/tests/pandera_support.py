"""Assertions and artifact readers shared by conveyor-pandera's tests."""

from __future__ import annotations

import subprocess

import pandas as pd
from conveyor.testing import Project


def assert_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Exit `code`, one `error:` line on stderr naming every needle, no traceback."""
    shown = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == code, shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert len([x for x in result.stderr.splitlines() if x.startswith("error:")]) == 1, shown
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in the message\n{shown}"
    return result.stderr


def artifact(project: Project, ref: dict) -> pd.DataFrame:
    path = next((project.path / ".conveyor" / "artifacts").rglob(ref["sha256"] + "*"))
    return pd.read_feather(path) if path.suffix == ".arrow" else pd.read_parquet(path)


def stage_outputs(project: Project, run_id: str) -> dict[str, dict]:
    return {s["name"]: s["outputs"] for s in project.show(run_id)["stages"]}


def nothing_ran(project: Project) -> bool:
    return not (project.path / ".conveyor" / "artifacts").exists() or not any(
        (project.path / ".conveyor" / "artifacts").rglob("*.*"))
