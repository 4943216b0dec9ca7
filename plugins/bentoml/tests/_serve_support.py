"""What conveyor-bentoml's tests share besides fixtures: a request record and the CLI runner.

A module of its own, not the conftest: `from conftest import ...` finds whichever plugin's
conftest was imported last when several plugins' tests are collected together."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conveyor.testing import conveyor_executable

RECORD = {"customer_id": "C1", "tenure_months": 5, "contract": None, "region": "east",
          "monthly_charges": 20.5, "support_calls": 1, "has_partner": "no"}


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([conveyor_executable(), *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", "CONVEYOR_TEST": "1"})
