"""`conveyor build`: a Bento of one model version, servable without the project.

The Bento's source folder holds:

* `service.py`: three lines that point conveyor-bentoml's service at the spec next to it;
* `serve_spec.json`: what `conveyor serve` would hand its workers, with the version fixed and
  hot swap off (a Bento is immutable);
* `project/`: the project's config and code (not its data: `.conveyor/`, `.git/`, `.dvc/`,
  `data/`, logs and files over 5 MB are left out), with a store (`project/conveyor_store/`, linked
  as `.conveyor` when the Bento starts: BentoML leaves hidden files out) holding the registry
  and runs (a consistent SQLite snapshot, whatever the project's `store.url`: SQLite's backup
  API, or `conveyor.store.copy_store` from a team's PostgreSQL) and the one model file served,
  whose sha256 is checked again when the Bento starts; the Bento serves from that snapshot
  (its service sets CONVEYOR_STORE_URL / CONVEYOR_STORE_ARTIFACTS to it);
* `requirements.txt`: every distribution of this environment pinned to its installed version,
  and `wheels/`: the Conveyor packages built from their sources when they are local
  installs (they are not on PyPI), so `bentoml containerize` can install the same set.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import conveyor

from conveyor_bentoml import spec as specs

if TYPE_CHECKING:
    from conveyor.store import Store, TableSet

SKIP_DIRS = frozenset({".conveyor", ".git", ".dvc", "data", "__pycache__", ".venv"})
MAX_FILE_BYTES = 5 * 2**20
STORE_COPY = "conveyor_store"
SHIM = '''\
"""A Bento made by `conveyor build`: conveyor-bentoml's service, serving the spec next to this
file (serve_spec.json) from the project copy in ./project."""
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ["CONVEYOR_SERVE_SPEC"] = str(HERE / "serve_spec.json")
try:  # a Bento holds no hidden files: the project's store travels as conveyor_store/
    (HERE / "project" / ".conveyor").symlink_to("conveyor_store", target_is_directory=True)
except FileExistsError:
    pass
# The Bento serves from its own store snapshot, whatever store.url the project's conveyor.yaml
# or the container's environment names (a team's PostgreSQL, object storage).
os.environ["CONVEYOR_STORE_URL"] = "sqlite:///" + str(HERE / "project" / "conveyor_store" /
                                                      "store.db")
os.environ["CONVEYOR_STORE_ARTIFACTS"] = str(HERE / "project" / "conveyor_store" / "artifacts")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # before scikit-learn's OpenMP starts

from conveyor_bentoml.service import Predictor  # noqa: E402,F401
'''


def copy_project(project_dir: Path, target: Path, artifact: Path, project_store: Store,
                 tables: Iterable[TableSet] = (), extra: Iterable[Path] = ()) -> None:
    """The project's config and code, a snapshot of its store's database, the one model file
    and the `extra` artifacts (its compiled form)."""
    for folder, dirs, files in os.walk(project_dir):
        here = Path(folder)
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".venv")]
        for name in files:
            source = here / name
            if source.is_symlink() or source.suffix == ".log" or \
                    source.stat().st_size > MAX_FILE_BYTES:
                continue
            dest = target / source.relative_to(project_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
    # BentoML leaves hidden files out of a Bento: the store travels as conveyor_store/, and
    # the service links .conveyor to it when it starts.
    store = target / STORE_COPY
    store.mkdir(parents=True, exist_ok=True)
    snapshot_store(project_store, store / "store.db", tables)
    # The Bento's store keeps its artifact locally, at the default place, wherever the
    # project's artifacts are (another folder, object storage: `artifact` is then a checked copy).
    for source in (artifact, *extra):
        dest = store / "artifacts" / source.parent.name / source.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)


def compiled_artifact(store: Store, name: str, version: int) -> list[Path]:
    """The file of a version's compiled form (`conveyor.compiled`), when one is recorded: a
    Bento serves it as the project does."""
    from conveyor.store import Registry

    registry = Registry(store)
    status = registry.compiled(name, version)
    if status is None or not status.compiled or not status.sha256:
        return []
    ref = registry.compiled_artifact(status.sha256)
    return [] if ref is None else [store.artifacts.local_path(ref)]


def snapshot_store(source: Store, dest: Path, tables: Iterable[TableSet] = ()) -> None:
    """A consistent SQLite copy of `source` at `dest`, even while a server or a run writes it:
    SQLite's backup API for an SQLite store, else (a team's PostgreSQL) every row copied from
    one snapshot into a new SQLite store (`conveyor.store.copy_store`)."""
    if source.dialect == "sqlite":
        src = sqlite3.connect(source.engine.url.database)
        try:
            dst = sqlite3.connect(dest)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
        return
    from conveyor.store import copy_store

    copy_store(source, f"sqlite:///{dest}", tables=tables,
               origin="the Bento's store snapshot")


def pinned_requirements(ctx: Path) -> tuple[list[str], list[str]]:
    """(requirement lines, wheel paths relative to ctx) for this environment."""
    lines, wheels = [], []
    local: list[Path] = []
    for dist in sorted(metadata.distributions(), key=lambda d: d.metadata["Name"].lower()):
        name = dist.metadata["Name"]
        source = _local_source(dist)
        if source is not None and name.lower().startswith("conveyor"):
            local.append(source)
        elif name.lower() not in {"pip", "setuptools", "wheel"}:
            lines.append(f"{name}=={dist.version}")
    if local:
        wheels = build_wheels(local, ctx / "wheels", ctx)
    return sorted(set(lines)), wheels


def build_wheels(sources: list[Path], out: Path, ctx: Path) -> list[str]:
    """Wheels of the locally installed Conveyor packages. With this environment's own build
    tools when they meet the packages' `[build-system] requires` (fast, and offline); else in
    pip's isolated build environment, which fetches the tools the packages ask for; when that
    fails too, an error naming what is missing."""
    unmet = sorted({need for source in sources for need in unmet_build_requirements(source)})
    argv = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out)]
    done = subprocess.run([*argv, *([] if unmet else ["--no-build-isolation"]),
                           *map(str, sources)], capture_output=True, text=True)
    if done.returncode != 0:
        hint = None
        if unmet:
            hint = ("this environment has " + "; ".join(unmet) + ", and pip could not fetch "
                    "newer build tools; install them: pip install " + " ".join(
                        f"'{need.split(' (')[0]}'" for need in unmet))
        raise conveyor.UsageError("cannot build wheels of the Conveyor packages for the "
                                  f"Bento:\n{done.stderr.strip()[-2000:]}", hint=hint)
    return sorted(str(p.relative_to(ctx)) for p in out.glob("*.whl"))


def unmet_build_requirements(source: Path) -> list[str]:
    """The package's `[build-system] requires` this environment does not satisfy, each as
    "setuptools>=69 (installed: 65.5.0)"."""
    import tomllib

    from packaging.requirements import InvalidRequirement, Requirement

    try:
        system = tomllib.loads((source / "pyproject.toml").read_text()).get("build-system", {})
    except (OSError, tomllib.TOMLDecodeError):
        return []
    unmet = []
    for line in system.get("requires", []):
        try:
            need = Requirement(line)
        except InvalidRequirement:
            continue
        try:
            have = metadata.version(need.name)
        except metadata.PackageNotFoundError:
            unmet.append(f"{line} (not installed)")
            continue
        if need.specifier and not need.specifier.contains(have, prereleases=True):
            unmet.append(f"{line} (installed: {have})")
    return unmet


def _local_source(dist: Any) -> Path | None:
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    url = json.loads(text).get("url", "")
    return Path(url[len("file://"):]) if url.startswith("file://") else None


def bento_name(model_name: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", model_name.lower()).strip("-.") or "conveyor"


def build(session: Any, overrides: list[str], *, model: str | None, version: int | None
          ) -> tuple[str, Any]:
    """Build the Bento into BentoML's store (BENTOML_HOME); returns (tag, the loaded model)."""
    import bentoml
    from conveyor.store import ArtifactRef, open_store

    from conveyor_bentoml.commands import make_spec

    project_dir = session.project_dir
    spec, loaded = make_spec(session, overrides, model=model, version=version)
    ctx = Path(tempfile.mkdtemp(prefix="conveyor-bento-"))  # BentoML refuses hidden paths
    try:
        store = open_store(project_dir)
        try:
            artifact = store.artifacts.local_path(ArtifactRef.from_dict(loaded.version.artifact))
            copy_project(project_dir, ctx / "project", artifact, store,
                         session.host.contributions.store_tables,
                         extra=compiled_artifact(store, loaded.name, loaded.number))
        finally:
            store.close()
        bundled = specs.ServeSpec(**{**spec.__dict__, "project_dir": "project",
                                     "hot_swap": False, "version": loaded.number})
        bundled.dump(ctx / specs.BUNDLED)
        (ctx / "service.py").write_text(SHIM)
        requirements, wheels = pinned_requirements(ctx)
        (ctx / "requirements.txt").write_text("\n".join(requirements) + "\n")
        os.environ[specs.ENV] = str(ctx / specs.BUNDLED)
        os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
        cwd = Path.cwd()
        os.chdir(ctx)  # BentoML reads python.wheels relative to the working directory
        try:
            bento = _build_bento(bentoml, ctx, loaded, wheels)
        finally:
            os.chdir(cwd)
        return str(bento.tag), loaded
    finally:
        shutil.rmtree(ctx, ignore_errors=True)


def _build_bento(bentoml: Any, ctx: Path, loaded: Any, wheels: list[str]) -> Any:
    return bentoml.bentos.build(
        "service:Predictor", name=bento_name(loaded.name), build_ctx=str(ctx),
        include=["service.py", specs.BUNDLED, "project/**"],
        python={"requirements_txt": "requirements.txt", "wheels": wheels,
                "lock_packages": False},
        labels={"conveyor.model": loaded.name, "conveyor.version": str(loaded.number),
                "conveyor.run_id": loaded.run_id, "conveyor.sha256": loaded.sha256},
        description=f"Conveyor model {loaded.name} v{loaded.number} (run {loaded.run_id})")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", dest="project_dir", metavar="DIR",
                        help="the project folder (default: the current folder)")
    parser.add_argument("--model", help="the registered model (default: the project's only one)")
    parser.add_argument("--version", type=int, help="the version to build (default: the "
                                                    "champion)")
    parser.add_argument("overrides", nargs="*", help="config overrides for the `serve` section, "
                        "e.g. serve.batching.max_batch_size=32")


def run(args: argparse.Namespace, app: Any) -> int:
    from conveyor_bentoml.commands import session_of

    tag, loaded = build(session_of(args, app), list(args.overrides), model=args.model,
                        version=args.version)
    print(f"built Bento {tag}: {loaded.name} v{loaded.number} (run {loaded.run_id})\n"
          f"  bentoml list                 shows it\n"
          f"  bentoml serve {tag}   serves it (POST /predict, GET /metadata)\n"
          f"  bentoml containerize {tag}   makes a Docker image (needs Docker)", flush=True)
    return 0


BUILD = conveyor.CliCommand(
    name="build",
    help="build a Bento (BentoML) of the champion model: service, model, pinned requirements",
    description=(
        "Build a Bento of the champion (or --version) into BentoML's store (BENTOML_HOME,\n"
        "default ~/bentoml): the same service as `conveyor serve`, with that model version\n"
        "fixed, the project's config and the model file (sha256 checked when it starts),\n"
        "every installed distribution pinned, and the Conveyor packages as wheels.\n\n"
        "example:\n  conveyor build\n  bentoml serve shop:<version>\n"
        "  bentoml containerize shop:<version>   (needs Docker)"),
    configure=configure,
    run=run,
)
