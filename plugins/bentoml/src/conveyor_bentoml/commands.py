"""`conveyor serve`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import conveyor
from conveyor.serving import is_recommender

from conveyor_bentoml import spec as specs
from conveyor_bentoml.settings import as_dict, settings_from

SERVICE = "conveyor_bentoml.service:Predictor"


def session_of(args: argparse.Namespace, app: Any) -> Any:
    """The command's session, or with `--project DIR` a session of that project sharing the
    command's plugin host."""
    if getattr(args, "project_dir", None):
        folder = Path(args.project_dir).resolve()
        if not (folder / "conveyor.yaml").is_file():
            raise conveyor.UsageError(f"--project {args.project_dir}: no conveyor.yaml there",
                                      hint="point --project at a project folder")
        if folder != (app.project_dir if app.has_project else None):
            return app.for_project(folder)
    return app


def make_spec(session: Any, overrides: list[str], *, model: str | None,
              version: int | None = None, unloadable: list[str] | None = None
              ) -> tuple[specs.ServeSpec, Any]:
    """Load the champion (sha256 checked: a tampered or missing champion stops here with a
    clear error) and describe what the server needs: features, the schema's fields, settings.

    With `unloadable` (a list, for `serve`), a champion that is set but cannot be loaded does
    not stop here: the reason is appended to the list, the loaded model returned is None, and
    the schema and features come from what the store records with the version (its contract;
    none for an old version without one: the server takes the features from the first model
    it loads). No champion at all still stops here."""
    from conveyor import api
    from conveyor.validation import describe_schema

    project_dir = session.project_dir
    config = api.load_config(session, overrides)
    settings = settings_from(config.data)
    if settings.recommend.max_k < 1:
        raise conveyor.ConfigError(f"serve.recommend.max_k is {settings.recommend.max_k}; it "
                                   "must be at least 1", hint="e.g. serve.recommend.max_k=100")
    name = model or (config.data.get("registry") or {}).get("model_name")
    record = api.resolve_model(session, name, version=version)  # no champion: stops here
    try:
        loaded = api.load_model(session, name, version=version)
    except Exception as exc:
        if unloadable is None:
            raise
        reason = getattr(exc, "message", None) or str(exc)  # a ConveyorError's, no hint
        unloadable.append(f"{record.name} v{record.version}: {type(exc).__name__}: {reason}")
        loaded = _recorded_version(session, record)
    features = [str(c) for c in getattr(loaded.model, "feature_names_in_", [])]
    if loaded.model is None and loaded.contract is not None:
        features = list(loaded.contract.feature_names)
    # The schema recorded with the version (its contract), not the project's current file.
    description = describe_schema(session.host, config=loaded.data_config(),
                                  project_dir=project_dir)
    contract = loaded.contract
    if contract is not None and any(t.before_schema for t in contract.transforms):
        # Requests are raw records; the schema describes them after the row transforms of
        # the version's inference path, so requests are typed by the transforms, not by it.
        description, features = None, []
    spec = specs.ServeSpec(project_dir=str(project_dir), model_name=loaded.name,
                           features=features,
                           schema=description.to_dict() if description else None,
                           settings=as_dict(settings))
    return spec, None if loaded.model is None else loaded


def _recorded_version(session: Any, record: Any) -> Any:
    """What the store records of a version whose model cannot be loaded, read without
    deserialising anything: a `LoadedModel` with no model, its training run's config and its
    contract (schema, features)."""
    from conveyor import api

    return api.LoadedModel(
        name=record.name, number=record.version, run_id=record.run_id, model=None,
        version=record, config=api.get_run(session, record.run_id).config,
        sha256=str(record.artifact.get("sha256", "")),
        contract=api.model_contract(session, record.name, version=record.version),
        project_dir=session.project_dir)


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on before announcing anything: BentoML would
    print a traceback from inside its arbiter after our "serving ..." line."""
    import errno
    import socket

    if not 0 < port < 65536:
        raise conveyor.UsageError(f"port {port} is not a TCP port", hint="use 1-65535, e.g. --port 3000")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise conveyor.UsageError(f"cannot serve on host '{host}': {exc.strerror}",
                                  hint="use an address such as 127.0.0.1 (--host, serve.host)"
                                  ) from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise conveyor.UsageError(
                    f"port {port} on {host} is already in use by another process",
                    hint="stop it, or serve on another port: conveyor serve --port "
                         f"{port + 1}") from exc
            raise conveyor.UsageError(f"cannot listen on {host}:{port}: {exc.strerror}",
                                      hint="choose another --host or --port") from exc


def _configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, help="port to listen on (default: serve.port, 3000)")
    parser.add_argument("--host", help="address to bind (default: serve.host, 127.0.0.1)")
    parser.add_argument("--project", dest="project_dir", metavar="DIR",
                        help="the project folder (default: the current folder)")
    parser.add_argument("--model", help="the registered model to serve (default: the "
                                        "project's only one)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. "
                        "serve.batching.max_batch_size=32 serve.timeout=5")


def _serve(args: argparse.Namespace, app: Any) -> int:
    session = session_of(args, app)
    project_dir = session.project_dir
    unloadable: list[str] = []
    spec, loaded = make_spec(session, list(args.overrides), model=args.model,
                             unloadable=unloadable)
    settings = spec.settings
    host = args.host or settings["host"]
    port = args.port if args.port is not None else settings["port"]
    check_port_free(host, port)
    tmp = project_dir / ".conveyor" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    path = spec.dump(tmp / f"serve-{os.getpid()}.json")
    if loaded is None:
        # One line, and the server still starts: not ready (503) until a loadable champion is
        # promoted, which the server picks up within serve.poll_seconds.
        print(f"conveyor serve: cannot load the champion {unloadable[0]}; starting not ready "
              "(/readyz and /predict answer 503) until a loadable version is promoted",
              file=sys.stderr, flush=True)
        serving = f"{spec.model_name} (no loadable champion yet)"
    else:
        serving = f"{loaded.name} v{loaded.number} (run {loaded.run_id})"
    endpoint = "/recommend" if loaded is not None and is_recommender(loaded.model) else "/predict"
    print(f"serving {serving} on http://{host}:{port}"
          f"  POST {endpoint}  GET /metadata  /livez /readyz", flush=True)
    from conveyor.store.location import as_environment, resolve

    # The workers are new processes: they see no command line, so they get the store this
    # command resolved (store.url= on the command line beats CONVEYOR_STORE_URL and the yaml).
    env = {**os.environ, **as_environment(resolve(project_dir)), specs.ENV: str(path),
           "BENTOML_DO_NOT_TRACK": "True"}
    # One OpenMP thread per predict: requests are already concurrent, and OpenMP pools
    # spin-waiting on a busy machine turned a 9 ms predict into 100-300 ms spikes.
    env.setdefault("OMP_NUM_THREADS", "1")
    argv = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port",
            str(port), "--working-dir", str(Path(__file__).resolve().parents[1])]
    # BentoML's arbiter takes over this process: SIGTERM then reaches it directly, and it lets
    # the workers finish the requests in flight before exiting.
    os.execve(sys.executable, argv, env)
    return 0  # not reached


SERVE = conveyor.CliCommand(
    name="serve",
    help="serve the champion model over HTTP (BentoML)",
    description=(
        "Start a BentoML server for the project's champion model.\n\n"
        "  POST /predict   a JSON list of records -> predictions (+ class probabilities)\n"
        "  POST /recommend (a recommender) {\"user_id\": 42, \"k\": 10, \"exclude_seen\": true}\n"
        "                  -> the top-k items with scores; an unknown user gets the popularity\n"
        "                  fallback, flagged \"fallback\": true (k up to serve.recommend.max_k)\n"
        "  GET  /metadata  model name, version, run id and the input schema\n"
        "  /livez /readyz  liveness and readiness\n\n"
        "Requests are checked against data.schema (400 naming the field and the rule). When the\n"
        "champion changes (conveyor models promote/rollback, a new run), the server answers\n"
        "with the new version within serve.poll_seconds. A champion that cannot be loaded\n"
        "(tampered, missing, unreadable) does not stop the server: it starts not ready\n"
        "(/readyz and /predict answer 503 naming why, /metadata shows the error) and becomes\n"
        "ready once a loadable version is promoted; no champion at all is exit 2.\n"
        "Every prediction is logged under .conveyor/predictions/. Settings: the `serve`\n"
        "config section.\n\n"
        "example:\n  conveyor serve --port 3000\n"
        "  curl -H 'content-type: application/json' -d '[{...}]' localhost:3000/predict\n"
        "  curl -H 'content-type: application/json' -d '{\"user_id\": \"u0007\", \"k\": 5}' "
        "localhost:3000/recommend"),
    configure=_configure_serve,
    run=_serve,
)
