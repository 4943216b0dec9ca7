"""Heavy libraries are imported only when a stage or command needs them."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sklearn", "pandas", "pyarrow", "skops", "scipy")

PROBE = """
import json, sys
from conveyor.cli import run_cli
code = run_cli(sys.argv[1:])
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY))
print(json.dumps({"code": code, "heavy": heavy}))
""".replace("HEAVY", repr(HEAVY))


def _probe(cwd, *args):
    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True,
                            text=True, timeout=300)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_help_imports_no_heavy_library(tmp_path):
    assert _probe(tmp_path, "--help") == {"code": 0, "heavy": []}


def test_a_fully_cached_run_imports_no_heavy_library(new_project):
    project = new_project()
    project.run(check=True)
    assert _probe(project.path, "run", "--quiet") == {"code": 0, "heavy": []}
    assert _probe(project.path, "runs", "list") == {"code": 0, "heavy": []}
