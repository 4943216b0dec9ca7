"""`conveyor ui`: start the web UI for a project and print where it is."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path
from typing import Any

from conveyor.errors import UsageError

DESCRIPTION = """\
Serve a local web UI for the project: runs (sortable, filterable), a run's config, lineage,
stages and artifacts, runs compared side by side, the pipeline's stage graph, models with
their alias history, and monitoring. Pages follow new runs as they are recorded.

It binds 127.0.0.1 and is read-only by default. --allow-actions adds promote and rollback
buttons (confirmed, with a reason, recorded like `conveyor models promote`). Binding another
address (--host 0.0.0.0) requires --token (or CONVEYOR_UI_TOKEN); every request must then
carry it, and the printed URL does.

examples:
  conveyor ui
  conveyor ui --project projects/retail --port 8050
  conveyor ui --allow-actions
  conveyor ui --host 0.0.0.0 --token "$(openssl rand -hex 16)"
"""
TOKEN_ENV = "CONVEYOR_UI_TOKEN"
MIN_TOKEN_LENGTH = 8


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the examples' lines
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (default 5000)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; any other needs --token)")
    parser.add_argument("--project", dest="ui_project", metavar="DIR", type=Path,
                        help="the project folder (default: the one holding the current folder)")
    parser.add_argument("--allow-actions", action="store_true",
                        help="enable promote and rollback buttons (off: read-only)")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"secret every request must carry (default: ${TOKEN_ENV})")
    parser.add_argument("--origin", dest="origins", action="append", default=[],
                        metavar="URL",
                        help="another origin actions may come from, e.g. a reverse proxy's "
                             "https://ui.example.com (repeatable; default: the bound address)")


def run(args: argparse.Namespace, app: Any) -> int:
    from conveyor_ui.app import create_app, is_loopback

    project_dir = _project(args, app)
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: a port is a number from 1 to 65535")
    loopback = is_loopback(args.host)
    if not loopback and not args.token:
        raise UsageError(f"--host {args.host} makes the UI reachable from other machines, "
                         "so it needs a token every request must carry",
                         hint=f"add --token SECRET (or set {TOKEN_ENV}), or leave --host at "
                              "127.0.0.1")
    if args.token is not None and len(args.token) < MIN_TOKEN_LENGTH:
        raise UsageError(f"--token is too short: use at least {MIN_TOKEN_LENGTH} characters",
                         hint="e.g. --token \"$(openssl rand -hex 16)\"")
    for origin in args.origins:
        if not origin.startswith(("http://", "https://")) or "/" in origin.split("://", 1)[1]:
            raise UsageError(f"--origin {origin}: an origin is scheme://host[:port], "
                             "e.g. https://ui.example.com")
    sock = _bind(args.host, args.port)
    import uvicorn

    web = create_app(project_dir, allow_actions=args.allow_actions, token=args.token,
                     check_host=loopback, host=args.host, port=args.port,
                     origins=tuple(args.origins),
                     session=app if app.has_project and project_dir == app.project_dir
                     else app.for_project(project_dir))
    shown_host = args.host if loopback else socket.gethostname()
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    url = f"http://{shown_host}:{args.port}/" + (f"?token={args.token}" if args.token else "")
    mode = "actions on (promote, rollback)" if args.allow_actions else "read-only"
    print(f"Conveyor UI for {project_dir} ({mode})\n  {url}\nCtrl+C stops it.", flush=True)
    server = uvicorn.Server(uvicorn.Config(web, log_level="warning", access_log=False,
                                           lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    print("Conveyor UI stopped.")
    return 0


def _project(args: argparse.Namespace, app: Any) -> Path:
    if args.ui_project is None:
        return app.project_dir
    folder = args.ui_project.expanduser().resolve()
    if not folder.is_dir():
        raise UsageError(f"--project {args.ui_project}: no such folder")
    if not (folder / "conveyor.yaml").is_file():
        raise UsageError(f"--project {args.ui_project}: not a Conveyor project (no conveyor.yaml)",
                         hint="start one with `conveyor init NAME`")
    return folder


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a busy port is a clear error, not a log line."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: not an address this machine has ({exc.strerror})"
                         ) from exc
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}",
                         hint="pick another --port" if exc.errno == 98 else None) from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
