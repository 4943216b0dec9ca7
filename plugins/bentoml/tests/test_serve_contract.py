"""`conveyor serve` answers with the served version's contract (issue 13, item 1): requests are
typed by the schema recorded with the version, not by today's schema file, and raw records go
through the version's row transforms (its inference path) before the model sees them."""

from __future__ import annotations

import json

import httpx
import pytest
from _serve_support import RECORD, run_cli
from conveyor.testing import Project

pytestmark = [pytest.mark.server]

DERIVING = '''
import conveyor


def derive(frame, settings):
    return frame.assign(charge_per_call=frame["monthly_charges"] / (frame["support_calls"] + 1))


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType(
        "deriving.features", lambda ctx: {"data": derive(ctx.inputs["data"], ctx.settings)},
        ephemeral_outputs=frozenset({"data"}), row_transform=derive))
'''

PIPELINE = """
plugins:
  local: [deriving]
pipeline:
  derive:
    uses: deriving.features
    needs: [validate]
  split:
    needs: [derive]
"""


def test_serve_applies_the_versions_inference_path_and_schema(tmp_path, serve):
    run_cli("init", "shop", cwd=tmp_path).check_returncode()
    project = Project(tmp_path / "shop")
    (project.path / "deriving.py").write_text(DERIVING)
    config = project.path / "conveyor.yaml"
    config.write_text(config.read_text() + PIPELINE)
    trained = run_cli("run", cwd=project.path)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    # the project's schema changes after the model was trained: it must not apply to it
    schema = (project.path / "schema.yaml").read_text()
    (project.path / "schema.yaml").write_text(schema.replace(
        "  tenure_months:\n", "  tenure_months:\n    lt: 2\n", 1))

    server = serve(project)
    resp = httpx.post(f"{server.url}/predict", content=json.dumps([RECORD]),
                      headers={"content-type": "application/json"}, timeout=30)
    assert resp.status_code == 200, resp.text  # tenure 5: valid for the version's schema
    assert resp.json()[0]["prediction"] in (0, 1)
    meta = httpx.get(f"{server.url}/metadata").json()
    assert "charge_per_call" in meta["features"]  # derived by the recorded transform
    fields = {f["name"]: f for f in meta["input_schema"]["fields"]}
    assert "lt" not in fields["tenure_months"] or fields["tenure_months"]["lt"] is None
