"""Review #14 of issue 17: Ctrl-C cancels the stage's task, `ray` is a known provider, an
address from RAY_ADDRESS is named as such, and the test head's object store is small."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from conveyor.testing import assert_clear_error, free_port


def test_ctrl_c_while_waiting_for_a_stage_cancels_its_task(monkeypatch):
    """Ray itself is stubbed here (the submission, the wait, the cancel): a Ctrl-C cannot be
    delivered to the waiting driver thread of a test reliably; what counts is the call."""
    import ray
    from conveyor_ray import driver

    cancelled: list[tuple[object, bool]] = []
    pending = object()
    task = SimpleNamespace(remote=lambda payload: pending)
    monkeypatch.setattr(ray, "remote", lambda fn: SimpleNamespace(options=lambda **_: task))

    def interrupted(ref):
        raise KeyboardInterrupt

    monkeypatch.setattr(ray, "get", interrupted)
    monkeypatch.setattr(ray, "cancel", lambda ref, force=False: cancelled.append((ref, force)))
    monkeypatch.setattr(driver, "_payload", lambda *args: "payload")
    stage = SimpleNamespace(name="total", uses="local.total")
    with pytest.raises(KeyboardInterrupt):
        driver.run_on_ray(SimpleNamespace(id="r1"), stage, None,
                          driver.RayStageConfig(num_cpus=1))
    assert cancelled == [(pending, True)]


def test_a_ray_section_with_the_plugin_switched_off_names_conveyor_ray(sums_project):
    import yaml

    project = sums_project(stages={"total": {}})
    path = project.path / "conveyor.yaml"
    config = yaml.safe_load(path.read_text())
    config["plugins"]["disable"] = ["ray"]
    path.write_text(yaml.safe_dump(config))
    assert_clear_error(project.run(), 2, "'ray' section", "conveyor-ray")


def test_an_unreachable_ray_address_from_the_environment_is_named_as_such(sums_project):
    project = sums_project(stages={"total": {}})  # ray.address: auto
    failed = project.cli("run", env={"RAY_ADDRESS": f"127.0.0.1:{free_port()}"})
    assert_clear_error(failed, 2, "environment variable RAY_ADDRESS", "nothing answers")


def test_the_test_head_reserves_a_small_object_store(ray_cluster):
    from conveyor_ray.testing import OBJECT_STORE_BYTES

    assert OBJECT_STORE_BYTES <= 256 * 1024 * 1024
    lines = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                lines.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    raylets = [line for line in lines if "raylet" in line and str(ray_cluster.temp_dir) in line]
    assert raylets and all(f"object_store_memory={OBJECT_STORE_BYTES}" in line
                           for line in raylets), raylets


def test_forward_env_is_documented_as_visible_in_rays_metadata():
    """Review #8: the values go into the task's runtime_env, which Ray keeps and shows."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "Ray keeps the values in the cluster's metadata" in readme
    assert "credentials set on the nodes themselves" in readme
    import conveyor_ray.config

    source = Path(conveyor_ray.config.__file__).read_text()
    assert "never recorded" not in source and "cluster's metadata" in source


def test_a_task_on_another_machine_caches_remote_artifacts_in_a_node_local_folder(
        tmp_path, s3_server):
    """Review #9: the driver's project path (absent on this node) is not created; the cache
    is a node-local folder keyed by that path. moto's S3 server stands in for the cloud."""
    import hashlib

    from conveyor.store import ArtifactRef
    from conveyor_ray.worker import _artifact_store, scratch_root

    body = b"stored by the driver"
    sha = hashlib.sha256(body).hexdigest()
    s3_server.create_bucket("node-cache")
    s3_server.client().put_object(Bucket="node-cache", Key=f"p/{sha[:2]}/{sha}.bin", Body=body)
    driver_project = tmp_path / "driver-home" / "proj"  # only on the driver's machine
    store = _artifact_store(driver_project, "s3://node-cache/p")
    try:
        local = store.verify(ArtifactRef(sha, "bytes", ".bin", len(body)))
        assert local.read_bytes() == body and local.is_relative_to(store.root)
        assert store.root == scratch_root(driver_project, "s3://node-cache/p")
        assert not store.root.is_relative_to(driver_project)
        assert not (tmp_path / "driver-home").exists()
    finally:
        shutil.rmtree(store.root.parent, ignore_errors=True)
    here = tmp_path / "here"
    here.mkdir()
    assert scratch_root(here, "s3://node-cache/p") == here / ".conveyor"
    assert scratch_root(driver_project, None) == driver_project / ".conveyor"
