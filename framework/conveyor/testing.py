"""Pytest helpers for Conveyor and its plugins (registered as the `conveyor` pytest plugin).

    def test_my_stage(conveyor_project):
        project = conveyor_project({"defaults": ["conveyor/defaults", "_self_"],
                                    "project": "demo", "pipeline": {...}})
        run = project.run_recorded("seed=3")       # fails the test, with the output, on error
        assert run.status == "completed" and run.metrics["accuracy"] > 0.8

        result = project.run("seed=-1")            # the completed process, for error cases
        assert result.returncode == 2 and "seed" in result.stderr

Runs go through the real `conveyor` console script in a temporary folder, so a plugin is
tested exactly as users run it. A fixture starting a server of its own (a tracking server, an
object store) binds `free_port()`, waits with `wait_for_server` and stops it with
`stop_process`.

`s3_server` (fixture) / `S3Server` start moto's S3 server on 127.0.0.1, standing in for cloud
object storage, with the AWS_* variables that point s3fs and boto3 at it: for artifacts in
`store.artifacts = s3://bucket/prefix`.

Both store backends: `postgres_server` is one real PostgreSQL server for the session (shared by
pytest-xdist's workers), `postgres_url` a fresh database of it per test, `store_url` each backend
in turn for a test that passes the URL itself. A test going through the CLI needs no URL::

    @each_store                                    # SQLite, then a fresh PostgreSQL database
    def test_history(trained, tmp_path):
        project = copy_project(trained, tmp_path / "shop")   # its store comes along
        assert project.runs()                                 # read from the test's store

`each_store` (a mark; `pytestmark = each_store` for a module) runs the test once per backend
through the `store_backend` fixture, which puts the database in CONVEYOR_STORE_URL for the test;
`pytest --store=postgresql` (or CONVEYOR_TEST_STORE=postgresql) does so for every test.
`current_store_backend()` says which one runs; `store_rows` / `store_execute` are raw SQL on a
project's store on either backend, `store_table_names` its tables. `prepared_once` builds a
folder once per session for all workers (a trained project copied per test with
`copy_project`).

Compiled inference (`conveyor.compiled`): `UNCONVERTIBLE_MODEL` (run overrides training a model
no ONNX converter handles) and `use_miscompiling_plugin(project_dir)` (a local plugin whose
compiled form fails the parity gate) make versions that are served by their Python model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def conveyor_executable() -> str:
    found = shutil.which("conveyor", path=str(Path(sys.executable).parent))
    return found or "conveyor"


def plugin_host(project_dir: Path | None = None) -> Any:
    """The installed plugins (and a project's `plugins.local`), loaded as `conveyor` loads
    them: for calling `conveyor.validation.validate_frame` and the like from a test."""
    from conveyor.plugins import PluginHost
    from conveyor.session import Session

    return Session(project_dir).host if project_dir is not None else PluginHost().load()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server under test."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM (a server's graceful stop), SIGKILL if it has not exited after `timeout`
    seconds; the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def wait_for_server(url: str, process: subprocess.Popen, log: Path, *, timeout: float = 120,
                    ready: str = "/health") -> None:
    """Return once `url + ready` answers 200; AssertionError with the server's output (`log`)
    when `process` exits first or `timeout` seconds pass. For fixtures that start a server of
    their own (an MLflow tracking server, an object store)."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url}: the server exited {process.returncode}:\n"
                                 + log.read_text(errors="replace"))
        try:
            if httpx.get(url + ready, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url}{ready} did not answer in {timeout:g}s:\n"
                         + log.read_text(errors="replace"))


class serving:
    """`conveyor serve` of a project on a free port, ready (its /readyz answers 200) on entry,
    stopped with SIGTERM on exit (which flushes the prediction log)::

        with serving(project.path) as url:
            httpx.post(f"{url}/predict", json=[record])
    """

    def __init__(self, project_dir: Path, *args: str, timeout: float = 90) -> None:
        self.project_dir = Path(project_dir)
        self.args, self.timeout = args, timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.project_dir / f"serve-{self.port}.log"

    def __enter__(self) -> str:
        import time

        import httpx

        # The server writes its output here; the handle is ours to close (on exit, or when
        # the server never becomes ready).
        self.log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [conveyor_executable(), "serve", "--port", str(self.port), *self.args],
            cwd=self.project_dir, stdout=self.log_file, stderr=subprocess.STDOUT,
            env={**os.environ, "CONVEYOR_TEST": "1"})
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log_file.close()
                raise AssertionError(f"conveyor serve exited {self.process.returncode}:\n"
                                     + self.log.read_text(errors="replace"))
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise AssertionError(f"conveyor serve not ready in {self.timeout:g}s:\n"
                             + self.log.read_text(errors="replace"))

    def __exit__(self, *exc: object) -> None:
        try:
            stop_process(self.process)
        finally:
            self.log_file.close()


def assert_clear_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The user contract for bad input: exit `code`, exactly one `error:` line on stderr that
    (with its hint) names every needle, and no traceback anywhere. Returns stderr."""
    shown = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == code, shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected exactly one error message\n{shown}"
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in the message\n{shown}"
    return result.stderr


def assert_usage_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Bad usage, config or plugin (exit 2), one clear message naming every needle."""
    from conveyor.errors import EXIT_USAGE

    return assert_clear_error(result, EXIT_USAGE, *needles)


def assert_run_failed(result: subprocess.CompletedProcess, *needles: str) -> str:
    """A stage, hook or gate said no (exit 1), one clear message naming every needle."""
    from conveyor.errors import EXIT_FAILED

    return assert_clear_error(result, EXIT_FAILED, *needles)


class Project:
    """A project folder with helpers to run the real CLI in it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def cli(self, *args: str, check: bool = False, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([conveyor_executable(), *args], cwd=self.path, text=True,
                                capture_output=True, timeout=timeout,
                                env={**os.environ, "COLUMNS": "200", **(env or {})})
        if check and result.returncode != 0:
            raise AssertionError(f"conveyor {' '.join(args)} exited {result.returncode}\n"
                                 f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def run(self, *overrides: str, check: bool = False) -> subprocess.CompletedProcess:
        return self.cli("run", *overrides, check=check)

    def run_recorded(self, *overrides: str, check: bool = True) -> Any:
        """Run the pipeline and return the run as the project store recorded it (a
        `conveyor.api.RunRecord`: status, config, metrics, data versions, error).

        With `check` a non-zero exit fails the test with the command's output; without it, a
        failed run is returned too, and None when the run never started (bad config)."""
        before = self.last_run()
        result = self.run(*overrides, check=check)
        after = self.last_run()
        if after is None or (before is not None and after.id == before.id):
            if check:
                raise AssertionError(f"conveyor run recorded no run\nstdout:\n{result.stdout}"
                                     f"\nstderr:\n{result.stderr}")
            return None
        return after

    def last_run(self) -> Any:
        """The newest recorded run (a `conveyor.api.RunRecord`), or None if there is none."""
        if (current_store_backend().backend == "sqlite"
                and not (self.path / ".conveyor" / "store.db").exists()):
            return None
        runs = self.runs()
        if not runs:
            return None
        from conveyor import api

        return api.get_run(self.path, runs[0]["id"])

    def runs(self) -> list[dict[str, Any]]:
        return json.loads(self.cli("runs", "list", "--json", "--limit", "1000", check=True).stdout)

    def show(self, run_id: str) -> dict[str, Any]:
        return json.loads(self.cli("runs", "show", run_id, "--json", check=True).stdout)


@pytest.fixture
def conveyor_project(tmp_path: Path) -> Callable[..., Project]:
    """Make a project from a config mapping or YAML text (written as conveyor.yaml) and
    optional files ({relative path: text}); returns a `Project` to run the real CLI in."""

    def make(config: dict[str, Any] | str, files: dict[str, str] | None = None) -> Project:
        import yaml

        folder = tmp_path / "project"
        folder.mkdir(exist_ok=True)
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        (folder / "conveyor.yaml").write_text(text)
        for name, content in (files or {}).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(content)
        return Project(folder)

    return make


def session_folder(factory: pytest.TempPathFactory) -> Path:
    """pytest's base temporary folder of the whole session: with pytest-xdist the parent of
    each worker's, so the workers meet there."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def prepared_once(factory: pytest.TempPathFactory, name: str,
                  build: Callable[[Path], None]) -> Path:
    """A folder made once per test session, whatever the number of pytest-xdist workers:
    `build(folder)` runs in the first process that asks, under a file lock, and the others wait
    for it and reuse the folder. For a project prepared once (trained, with runs) and then only
    read or copied per test (`copy_project`). A build that failed (or a worker that crashed
    while building) is started again from scratch by the next one asking."""
    import fcntl

    root = session_folder(factory) / "conveyor-prepared"
    root.mkdir(parents=True, exist_ok=True)
    folder, done = root / name, root / f"{name}.done"
    with (root / f"{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                build(folder)
                done.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder


TEST_STORE_ENV = "CONVEYOR_TEST_STORE"
STORE_BACKENDS = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store", choices=STORE_BACKENDS, default=None,
        help="the store every test runs on (default: $CONVEYOR_TEST_STORE, else sqlite): "
             "postgresql gives each test a fresh database on the session's PostgreSQL server "
             "through CONVEYOR_STORE_URL, so the CLI and in-process stores all use it")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # pytest-xdist's controller, which outlives its workers, stops the shared PostgreSQL server
    # when the last worker crashed before it could.
    if hasattr(session.config, "workerinput") or not getattr(session.config.option,
                                                             "numprocesses", None):
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or getattr(factory, "_basetemp", None) is None:
        return
    from conveyor.store.postgres_server import stop_shared_server

    stop_shared_server(factory.getbasetemp() / "conveyor-postgres")


def _postgres_folder(factory: pytest.TempPathFactory) -> Path:
    """Where the session's processes meet to share one server."""
    return session_folder(factory) / "conveyor-postgres"


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real PostgreSQL server for the test session (`conveyor.store.postgres_server`: initdb
    in a temporary folder, a free port on 127.0.0.1), shared by pytest-xdist's workers and
    stopped by the last one out. Fails with a hint when PostgreSQL is not installed."""
    from conveyor.store.postgres_server import shared_server

    with shared_server(_postgres_folder(tmp_path_factory)) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: Any) -> Any:
    """The URL (`store.url`) of a fresh, empty database on `postgres_server`, dropped after
    the test."""
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """Each store backend in turn: None (the project's SQLite store), then a fresh PostgreSQL
    database's URL; pass it as `open_store(..., url=store_url)` or `store.url=...`."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")


class StoreBackend:
    """The store a test runs on: `backend` "sqlite" (each project's own file) or
    "postgresql" (`url`: a fresh database, in CONVEYOR_STORE_URL for the test, so every CLI
    subprocess and in-process store uses it)."""

    def __init__(self, backend: str, server: Any = None, url: str | None = None) -> None:
        self.backend, self.server, self.url = backend, server, url

    def load(self, source_project: Path) -> None:
        """Make the test's store hold what `source_project`'s SQLite store holds (a project
        prepared once per session, then copied per test); nothing to do on SQLite, where the
        copy carries its store. The first load of a source copies it into a template database
        (`conveyor.store.copy_store`); every later one clones that template."""
        if self.backend == "sqlite":
            return
        source_project = Path(source_project).resolve()
        templates = self.server.__dict__.setdefault("_conveyor_templates", {})
        if source_project not in templates:
            from conveyor.store import copy_store, open_store

            template = self.server.new_database()
            # the installed plugins' tables, as `conveyor store copy` makes them
            tables = plugin_host().contributions.store_tables
            source = open_store(source_project, tables, url="", artifacts=None)
            try:
                copy_store(source, template, tables=tables)
            finally:
                source.close()
            templates[source_project] = template.rsplit("/", 1)[-1]
        name = self.url.rsplit("/", 1)[-1]
        self.server.drop_database(name)
        with self.server._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{templates[source_project]}"')


_current_store: list[StoreBackend] = []


def current_store_backend() -> StoreBackend:
    """The store the running test uses (see `StoreBackend`); SQLite outside a test."""
    return _current_store[-1] if _current_store else StoreBackend("sqlite")


def copy_project(source: Path, destination: Path, *, symlinks: bool = False) -> Project:
    """A copy of a project prepared once per session (trained, with runs), for one test: the
    folder (`shutil.copytree`), and on PostgreSQL its store loaded into the test's database
    (`StoreBackend.load`)."""
    shutil.copytree(source, destination, symlinks=symlinks)
    current_store_backend().load(source)
    return Project(Path(destination))


@contextlib.contextmanager
def _raw_store(project_dir: Path) -> Any:
    """A connection (in a transaction, committed on exit) to the project's store database as
    `store.url` resolves (SQLite's file, or the test's PostgreSQL database); None when the
    project has no SQLite store yet. Bypasses `Store`: no schema made, nothing migrated."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from conveyor.store.location import resolve

    url = resolve(Path(project_dir)).url
    if url is None:
        path = Path(project_dir) / ".conveyor" / "store.db"
        if not path.exists():
            yield None
            return
        url = f"sqlite:///{path}"
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            yield connection
    finally:
        engine.dispose()


def store_rows(project_dir: Path, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Rows of a raw query on the project's store, whichever backend it is on (`:name`
    parameters); [] when no store was ever made (no SQLite file, no table yet). For tests that
    look at rows directly, past the API."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError, ProgrammingError

    with _raw_store(project_dir) as connection:
        if connection is None:
            return []
        try:
            return [dict(row._mapping) for row in connection.execute(text(sql), params)]
        except (OperationalError, ProgrammingError) as exc:
            if "no such table" in str(exc) or "does not exist" in str(exc):
                return []
            raise


def store_table_names(project_dir: Path) -> set[str]:
    """The tables in the project's store, whichever backend it is on (empty when no store was
    ever made). For tests of the schema itself: what a migration made or left."""
    from sqlalchemy import inspect

    with _raw_store(project_dir) as connection:
        return set() if connection is None else set(inspect(connection).get_table_names())


def store_execute(project_dir: Path, sql: str, **params: Any) -> int:
    """Run one raw statement on the project's store, whichever backend it is on (`:name`
    parameters), committed; the rows it changed. For tests that damage a row on purpose."""
    from sqlalchemy import text

    with _raw_store(project_dir) as connection:
        if connection is None:
            raise AssertionError(f"{project_dir} has no store")
        return connection.execute(text(sql), params).rowcount


def _head_template(server: Any, request: pytest.FixtureRequest) -> str:
    """A database of `server` with the core schema at its head, made once per process: a
    test's database copied from it skips the migrations every test would otherwise run
    (~0.2 s each); the plugins' tables are made on first use, as in any new store."""
    templates = server.__dict__.setdefault("_conveyor_templates", {})
    if "head" not in templates:
        from conveyor.store import open_store

        url = server.new_database()
        folder = request.getfixturevalue("tmp_path_factory").mktemp("store-head")
        open_store(folder, url=url, artifacts=str(folder / "artifacts")).close()
        templates["head"] = url.rsplit("/", 1)[-1]
    return templates["head"]


@contextlib.contextmanager
def _store_for(request: pytest.FixtureRequest, backend: str) -> Any:
    if backend == "sqlite":
        store = StoreBackend("sqlite")
        url = None
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.new_database(template=_head_template(server, request))
        store = StoreBackend("postgresql", server, url)
    with pytest.MonkeyPatch.context() as patch:
        if url is not None:
            patch.setenv("CONVEYOR_STORE_URL", url)
        _current_store.append(store)
        try:
            yield store
        finally:
            _current_store.remove(store)
            if url is not None:
                store.server.drop_database(url)


@pytest.fixture(params=list(STORE_BACKENDS))
def store_backend(request: pytest.FixtureRequest) -> Any:
    """Runs the test on each store backend in turn: SQLite, then PostgreSQL (a fresh database
    in CONVEYOR_STORE_URL, see `StoreBackend`); the `StoreBackend`. A whole module opts in with
    `pytestmark = pytest.mark.usefixtures("store_backend")`, with no change to its tests;
    projects prepared once per session are copied in with `copy_project`."""
    with _store_for(request, request.param) as store:
        yield store


each_store = pytest.mark.usefixtures("store_backend")
"""Mark a test (or a module, as `pytestmark = each_store`) to run on each store backend in
turn, with no change to its body (the `store_backend` fixture)."""


@pytest.fixture(autouse=True)
def _conveyor_test_store(request: pytest.FixtureRequest) -> Any:
    """`--store=postgresql` (or CONVEYOR_TEST_STORE=postgresql): every test not choosing its
    backend itself runs on a fresh PostgreSQL database."""
    chosen = request.config.getoption("--store", None) or os.environ.get(TEST_STORE_ENV) \
        or "sqlite"
    if chosen not in STORE_BACKENDS:
        raise pytest.UsageError(f"{TEST_STORE_ENV}={chosen!r}: expected one of "
                                f"{', '.join(STORE_BACKENDS)}")
    own = {"store_backend", "store_url", "postgres_url"} & set(request.fixturenames)
    if chosen == "sqlite" or own:
        yield None
        return
    with _store_for(request, chosen) as store:
        yield store


class S3Server:
    """A real S3-compatible server for tests: moto's standalone server (`moto.server`, from
    moto[server]) in its own process on 127.0.0.1, standing in for a cloud's object storage.

    `env` holds the AWS_* variables that point boto3/s3fs at it (fake keys, its endpoint);
    `create_bucket(name)` makes a bucket; `client()` is a boto3 S3 client for checks and
    tampering. moto accepts any keys unless `check_credentials`, when it refuses them all.
    Used as a context manager (started on entry, stopped on exit) or through the `s3_server`
    fixture, which also sets `env` in os.environ for the test."""

    access_key = "conveyor-test-access-key"
    secret_key = "conveyor-test-secret-Zx9q7Kp2"
    region = "us-east-1"

    def __init__(self, timeout: float = 60, *, check_credentials: bool = False) -> None:
        # check_credentials: moto then authenticates requests against its own IAM, which
        # knows no keys, so every request is refused like wrong credentials on S3.
        self.check_credentials = check_credentials
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.timeout = timeout
        self.process: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region, "AWS_ENDPOINT_URL": self.endpoint}

    def start(self) -> S3Server:
        import time
        import urllib.request

        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT":
                 "0" if self.check_credentials else "inf"})
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"moto's S3 server exited {self.process.returncode}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"moto's S3 server not up on {self.endpoint} in {self.timeout:g}s")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=10)

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A running `S3Server` (moto, standing in for the cloud) with its AWS_* variables set in
    os.environ for the test, so the CLI and s3fs use it; stopped after the test."""
    with S3Server() as server:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        yield server


# --- compiled inference (conveyor.compiled): versions that are served by Python ----------------

#: `conveyor run` overrides of a classification project (`conveyor init --template
#: classification`) that train scikit-learn's NearestCentroid, which no ONNX converter handles:
#: the version is served by its Python model, reason "no ONNX converter for step 'model'
#: (NearestCentroid)". A user puts such a step in the pipeline the same way, `model._target_`.
UNCONVERTIBLE_MODEL = ("model=logistic_regression",
                       "model._target_=sklearn.neighbors.NearestCentroid",
                       "~model.params.C", "~model.params.max_iter")

# A project-local plugin whose `conveyor_compile_model` answers before conveyor-sklearn's with a
# converter "registered wrongly": its graph is conveyor-sklearn's, but its probabilities (or
# values) come out rounded to float16, so the parity gate refuses it ("parity failed: ...").
MISCOMPILING_MODULE = '''
import numpy as np

import conveyor
from conveyor.compiled import CompiledArtifact, CompiledPrediction
from conveyor_sklearn.compiling import compile_pipeline


class Float16Model:
    def __init__(self, inner):
        self.inner = inner
        self.form, self.features = inner.form, inner.features
        self.kinds, self.classes = inner.kinds, inner.classes

    def predict_columns(self, columns):
        result = self.inner.predict_columns(columns)
        if result.probabilities is None:
            return CompiledPrediction(result.predictions.astype(np.float16).astype(np.float64))
        return CompiledPrediction(result.predictions,
                                  result.probabilities.astype(np.float16).astype(np.float64))


@conveyor.hookimpl(tryfirst=True)
def conveyor_compile_model(model, features, kinds):
    artifact = compile_pipeline(model, features, kinds)
    return CompiledArtifact(Float16Model(artifact.model), artifact.codec, artifact.converters)
'''


def use_miscompiling_plugin(project_dir: Path, module: str = "miscompile") -> None:
    """Add `MISCOMPILING_MODULE` to a project as the local plugin `module` (its
    conveyor.yaml's `plugins.local`): every version it registers then fails the parity gate
    and is served by its Python model, reason "parity failed: ..."."""
    import yaml

    (project_dir / f"{module}.py").write_text(MISCOMPILING_MODULE)
    path = project_dir / "conveyor.yaml"
    config = yaml.safe_load(path.read_text()) or {}
    plugins = config.setdefault("plugins", {}) or {}
    plugins["local"] = [*(plugins.get("local") or []), module]
    config["plugins"] = plugins
    path.write_text(yaml.safe_dump(config, sort_keys=False))
