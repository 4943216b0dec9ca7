"""Data versions and project set-up hooks: `conveyor_file_fingerprint` (a plugin versions data
files, the core's sha256 otherwise), a file changing while a stage reads it, and
`conveyor_after_init`."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

from _support import assert_run_failed, assert_usage_error, fake_distribution, local_project
from conveyor.testing import conveyor_executable

READER = '''
import time

import conveyor


def _read(ctx):
    hold = ctx.project_dir / "HOLD"
    if hold.exists():
        (ctx.project_dir / "reading").write_text(ctx.run.id)
        deadline = time.time() + 60
        while hold.exists() and time.time() < deadline:
            time.sleep(0.05)
    text = (ctx.project_dir / ctx.settings["source"]).read_text()
    return {"chars": len(text)}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("files.read", _read,
                                input_files=lambda settings: [settings["source"]]))
'''

# Versions .txt files by their length (a toy: enough to see whose answer the core uses).
LENGTH_VERSIONS = '''
import conveyor


@conveyor.hookimpl
def conveyor_file_fingerprint(path, project_dir):
    if path.suffix == ".txt":
        return f"length:{path.stat().st_size}"
    return None
'''

PIPELINE = {"txt": {"uses": "files.read", "source": "notes.txt"},
            "csv": {"uses": "files.read", "source": "table.csv"}}


def project_with_files(tmp_path: Path, local: list[str]):
    project = local_project(tmp_path / "p", pipeline=PIPELINE, local=local,
                            modules={"reader": READER, "lengths": LENGTH_VERSIONS})
    (project.path / "notes.txt").write_text("hello\n")
    (project.path / "table.csv").write_text("a,b\n1,2\n")
    return project


def test_a_plugins_fingerprint_versions_data_files_and_the_core_sha256_the_rest(tmp_path):
    project = project_with_files(tmp_path, ["reader", "lengths"])
    project.run(check=True)
    run = project.show(project.runs()[0]["id"])
    sha = hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert run["data"] == {"notes.txt": "length:6", "table.csv": sha}
    shown = project.cli("runs", "show", run["id"], check=True).stdout
    assert "data: notes.txt  version length:6" in shown
    assert f"data: table.csv  version sha256:{sha[:16]}" in shown

    # The plugin's answer decides: same length, same version, the stage stays cached.
    (project.path / "notes.txt").write_text("HELLO\n")
    project.run(check=True)
    assert project.runs()[0]["cached"] == 2
    (project.path / "notes.txt").write_text("hello, world\n")
    rerun = project.run(check=True)
    assert "data file notes.txt changed" in rerun.stdout
    assert project.show(project.runs()[0]["id"])["data"]["notes.txt"] == "length:13"


def test_force_reads_again_a_same_size_edit_whose_mtime_was_restored(tmp_path):
    """Issue 14.9: the core's sha256 cache keys on (size, mtime, inode): an in-place edit of
    the same size with the modification time put back looked unchanged. --force re-hashes."""
    project = project_with_files(tmp_path, ["reader"])
    project.run(check=True)
    table = project.path / "table.csv"
    stat = table.stat()
    with table.open("r+") as handle:  # in place: the same inode
        handle.write("a,b\n7,2\n")
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert project.run(check=True).stdout.count("cached") >= 2  # the blind spot, as DVC's
    project.run("--force", check=True)
    sha = hashlib.sha256(b"a,b\n7,2\n").hexdigest()
    assert project.show(project.runs()[0]["id"])["data"]["table.csv"] == sha


def test_a_plugin_returning_a_non_string_fingerprint_is_named(tmp_path):
    project = project_with_files(tmp_path, ["reader", "badlengths"])
    (project.path / "badlengths.py").write_text(
        "import conveyor\n\n\n@conveyor.hookimpl\ndef conveyor_file_fingerprint(path):\n"
        "    return 42\n")
    assert_usage_error(project.run(), "plugin 'badlengths' (local module of the project",
                       "returned 42 from conveyor_file_fingerprint", "notes.txt")


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def test_a_data_file_changing_while_a_stage_reads_it_fails_the_stage(tmp_path):
    project = project_with_files(tmp_path, ["reader"])
    (project.path / "HOLD").touch()
    process = subprocess.Popen([conveyor_executable(), "run"], cwd=project.path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(project.path / "reading", process)
    before = hashlib.sha256(b"hello\n").hexdigest()
    (project.path / "notes.txt").write_text("changed under the stage\n")
    (project.path / "HOLD").unlink()
    out, err = process.communicate(timeout=120)
    assert_run_failed(subprocess.CompletedProcess(process.args, process.returncode, out, err),
                      "data file notes.txt changed while stage 'txt' read it",
                      f"sha256:{before[:12]}", "run again")
    runs = project.runs()
    assert runs[0]["status"] == "failed"
    project.run(check=True)  # the next run records the version it reads
    assert project.runs()[0]["status"] == "completed"


AFTER_INIT = '''
import conveyor


@conveyor.hookimpl
def conveyor_after_init(project_dir, template):
    (project_dir / "after-init.txt").write_text(f"{project_dir}\\n{template}\\n")
    print("after-init plugin: done")
'''

AFTER_INIT_FAILS = '''
import conveyor


@conveyor.hookimpl
def conveyor_after_init(project_dir, template):
    raise RuntimeError("could not set the project up")
'''


def test_conveyor_init_calls_after_init_with_the_final_folder_and_template(tmp_path):
    env = fake_distribution(tmp_path / "site", "conveyor-setup", "conveyor_setup", AFTER_INIT)
    result = subprocess.run([conveyor_executable(), "init", "shop", "--template", "regression"],
                            cwd=tmp_path, text=True, capture_output=True,
                            env={**os.environ, **env}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "after-init plugin: done" in result.stdout
    marker = (tmp_path / "shop" / "after-init.txt").read_text().splitlines()
    assert marker == [str((tmp_path / "shop").resolve()), "regression"]


def test_a_failing_after_init_hook_leaves_no_half_made_project(tmp_path):
    env = fake_distribution(tmp_path / "site", "conveyor-setup", "conveyor_setup",
                            AFTER_INIT_FAILS, version="0.2")
    result = subprocess.run([conveyor_executable(), "init", "shop"], cwd=tmp_path, text=True,
                            capture_output=True, env={**os.environ, **env},
                            timeout=300)
    assert_usage_error(result, "'conveyor-setup' (conveyor-setup 0.2)", "conveyor_after_init",
                       "could not set the project up")
    assert not (tmp_path / "shop").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["site"]
