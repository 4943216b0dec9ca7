"""The distributions install as regular wheels and work from an unrelated folder."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "framework" / "conveyor"


def test_core_never_imports_a_plugin():
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names
                          if n.split(".")[0].startswith("conveyor_")]
    assert offenders == []


def test_the_library_never_imports_the_command_line():
    """`conveyor.cli` sits on top of the library: a core module outside it (the package's
    `__main__` aside) importing it would make the API depend on the CLI."""
    offenders = []
    for path in CORE.rglob("*.py"):
        relative = path.relative_to(CORE)
        if relative.parts[0] == "cli" or relative.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names
                          if n == "conveyor.cli" or n.startswith("conveyor.cli.")]
    assert offenders == []


def test_plugins_import_only_the_public_api():
    public = {"conveyor"}
    documented = {"conveyor.hookspecs", "conveyor.api", "conveyor.alerts", "conveyor.errors",
                  "conveyor.gate", "conveyor.contract", "conveyor.fingerprints", "conveyor.names",
                  "conveyor.predictions", "conveyor.secrets", "conveyor.store",
                  "conveyor.store.runs", "conveyor.store.tables", "conveyor.tables",
                  "conveyor.testing", "conveyor.uncertainty", "conveyor.validation",
                  "conveyor.evaluation", "conveyor.promotion", "conveyor.feedback",
                  "conveyor.serving", "conveyor.durations", "conveyor.threads",
                  "conveyor.store.location", "conveyor.compiled"}
    offenders = []
    for path in (REPO / "plugins").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.split(".")[0] == "conveyor" and \
                    node.module not in public | documented:
                offenders.append(f"{path.relative_to(REPO)}: from {node.module}")
            if isinstance(node, ast.Import):
                offenders += [f"{path.relative_to(REPO)}: import {a.name}" for a in node.names
                              if a.name.startswith("conveyor.") and a.name not in documented]
    assert offenders == []


@pytest.mark.slow
def test_non_editable_install_then_init_and_run_in_an_unrelated_folder(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c",
           str(REPO / "requirements" / "lock.txt")]
    subprocess.run([*pip, str(REPO)], check=True, capture_output=True)
    conveyor = str(venv / "bin" / "conveyor")
    work = tmp_path / "elsewhere"
    work.mkdir()

    # Only the core: a project using scikit-learn stages is told which plugin to install.
    (work / "bare").mkdir()
    (work / "bare" / "conveyor.yaml").write_text(
        "defaults: [conveyor/defaults, {pipeline: train}, _self_]\nproject: bare\n"
        "data: {source: sklearn:load_wine, target: target}\n")
    bare = subprocess.run([conveyor, "run"], cwd=work / "bare", capture_output=True, text=True)
    assert bare.returncode == 2
    assert "'sklearn.load' is provided by conveyor-sklearn" in bare.stderr

    subprocess.run([*pip, str(REPO / "plugins" / "sklearn")], check=True, capture_output=True)
    subprocess.run([conveyor, "init", "shop"], cwd=work, check=True, capture_output=True)
    run = subprocess.run([conveyor, "run"], cwd=work / "shop", capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "registered and promoted to champion" in run.stdout
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import conveyor, conveyor.configs; print(conveyor.configs.__file__)"],
                          capture_output=True, text=True, check=True).stdout
    assert str(REPO) not in site  # the config library came from the wheel, not the checkout
