"""Artifacts in object storage: `store.artifacts: s3://bucket/prefix` through s3fs.

moto's standalone S3 server (`conveyor.testing.S3Server`, a separate process on 127.0.0.1)
stands in for the cloud's object storage here: the code under test talks HTTP to it exactly as
it would to S3, with fake keys. Wrong credentials are a moto server that checks them (its IAM knows no keys).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from _support import assert_run_failed, assert_usage_error, local_project
from conveyor.errors import ConfigError, StoreError
from conveyor.store import ArtifactRef, ArtifactStore
from conveyor.testing import S3Server, store_rows

BUCKET = "conveyor-artifacts"


class FakeRows:
    """The store's database stands aside here: only the artifact rows are counted."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def record_artifact(self, ref: ArtifactRef) -> None:
        self.rows.append((ref.sha256, ref.size, ref.codec, ref.suffix))


class RawCodec:
    name, suffix = "raw", ".bin"

    @staticmethod
    def dump(obj: bytes, path: Path) -> None:
        path.write_bytes(obj)

    @staticmethod
    def load(path: Path) -> bytes:
        return path.read_bytes()


def objects(server: S3Server, bucket: str = BUCKET) -> dict[str, int]:
    listed = server.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: item["Size"] for item in listed}


@pytest.fixture
def s3(s3_server: S3Server) -> S3Server:
    s3_server.create_bucket(BUCKET)
    return s3_server


@pytest.fixture
def artifacts(s3: S3Server, tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / ".conveyor", FakeRows(), url=f"s3://{BUCKET}/team/a")


def test_put_and_load_round_trip_content_addressed(s3, artifacts, tmp_path):
    payload = os.urandom(300_000)
    ref = artifacts.put(payload, RawCodec)
    assert ref.sha256 == hashlib.sha256(payload).hexdigest() and ref.size == len(payload)
    assert objects(s3) == {f"team/a/{ref.sha256[:2]}/{ref.sha256}.bin": len(payload)}
    assert artifacts.exists(ref)
    assert artifacts.load(ref, RawCodec) == payload
    cached = artifacts.local_path(ref)
    assert cached == tmp_path / ".conveyor" / "cache" / "artifacts" / ref.sha256[:2] / \
        f"{ref.sha256}.bin"
    assert not (tmp_path / ".conveyor" / "artifacts").exists()
    assert list((tmp_path / ".conveyor" / "tmp").iterdir()) == []
    assert artifacts.store.rows[0][:2] == (ref.sha256, len(payload))

    # The same content again: no second upload (the object's LastModified stays).
    before = s3.client().head_object(Bucket=BUCKET, Key=artifacts.key(ref).split("/", 1)[1])
    time.sleep(1.1)
    assert artifacts.put(payload, RawCodec) == ref
    after = s3.client().head_object(Bucket=BUCKET, Key=artifacts.key(ref).split("/", 1)[1])
    assert after["LastModified"] == before["LastModified"]
    assert len(objects(s3)) == 1
    missing = ArtifactRef("0" * 64, "raw", ".bin", 3)
    assert not artifacts.exists(missing)
    with pytest.raises(StoreError, match="missing from s3://conveyor-artifacts/team/a"):
        artifacts.verify(missing)


def test_a_tampered_object_is_refused_by_name_and_removed(s3, artifacts):
    ref = artifacts.put(b"the real model" * 100, RawCodec)
    key = artifacts.key(ref).split("/", 1)[1]
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=b"X" * ref.size)  # same size, not it
    assert artifacts.exists(ref)  # size only: the hash is checked on load
    with pytest.raises(StoreError, match=f"{ref.sha256}.bin is corrupt or was tampered with"):
        artifacts.load(ref, RawCodec)
    assert not artifacts.exists(ref)  # removed, so the next run stores it again
    assert artifacts.put(b"the real model" * 100, RawCodec) == ref
    assert artifacts.load(ref, RawCodec) == b"the real model" * 100


def test_the_cache_is_reused_hashed_once_and_healed_when_damaged(s3, artifacts, monkeypatch):
    payload = os.urandom(50_000)
    ref = artifacts.put(payload, RawCodec)
    cached = artifacts.verify(ref)
    downloads: list[str] = []
    real_get = artifacts.fs.get_file
    monkeypatch.setattr(artifacts.fs, "get_file",
                        lambda rpath, lpath, **kw: (downloads.append(rpath), real_get(rpath, lpath))[1])
    hashed: list[Path] = []
    import conveyor.store.artifacts as module

    real_hash = module.sha256_file
    monkeypatch.setattr(module, "sha256_file", lambda path: (hashed.append(path), real_hash(path))[1])
    assert artifacts.verify(ref) == cached and artifacts.verify(ref) == cached
    assert downloads == [] and hashed == []  # checked once in this process: not again

    # Another process (a fresh store) hashes the cached copy once and keeps it.
    fresh = ArtifactStore(artifacts.root, FakeRows(), url=f"s3://{BUCKET}/team/a")
    monkeypatch.setattr(fresh.fs, "get_file", artifacts.fs.get_file)
    assert fresh.load(ref, RawCodec) == payload
    assert downloads == [] and hashed == [cached]

    # A damaged cached copy (same size) is downloaded again.
    cached.write_bytes(b"\0" * ref.size)
    other = ArtifactStore(artifacts.root, FakeRows(), url=f"s3://{BUCKET}/team/a")
    monkeypatch.setattr(other.fs, "get_file", artifacts.fs.get_file)
    assert other.load(ref, RawCodec) == payload
    assert len(downloads) == 1 and cached.read_bytes() == payload


UPLOADER = textwrap.dedent('''
    import sys
    from pathlib import Path
    from conveyor.store import ArtifactStore

    class Rows:
        def write(self):
            raise SystemExit("recorded an artifact whose upload did not finish")

    store = ArtifactStore(Path(sys.argv[1]), Rows(), url=sys.argv[2])
    print("uploading", flush=True)
    store.adopt(Path(sys.argv[3]), "raw", ".bin")
''')


@pytest.mark.slow
def test_a_reader_never_sees_a_partial_object(s3, tmp_path, capsys):
    """kill -9 of a process mid-upload (a multipart upload of 120 MB, in 50 MiB parts): the
    key does not exist until the upload completes; the parts already sent are invisible."""
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        for _ in range(120):
            handle.write(os.urandom(1 << 20))
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    key = f"team/a/{digest[:2]}/{digest}.bin"
    script = tmp_path / "upload.py"
    script.write_text(UPLOADER)
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path / ".conveyor"),
                                f"s3://{BUCKET}/team/a", str(big)],
                               stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert process.stdout.readline().strip() == "uploading"
    client = s3.client()
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    # Wait until the multipart upload has begun (parts going up), then kill the uploader.
    while not client.list_multipart_uploads(Bucket=BUCKET).get("Uploads"):
        assert process.poll() is None and time.monotonic() < deadline, "no upload started"
        seen.update(objects(s3).values())
        time.sleep(0.01)
    time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    seen.update(objects(s3).values())
    assert seen == set(), f"objects seen while the upload was not complete: {seen}"
    assert objects(s3) == {}, "a killed upload left an object"
    # The run that stores it next uploads it whole.
    store = ArtifactStore(tmp_path / ".conveyor", FakeRows(), url=f"s3://{BUCKET}/team/a")
    ref = store.adopt(big, "raw", ".bin")
    assert objects(s3) == {key: big.stat().st_size} and store.verify(ref)
    shown = capsys.readouterr().err  # a large artifact's transfer is shown
    assert f"uploading artifact {digest[:12]} (126 MB), s3://{BUCKET}/team/a…" in shown
    assert f"downloading artifact {digest[:12]}: done in" in shown


def test_open_errors_are_config_errors_naming_the_setting(s3, tmp_path):
    root = tmp_path / ".conveyor"
    with pytest.raises(ConfigError, match=r"store.artifacts .*bucket 'nope-missing'.*does not"):
        ArtifactStore(root, FakeRows(), url="s3://nope-missing/x")
    with pytest.raises(ConfigError, match="protocol of nosuch://b/x is not available"):
        ArtifactStore(root, FakeRows(), url="nosuch://b/x")
    secret = "storage-option-secret-value"
    with pytest.raises(ConfigError) as raised:
        ArtifactStore(root, FakeRows(), url="s3://user:pw@nope-missing/x",
                      storage_options={"key": "k", "secret": secret})
    assert secret not in str(raised.value) and ":pw@" not in str(raised.value)


def test_a_local_folder_setting_keeps_the_local_store(tmp_path):
    store = ArtifactStore(tmp_path / ".conveyor", FakeRows(), url="shared-artifacts")
    ref = store.put(b"local", RawCodec)
    assert store.local_path(ref) == tmp_path / "shared-artifacts" / ref.sha256[:2] / \
        f"{ref.sha256}.bin"
    assert store.fs is None and store.load(ref, RawCodec) == b"local"


# --- through the CLI --------------------------------------------------------------------------


def _secret_not_shown(result: subprocess.CompletedProcess) -> None:
    assert S3Server.secret_key not in result.stdout + result.stderr


@pytest.mark.parametrize("case", ["missing bucket", "no credentials", "unknown protocol"])
def test_a_bad_store_artifacts_stops_the_run_before_any_stage(s3, tmp_path, monkeypatch, case):
    project = local_project(tmp_path / "p")
    url = {"missing bucket": "s3://no-such-bucket/runs", "no credentials": f"s3://{BUCKET}/runs",
           "unknown protocol": "nosuch://bucket/runs"}[case]
    monkeypatch.setenv("CONVEYOR_STORE_ARTIFACTS", url)
    if case == "no credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = project.run()
    needle = {"missing bucket": "bucket 'no-such-bucket'", "no credentials": "no credentials",
              "unknown protocol": "not available"}[case]
    assert_usage_error(result, "store.artifacts", "CONVEYOR_STORE_ARTIFACTS", needle)
    _secret_not_shown(result)
    assert not (project.path / "after-run.marker").exists()
    assert objects(s3) == {}


def test_wrong_credentials_are_a_config_error(tmp_path, monkeypatch):
    with S3Server(check_credentials=True) as server:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        project = local_project(tmp_path / "p")
        monkeypatch.setenv("CONVEYOR_STORE_ARTIFACTS", f"s3://{BUCKET}/runs")
        result = project.run()
    assert_usage_error(result, "store.artifacts", "refuses these credentials",
                       "AWS_ACCESS_KEY_ID")
    _secret_not_shown(result)


@pytest.mark.slow
def test_a_wrong_endpoint_is_a_config_error(s3, tmp_path, monkeypatch):
    project = local_project(tmp_path / "p")
    monkeypatch.setenv("CONVEYOR_STORE_ARTIFACTS", f"s3://{BUCKET}/runs")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard: nothing listens
    result = project.run()
    assert_usage_error(result, "store.artifacts", "cannot be reached", "127.0.0.1:9")
    _secret_not_shown(result)


@pytest.mark.slow
def test_a_run_then_predict_with_artifacts_on_s3(s3, new_project, monkeypatch):
    monkeypatch.setenv("CONVEYOR_STORE_ARTIFACTS", f"s3://{BUCKET}/proj")
    project = new_project("classification")
    run = project.run(check=True)
    _secret_not_shown(run)
    stored = objects(s3)
    assert stored and all(key.startswith("proj/") for key in stored)
    assert not (project.path / ".conveyor" / "artifacts").exists()
    listed = project.cli("models", "list", check=True)
    assert "proj" in listed.stdout
    # A run keeps its outputs in memory (its registration compiles from them too): nothing was
    # downloaded. Predict fetches the model and its compiled form (conveyor.compiled).
    cache = project.path / ".conveyor" / "cache" / "artifacts"
    assert not cache.exists()
    predicted = project.cli("predict", "--data", "data/customers.csv", "-o", "out.csv",
                            check=True)
    assert "scored 3,000 rows" in predicted.stdout
    assert (project.path / "out.csv").is_file()
    assert sorted(p.suffix for p in cache.rglob("*") if p.is_file()) == [".onnx", ".skops"]
    assert not (project.path / ".conveyor" / "artifacts").exists()
    rerun = project.run(check=True)  # the stages' outputs are found on S3: all cached
    assert "cached" in rerun.stdout and set(stored) <= set(objects(s3))
    assert not (project.path / ".conveyor" / "artifacts").exists()


KILLER = '''
import os
import signal

import conveyor


def _stop_storage(ctx):
    os.kill(int(os.environ["S3_SERVER_PID"]), signal.SIGKILL)
    return {"late": {"n": 2}}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("faults.stop_storage", _stop_storage))
'''


@pytest.mark.slow  # s3fs and botocore retry the refused connection for ~10 s first
def test_the_server_stopping_mid_run_fails_the_run_cleanly(s3, tmp_path, monkeypatch):
    project = local_project(
        tmp_path / "p", modules={"killer": KILLER}, local=["faultstages", "cleanup", "killer"],
        pipeline={"first": {"uses": "faults.produce"},
                  "stop": {"uses": "faults.stop_storage", "needs": ["first"]}})
    monkeypatch.setenv("CONVEYOR_STORE_ARTIFACTS", f"s3://{BUCKET}/runs")
    monkeypatch.setenv("S3_SERVER_PID", str(s3.process.pid))
    result = project.run()
    assert_run_failed(result, "stage 'stop'", "cannot", "s3://conveyor-artifacts/runs")
    _secret_not_shown(result)
    [status] = [r["status"] for r in store_rows(project.path, "SELECT status FROM runs")]
    rows = store_rows(project.path, "SELECT name, status, outputs FROM stages")
    stages = {r["name"]: r["status"] for r in rows}
    outputs = {r["name"]: json.loads(r["outputs"] or "{}") for r in rows}
    artifacts = [r["sha256"] for r in store_rows(project.path, "SELECT sha256 FROM artifacts")]
    assert status == "failed" and stages == {"first": "completed", "stop": "failed"}
    assert outputs["stop"] == {} and artifacts == [outputs["first"]["value"]["sha256"]]
    assert (project.path / "after-run.marker").read_text() == "failed"
    assert list((project.path / ".conveyor" / "tmp").iterdir()) == []


def test_a_data_frame_through_the_real_codec(s3, tmp_path):
    import pandas as pd
    from conveyor.plugins import PluginHost

    codec = next(c for c in PluginHost().load().contributions.codecs if c.name == "arrow")
    store = ArtifactStore(tmp_path / ".conveyor", FakeRows(), url=f"s3://{BUCKET}/frames")
    frame = pd.DataFrame({"x": np.arange(10_000, dtype=np.float64), "y": ["a", "b"] * 5_000})
    ref = store.put(frame, codec)
    pd.testing.assert_frame_equal(store.load(ref, codec), frame)
