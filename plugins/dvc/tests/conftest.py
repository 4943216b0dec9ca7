"""Fixtures for the DVC plugin's tests: real git + DVC repositories in temporary folders, driven
through the real `conveyor` console script.

Two kinds of project: `classification` (made by `conveyor init`, scikit-learn stages: the real
thing, a few seconds a run) and `light` (stages from a project-local module that read small text
files: fast, and able to pause mid-stage so a test can change data under a running stage).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from _dvc_support import git
from conveyor.testing import Project, conveyor_executable

# Commits need an identity; a machine without one still gets `conveyor init`'s commit here.
for _key, _value in (("GIT_AUTHOR_NAME", "Conveyor Tests"), ("GIT_COMMITTER_NAME", "Conveyor Tests"),
                     ("GIT_AUTHOR_EMAIL", "tests@conveyor.invalid"),
                     ("GIT_COMMITTER_EMAIL", "tests@conveyor.invalid")):
    os.environ.setdefault(_key, _value)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _dvc_site_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """DVC's per-repository state databases go to a temporary folder, not /var/tmp/dvc."""
    if "DVC_SITE_CACHE_DIR" not in os.environ:
        os.environ["DVC_SITE_CACHE_DIR"] = str(tmp_path_factory.mktemp("dvc-site-cache"))


LIGHT_STAGES = '''
import random
import time

import conveyor


def _files(settings):
    return [settings["source"]]


def _read(ctx):
    hold = ctx.project_dir / "HOLD"
    if hold.exists():  # pause mid-stage until the test removes HOLD
        (ctx.project_dir / "reading").write_text(ctx.run.id)
        deadline = time.time() + 60
        while hold.exists() and time.time() < deadline:
            time.sleep(0.05)
    values = [float(x) for x in (ctx.project_dir / ctx.settings["source"]).read_text().split()]
    ctx.log_metrics({f"{ctx.name}_sum": sum(values), f"{ctx.name}_rows": len(values)})
    return {f"{ctx.name}_values": values}


def _combine(ctx):
    total = sum(ctx.inputs["first_values"]) + sum(ctx.inputs["second_values"])
    metrics = {"total": total}
    if ctx.settings.get("noisy"):
        metrics["noise"] = random.random()
    ctx.log_metrics(metrics)
    return {"total": total}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("light.read", _read, input_files=_files))
    register(conveyor.StageType("light.combine", _combine))
'''

LIGHT_CONFIG = {
    "defaults": ["conveyor/defaults", "_self_"],
    "project": "light",
    # No scikit-learn: its codecs warm skops up (~2 s) whenever a stage runs.
    "plugins": {"local": ["lightstages"], "disable": ["sklearn"]},
    "pipeline": {
        "first": {"uses": "light.read", "source": "data/a.txt"},
        "second": {"uses": "light.read", "source": "data/b.txt"},
        "total": {"uses": "light.combine", "needs": ["first", "second"], "noisy": False},
    },
}


def make_light(folder: Path) -> Path:
    """A git + DVC repository (as `dvc init` and `dvc remote add -d` make one) with two small
    data files that no run has versioned yet."""
    from dvc.repo import Repo

    folder.mkdir(parents=True)
    (folder / "data").mkdir()
    (folder / "data" / "a.txt").write_text("1\n2\n3\n")
    (folder / "data" / "b.txt").write_text("10\n20\n")
    (folder / "lightstages.py").write_text(textwrap.dedent(LIGHT_STAGES))
    (folder / "conveyor.yaml").write_text(yaml.safe_dump(LIGHT_CONFIG, sort_keys=False))
    (folder / ".gitignore").write_text(".conveyor/\n__pycache__/\nHOLD\nreading\n")
    git(folder, "init", "-q")
    repo = Repo.init(str(folder))
    with repo.config.edit() as conf:
        conf["remote"]["local"] = {"url": os.path.relpath(folder / ".conveyor" / "dvc-remote")}
        conf["core"]["remote"] = "local"
    repo.close()
    with (folder / ".dvcignore").open("a") as handle:
        handle.write("/.conveyor/\n")
    git(folder, "add", "conveyor.yaml", "lightstages.py", ".gitignore", ".dvc", ".dvcignore")
    git(folder, "commit", "-q", "-m", "light project")
    return folder


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Projects made once per session, copied per test."""
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            root = tmp_path_factory.mktemp(f"dvc-template-{kind}")
            if kind == "light":
                made[kind] = make_light(root / "proj")
            else:
                subprocess.run([conveyor_executable(), "init", "proj", "--template", kind],
                               cwd=root, check=True, capture_output=True)
                made[kind] = root / "proj"
        return made[kind]

    return get


@pytest.fixture
def dvc_project(tmp_path: Path, templates: Callable[[str], Path]) -> Callable[..., Project]:
    def make(kind: str = "light", name: str = "proj") -> Project:
        destination = tmp_path / name
        shutil.copytree(templates(kind), destination, symlinks=True)
        return Project(destination)

    return make
