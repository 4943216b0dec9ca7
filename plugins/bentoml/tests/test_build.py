"""`conveyor build`: a Bento that `bentoml list` shows and `bentoml serve` answers with, the
same answers as `conveyor serve`. Containerizing needs Docker, which is not here: not tested."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from _serve_support import RECORD, run_cli
from conveyor.testing import conveyor_executable

pytestmark = [pytest.mark.server, pytest.mark.slow]
JSON = {"content-type": "application/json"}
RECORDS = [RECORD, {**RECORD, "customer_id": "C2", "region": "west", "tenure_months": 40},
           {**RECORD, "customer_id": "C3", "contract": "two-year", "monthly_charges": 99.0}]


def answers(url: str) -> list[dict]:
    resp = httpx.post(f"{url}/predict", content=json.dumps(RECORDS), headers=JSON, timeout=30)
    assert resp.status_code == 200, resp.text
    return [{k: v for k, v in r.items() if k != "request_id"} for r in resp.json()]


def test_a_built_bento_is_listed_and_serves_what_conveyor_serve_serves(project, serve,
                                                                       tmp_path, monkeypatch):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "True")
    done = run_cli("build", cwd=project.path)
    assert done.returncode == 0, done.stderr
    tag = re.search(r"built Bento (\S+): shop v1", done.stdout).group(1)
    bentoml = str(Path(conveyor_executable()).with_name("bentoml"))
    listed = subprocess.run([bentoml, "list", "-o", "json"], capture_output=True, text=True,
                            check=True)
    assert tag in [b["tag"] for b in json.loads(listed.stdout)]
    bento = tmp_path / "bentoml" / "bentos" / tag.replace(":", "/")
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().splitlines()
    assert all("==" in line for line in requirements)
    assert any(line.lower().startswith("scikit-learn==") for line in requirements)
    wheels = {p.name.split("-")[0] for p in (bento / "env" / "python" / "wheels").iterdir()}
    assert {"conveyor", "conveyor_bentoml", "conveyor_sklearn"} <= wheels
    assert not list((bento / "src" / "project").glob("data"))  # config, not data

    built = serve(project, argv=[bentoml, "serve", tag])
    ours = serve(project)
    assert answers(built.url) == answers(ours.url)
    meta = httpx.get(f"{built.url}/metadata").json()
    assert (meta["version"], meta["hot_swap"]) == (1, False)
    assert meta["sha256"] == httpx.get(f"{ours.url}/metadata").json()["sha256"]
    # the compiled form travels in the Bento and answers there too (conveyor.compiled)
    assert meta["inference"]["served_by"] == "onnx", meta["inference"]
    assert built.stop() == 0

    # The tampered model: the Bento's server comes up but never ready, and says why.
    files = list((bento / "src" / "project" / "conveyor_store" / "artifacts").rglob("*.*"))
    assert len(files) == 2  # the model and its compiled form
    (model,) = [f for f in files if hashlib.sha256(f.read_bytes()).hexdigest() == meta["sha256"]]
    model.chmod(0o644)
    model.write_bytes(model.read_bytes() + b"tampered")
    tampered = serve(project, argv=[bentoml, "serve", tag], ready=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "sha256" not in tampered.output():
        time.sleep(0.3)
    assert "sha256" in tampered.output(), tampered.output()
    for _ in range(5):
        assert httpx.get(f"{tampered.url}/readyz").status_code == 503
        time.sleep(0.3)
    assert httpx.get(f"{tampered.url}/livez").status_code == 200
    assert "sha256" in httpx.get(f"{tampered.url}/metadata").json()["error"]
    resp = httpx.post(f"{tampered.url}/predict", content=json.dumps(RECORDS), headers=JSON)
    assert resp.status_code == 503 and "sha256" in resp.json()["error"]
    assert "Traceback" not in tampered.output()


def test_a_bento_built_from_a_postgresql_store_holds_its_registry(project, postgres_url,
                                                                 tmp_path, monkeypatch):
    """With `store.url` on a team's PostgreSQL the project has no (or a stale) store.db: the
    Bento gets an SQLite snapshot of the server's store (`conveyor.store.copy_store`), champion
    included, and its service is pointed at that snapshot whatever the environment says."""
    import sqlite3

    from sqlalchemy.engine import make_url

    password = make_url(postgres_url).password
    assert password
    copied = run_cli("store", "copy", "--to", postgres_url, cwd=project.path)
    assert copied.returncode == 0, copied.stderr
    for stale in (project.path / ".conveyor").glob("store.db*"):
        stale.unlink()
    monkeypatch.setenv("CONVEYOR_STORE_URL", postgres_url)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "True")
    done = run_cli("build", cwd=project.path)
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr
    assert not (project.path / ".conveyor" / "store.db").exists()  # the server was used
    tag = re.search(r"built Bento (\S+): shop v1", done.stdout).group(1)
    src = tmp_path / "bentoml" / "bentos" / tag.replace(":", "/") / "src"
    with sqlite3.connect(src / "project" / "conveyor_store" / "store.db") as conn:
        assert conn.execute("SELECT version FROM aliases WHERE name='shop' AND "
                            "alias='champion'").fetchall() == [(1,)]
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (2,)
        assert conn.execute("SELECT COUNT(*) FROM model_versions").fetchone()[0] >= 1
    assert "CONVEYOR_STORE_URL" in (src / "service.py").read_text()


def test_build_tools_older_than_a_package_needs_are_named(tmp_path):
    """Issue 14.9: `conveyor build` failed with pip's output when the environment's setuptools
    was older than the packages' pyproject asks for; now it builds in pip's isolated build
    environment, and when even that cannot get the tools, the error names what is missing."""
    import conveyor
    from conveyor_bentoml.build import build_wheels, unmet_build_requirements

    package = tmp_path / "pkg"
    package.mkdir()
    (package / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=9999", "wheel"]\n'
        'build-backend = "setuptools.build_meta"\n\n[project]\nname = "pkg"\nversion = "0.1"\n')
    unmet = unmet_build_requirements(package)
    assert any(need.startswith("setuptools>=9999 (installed: ") for need in unmet), unmet
    with pytest.raises(conveyor.UsageError) as raised:
        build_wheels([package], tmp_path / "wheels", tmp_path)
    assert "setuptools>=9999 (installed: " in raised.value.hint
    assert "pip install 'setuptools>=9999'" in raised.value.hint
